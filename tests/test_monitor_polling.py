"""PollingMonitor against real aiohttp engine servers on loopback whose state the test changes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from helpers import async_wait_until
from wavefleet.engines import EngineKind
from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor import BreakerPolicy, PollingMonitor

VLLM_TEMPLATE = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="m"}} {running}
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="m"}} {waiting}
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="m"}} {kv}
"""


class FakeEngine:
    """A small engine server: health, metrics and model list are whatever the test sets."""

    def __init__(self, kind: EngineKind) -> None:
        self.kind = kind
        self.health_status = 200
        self.running, self.waiting, self.kv = 0, 0, 0.0
        self.slots_busy, self.slots_total = 0, 2
        self.models = ["fake-model"]
        self.metrics_delay_s = 0.0
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> FakeEngine:
        app = web.Application()
        health_path = "/v1/health/ready" if self.kind is EngineKind.NIM else "/health"
        app.router.add_get(health_path, self._health)
        app.router.add_get("/v1/metrics" if self.kind is EngineKind.NIM else "/metrics", self._metrics)
        app.router.add_get("/slots", self._slots)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.health_status == 503 and self.kind is EngineKind.LLAMACPP:
            return web.json_response({"error": {"code": 503, "message": "Loading model"}}, status=503)
        return web.json_response({"status": "ok"}, status=self.health_status)

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.metrics_delay_s:
            await asyncio.sleep(self.metrics_delay_s)
        if self.kind is EngineKind.LLAMACPP:  # started without --metrics
            return web.json_response({"error": {"code": 501, "message": "metrics disabled"}}, status=501)
        return web.Response(text=VLLM_TEMPLATE.format(running=self.running, waiting=self.waiting, kv=self.kv))

    async def _slots(self, request: web.Request) -> web.Response:
        slots = [{"id": i, "is_processing": i < self.slots_busy} for i in range(self.slots_total)]
        return web.json_response(slots)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
        )

    def backend(self, name: str, **fields: object) -> BackendConfig:
        return BackendConfig.model_validate({"name": name, "url": self.url, "kind": self.kind, **fields})


def run(scenario: Callable[[aiohttp.ClientSession], Awaitable[None]]) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            await scenario(session)

    asyncio.run(main())


def test_snapshot_follows_the_engines_metrics_and_lists_models() -> None:
    async def scenario(session: aiohttp.ClientSession) -> None:
        async with FakeEngine(EngineKind.VLLM) as engine:
            engine.running, engine.waiting, engine.kv = 2, 0, 0.1
            monitor = PollingMonitor([engine.backend("v")], session, interval_s=0.02)
            await monitor.start()
            try:
                first = monitor.snapshot("v")
                assert (first.running, first.waiting, first.healthy) == (2, 0, True)
                assert first.models == ("fake-model",)
                engine.running, engine.waiting, engine.kv = 7, 3, 0.9
                engine.models = ["fake-model", "other"]
                await async_wait_until(lambda: monitor.snapshot("v").running == 7)
                later = monitor.snapshot("v")
                assert (later.waiting, later.kv_usage) == (3, 0.9)
                assert later.models == ("fake-model", "other")
                assert later is not first  # replaced whole, never mutated
            finally:
                await monitor.aclose()

    run(scenario)


def test_down_after_consecutive_failures_and_up_on_success() -> None:
    async def scenario(session: aiohttp.ClientSession) -> None:
        async with FakeEngine(EngineKind.VLLM) as engine:
            monitor = PollingMonitor([engine.backend("v")], session, interval_s=0.02, down_after=3)
            await monitor.start()
            try:
                engine.health_status = 503
                polls = monitor.polls_done("v")
                await async_wait_until(lambda: monitor.polls_done("v") >= polls + 1)
                assert monitor.snapshot("v").healthy  # one failed poll is not an outage
                await async_wait_until(lambda: not monitor.snapshot("v").healthy)
                down = monitor.snapshot("v")
                assert down.poll_failures >= 3 and "503" in down.error
                assert not monitor.available("v")
                engine.health_status = 200
                await async_wait_until(lambda: monitor.snapshot("v").healthy)
                assert monitor.snapshot("v").error == ""
            finally:
                await monitor.aclose()

    run(scenario)


def test_recovered_engine_gets_a_probe_request_without_waiting_the_cooldown() -> None:
    async def scenario(session: aiohttp.ClientSession) -> None:
        async with FakeEngine(EngineKind.VLLM) as engine:
            policy = BreakerPolicy(failure_threshold=3, base_cooldown_s=3600)
            monitor = PollingMonitor([engine.backend("v")], session, interval_s=0.02, breaker=policy)
            await monitor.start()
            try:
                engine.health_status = 500
                await async_wait_until(lambda: monitor.snapshot("v").breaker == "open")
                engine.health_status = 200
                await async_wait_until(lambda: monitor.snapshot("v").breaker == "half-open")
                assert monitor.available("v")  # the probe
                assert not monitor.available("v")  # one at a time
                monitor.record_outcome("v", ok=True)
                assert monitor.snapshot("v").breaker == "closed"
                assert monitor.available("v")
            finally:
                await monitor.aclose()

    run(scenario)


def test_request_failures_open_the_breaker_while_polls_pass() -> None:
    async def scenario(session: aiohttp.ClientSession) -> None:
        async with FakeEngine(EngineKind.VLLM) as engine:
            monitor = PollingMonitor([engine.backend("v")], session, interval_s=0.02)
            await monitor.start()
            try:
                for _ in range(3):
                    monitor.record_outcome("v", ok=False)
                status = monitor.breaker_status("v")
                assert status is not None and status.state == "open"
                polls = monitor.polls_done("v")
                await async_wait_until(lambda: monitor.polls_done("v") >= polls + 3)
                assert monitor.snapshot("v").healthy
                assert monitor.snapshot("v").breaker == "open"
                assert not monitor.available("v")
            finally:
                await monitor.aclose()

    run(scenario)


def test_slow_backend_does_not_delay_another() -> None:
    async def scenario(session: aiohttp.ClientSession) -> None:
        async with FakeEngine(EngineKind.VLLM) as slow, FakeEngine(EngineKind.VLLM) as fast:
            slow.metrics_delay_s = 30.0
            fast.running = 4
            backends = [slow.backend("slow"), fast.backend("fast")]
            monitor = PollingMonitor(backends, session, interval_s=0.02, timeout_s=0.5)
            await monitor.start()  # returns once the slow one's first poll timed out
            try:
                assert "0.5" in monitor.snapshot("slow").error
                start_fast, start_slow = monitor.polls_done("fast"), monitor.polls_done("slow")
                await async_wait_until(lambda: monitor.polls_done("fast") >= start_fast + 20)
                # each slow poll waits out its 0.5 s budget; the fast one kept its own pace meanwhile
                assert monitor.polls_done("slow") - start_slow < 20
                assert monitor.snapshot("fast").running == 4
            finally:
                await monitor.aclose()

    run(scenario)


def test_llamacpp_without_metrics_falls_back_to_slots_and_reports_loading() -> None:
    async def scenario(session: aiohttp.ClientSession) -> None:
        async with FakeEngine(EngineKind.LLAMACPP) as engine:
            engine.slots_busy, engine.slots_total = 1, 4
            monitor = PollingMonitor([engine.backend("l")], session, interval_s=0.02, down_after=2)
            await monitor.start()
            try:
                snap = monitor.snapshot("l")
                assert (snap.running, snap.waiting, snap.slots_total) == (1, None, 4)
                engine.slots_busy = 3
                await async_wait_until(lambda: monitor.snapshot("l").running == 3)
                engine.health_status = 503
                await async_wait_until(lambda: not monitor.snapshot("l").healthy)
                assert "loading model" in monitor.snapshot("l").error
            finally:
                await monitor.aclose()

    run(scenario)


def test_openai_kind_uses_the_model_list_as_health_and_configured_models_win() -> None:
    async def scenario(session: aiohttp.ClientSession) -> None:
        async with FakeEngine(EngineKind.OPENAI) as engine, FakeEngine(EngineKind.NIM) as nim:
            nim.running = 5
            backends = [engine.backend("o"), nim.backend("n", models=["served-name"])]
            monitor = PollingMonitor(backends, session, interval_s=0.02)
            await monitor.start()
            try:
                o, n = monitor.snapshot("o"), monitor.snapshot("n")
                assert (o.models, o.running, o.healthy) == (("fake-model",), None, True)
                assert (n.models, n.running) == (("served-name",), 5)
            finally:
                await monitor.aclose()
        # both servers are gone now: a fresh poll fails and says why
        lonely = PollingMonitor(backends, session, interval_s=1, down_after=1)
        snapshot = await lonely.poll("o")
        assert not snapshot.healthy and "ClientConnectorError" in snapshot.error

    run(scenario)
