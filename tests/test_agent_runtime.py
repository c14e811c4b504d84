"""The agent's lifecycle with real engines: the bundled SmolLM2 in llama-server under several names
(different contexts: distinct models with distinct memory), a small memory budget to force
evictions, SIGKILL for crashes, and commands that exit for engines that never come up.

Each scenario runs an `Agent` in this process on its own event loop; the HTTP side (the openai
client, the control API) is in test_agent_server.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agent_support import needs_llama_server, smol, unloadable_gguf
from helpers import async_wait_until
from wavefleet.agent.config import AgentConfig
from wavefleet.agent.devices import HostMemory, MemoryReading
from wavefleet.agent.host import Agent, ManagedModel, eviction_order
from wavefleet.agent.memory import MemoryEstimate
from wavefleet.agent.units import FOREVER, format_bytes
from wavefleet.errors import ModelFailedError, ModelNotReadyError
from wavefleet.telemetry.names import EngineState

MIB = 2**20
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def llama_server() -> None:
    needs_llama_server()


def agent_config(models: list[dict[str, Any]], *, budget: str = "2GiB", **defaults: Any) -> AgentConfig:
    settings = {"load_timeout": 60, "backoff": {"base": 0.2, "max": 1}, "stop_timeout": 5, **defaults}
    return AgentConfig.model_validate(
        {"devices": {"cpu": {"budget": budget}}, "models": models, "defaults": settings}
    )


def run(scenario: Callable[[], Awaitable[None]], *, within_s: float = 180) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), within_s)

    asyncio.run(bounded())


async def ready(agent: Agent, name: str) -> ManagedModel:
    lease = await agent.acquire(name)
    lease.release()
    return agent.models[name]


def counter(agent: Agent, name: str, **labels: str) -> float:
    value = agent.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


# Estimates of the bundled model with one slot: weights 92.1 MiB + KV 22.5 KiB/token + compute
# buffer + 24 MiB of runtime: 256 tokens 129 MiB, 1024 tokens 153 MiB, 2048 tokens 177 MiB.
A, B, C = smol("a", 256), smol("b", 1024), smol("c", 2048)
TWO_OF_THREE = "340MiB"  # any two fit, never three


def test_eviction_spares_pinned_models_and_models_with_requests_in_flight() -> None:
    async def scenario() -> None:
        agent = Agent(agent_config([{**A, "pinned": True}, B, C], budget=TWO_OF_THREE))
        await agent.start()
        try:
            a = await async_wait_until(
                lambda: agent.models["a"].state is EngineState.READY and agent.models["a"], timeout_s=60
            )
            assert a.estimate.device < 135 * MIB  # the three differ only in context, so in KV
            b = await ready(agent, "b")
            busy = await agent.acquire("b")  # a request in flight on b
            with pytest.raises(ModelNotReadyError) as caught:
                await agent.acquire("c", limit_s=2)
            text = caught.value.message
            assert "model 'c' on host " in text and "was not ready within 2 s" in text
            assert "memory on cpu" in text and "busy: a (pinned), b (1 in flight)" in text
            assert caught.value.retry_after is not None and caught.value.status == 503
            assert (a.state, b.state) == (EngineState.READY, EngineState.READY)
            busy.release()  # now b is idle: c's start evicts it, not the pinned a
            c = await ready(agent, "c")
            assert (a.state, b.state, c.state) == (EngineState.READY, EngineState.STOPPED, EngineState.READY)
            assert counter(agent, "wave_engine_evictions_total", model="b", reason="memory") == 1
            assert any("b: unloading (memory: to make room for c on cpu)" in e for e in agent.events)
            status = agent.status()
            cpu = status.devices[0]
            assert cpu.reserved == a.reservation("cpu") + c.reservation("cpu") <= cpu.budget
            assert b.reservation("cpu") == 0 and b.process is None
        finally:
            await agent.aclose()
        assert all(m.process is None and m.state is EngineState.STOPPED for m in agent.models.values())

    run(scenario)


def test_idle_unload_after_the_ttl_keep_alive_overrides_pinned_never() -> None:
    async def scenario() -> None:
        models = [smol("a", 256, ttl=0.5), smol("b", 256), smol("p", 256, pinned=True, ttl=0.5)]
        agent = Agent(agent_config(models))
        await agent.start()
        try:
            a, b, p = (agent.models[n] for n in "abp")
            await ready(agent, "a")
            await async_wait_until(lambda: a.state is EngineState.STOPPED, timeout_s=10)
            assert counter(agent, "wave_engine_evictions_total", model="a", reason="idle") == 1

            held = await agent.acquire("a")  # nothing is unloaded with a request in flight
            await asyncio.sleep(1.2)
            assert a.state is EngineState.READY
            held.release()
            await async_wait_until(lambda: a.state is EngineState.STOPPED, timeout_s=10)

            lease = await agent.acquire("a", keep_alive=FOREVER)  # keep_alive -1 beats its ttl
            lease.release()
            await asyncio.sleep(1.2)
            assert a.state is EngineState.READY and a.ttl(agent.defaults.ttl) == FOREVER

            lease = await agent.acquire("b", keep_alive=0)  # keep_alive 0: unload once idle
            assert b.state is EngineState.READY
            lease.release()
            await async_wait_until(lambda: b.state is EngineState.STOPPED, timeout_s=10)
            assert counter(agent, "wave_engine_evictions_total", model="b", reason="keep_alive") == 1

            assert p.state is EngineState.READY and p.loads == 1  # pinned: loaded at start, never unloaded
        finally:
            await agent.aclose()

    run(scenario)


def test_a_killed_engine_restarts_after_its_backoff_and_requests_wait_for_it() -> None:
    async def scenario() -> None:
        agent = Agent(agent_config([smol("a", 256, slots=2)], backoff={"base": 0.5, "max": 2}))
        await agent.start()
        try:
            a = await ready(agent, "a")
            assert a.process is not None
            before = agent.status().devices[0].reserved
            first_pid = a.process.pid
            os.kill(first_pid, signal.SIGKILL)  # chaos
            killed = time.monotonic()
            await async_wait_until(lambda: a.state is not EngineState.READY, timeout_s=5)
            lease = await agent.acquire("a")  # a request that had not started: it waits, then runs
            back = time.monotonic() - killed
            assert lease.process is not None and lease.process.pid != first_pid
            lease.release()
            assert back >= 0.5  # min(base x 2^0, max)
            assert (a.restarts, a.failures_in_row, a.loads) == (1, 1, 2)
            assert "killed by SIGKILL while serving" in a.last_error
            assert agent.status().devices[0].reserved == before  # the memory accounting is as before
            assert counter(agent, "wave_engine_restarts_total", model="a") == 1
        finally:
            await agent.aclose()

    run(scenario)


def test_an_engine_that_keeps_exiting_is_failed_after_max_restarts() -> None:
    async def scenario() -> None:
        crashing = {
            "name": "crashing",
            "command": ["sh", "-c", "echo 'cannot open the model: boom'; exit 3"],
            "memory": "16MiB",
        }
        agent = Agent(agent_config([crashing], max_restarts=2, backoff={"base": 0.2, "max": 1}))
        await agent.start()
        try:
            began = time.monotonic()
            with pytest.raises(ModelNotReadyError) as caught:
                await agent.acquire("crashing", limit_s=30)
            spent = time.monotonic() - began
            model = agent.models["crashing"]
            assert model.state is EngineState.FAILED
            assert (model.restarts, model.failures_in_row) == (2, 3)
            assert spent >= 0.2 + 0.4  # two backoffs: 0.2 s, then 0.4 s
            text = caught.value.message
            assert "model 'crashing' failed on host " in text and "exit 3" in text
            assert "cannot open the model: boom" in text and "/agent/v1/models/crashing/load" in text
            status = agent.model_status(model)
            assert status.log[-1] == "cannot open the model: boom" and status.last_exit == "exit 3"
            assert counter(agent, "wave_engine_loads_total", model="crashing", outcome="failed") == 3
            fast = time.monotonic()
            with pytest.raises(ModelFailedError, match="failed on host "):
                await agent.acquire("crashing")  # failed: answered at once, not after a load timeout
            assert time.monotonic() - fast < 1
            await agent.load("crashing")  # the control API's load starts the count again
            assert model.state is EngineState.FAILED and model.restarts == 4
        finally:
            await agent.aclose()

    run(scenario)


def test_a_model_file_llama_server_cannot_load_fails_with_its_last_lines(tmp_path: Path) -> None:
    async def scenario() -> None:
        broken = {"name": "broken", "gguf": str(unloadable_gguf(tmp_path / "broken.gguf")), "threads": 1}
        agent = Agent(agent_config([broken, smol("fine", 256)], max_restarts=1))
        await agent.start()
        try:
            with pytest.raises(ModelNotReadyError, match="failed on host "):
                await agent.acquire("broken")
            model = agent.models["broken"]
            assert model.state is EngineState.FAILED and model.restarts == 1
            assert "while loading" in model.last_error
            assert any("load" in line.lower() for line in agent.model_status(model).log)
            await ready(agent, "fine")  # the other model serves
        finally:
            await agent.aclose()

    run(scenario)


def test_a_model_that_can_never_fit_fails_at_start_and_says_why() -> None:
    async def scenario() -> None:
        agent = Agent(agent_config([smol("huge", 8192, slots=4), smol("a", 256)], budget="300MiB"))
        await agent.start()
        try:
            huge = agent.models["huge"]
            assert huge.state is EngineState.FAILED
            assert "lower its context or slots, or raise the budget" in huge.last_error
            with pytest.raises(
                ModelNotReadyError,
                match=r"needs 8\d\d\.\d MiB on cpu \(sizing engine: .*8192 tokens x 4 slots.*\) but the device's budget is 300.0 MiB",
            ):
                await agent.acquire("huge")
            await ready(agent, "a")
        finally:
            await agent.aclose()

    run(scenario)


class SlowToFree:
    """Host RAM whose free memory comes back `hold_s` after an engine exits, as a GPU driver's does."""

    def __init__(self, *, hold_s: float) -> None:
        self._ram = HostMemory()
        self.hold_s = hold_s
        self.pid: int | None = None
        self.gone_at: float | None = None
        self.reads_low = 0

    def read(self) -> MemoryReading:
        real = self._ram.read()
        if self.pid is not None:
            if Path(f"/proc/{self.pid}").exists():
                return self._low(real)
            self.gone_at = self.gone_at or time.monotonic()
            if time.monotonic() - self.gone_at < self.hold_s:
                return self._low(real)
        return real

    def _low(self, real: MemoryReading) -> MemoryReading:
        self.reads_low += 1
        return MemoryReading(total=real.total, free=100 * MIB, source="held")

    def process_bytes(self, pid: int) -> int | None:
        return self._ram.process_bytes(pid)


def test_after_an_eviction_the_agent_waits_until_the_memory_is_really_back() -> None:
    async def scenario() -> None:
        device = SlowToFree(hold_s=1.0)
        agent = Agent(agent_config([A, B], budget="300MiB"), devices={"cpu": device})  # one at a time
        await agent.start()
        try:
            a = await ready(agent, "a")
            assert a.process is not None
            device.pid = a.process.pid  # its memory is "held" until 1 s after it exits
            b = await ready(agent, "b")
            assert a.state is EngineState.STOPPED and device.gone_at is not None
            assert b.process is not None and b.process.started >= device.gone_at + device.hold_s
            assert b.cold_start is not None and b.cold_start.memory >= device.hold_s
            assert device.reads_low >= 2  # it looked, saw too little, and looked again
        finally:
            await agent.aclose()

    run(scenario)


def test_eviction_order_is_quickest_to_reload_then_least_recently_used() -> None:
    def model(name: str, load_s: float, last_used: float, **config: Any) -> ManagedModel:
        from wavefleet.agent.config import ModelConfig
        from wavefleet.agent.host import _Phases

        m = ManagedModel(
            ModelConfig.model_validate({"name": name, "command": ["x"], "memory": "1GiB", **config}),
            engine=name,
            estimate=MemoryEstimate(device=MIB),
            needs={"cpu": MIB},
        )
        m.state, m.holds_memory, m.last_used = EngineState.READY, True, last_used
        m.cold_start = _Phases(memory=0, process=0.1, load=load_s, first_token=0.1)
        return m

    quick_old, quick_new, slow = model("q-old", 1, 10), model("q-new", 1, 20), model("slow", 9, 0)
    busy, pinned, loading = model("busy", 0, 0), model("pinned", 0, 0, pinned=True), model("loading", 0, 0)
    busy.inflight = 1
    loading.state = EngineState.STARTING
    order = eviction_order([slow, busy, quick_new, pinned, loading, quick_old])
    assert [m.name for m in order] == ["q-old", "q-new", "slow"]


def test_an_engine_that_stops_answering_is_killed_and_restarted() -> None:
    async def scenario() -> None:
        agent = Agent(agent_config([smol("a", 256)], health_interval=0.2))
        await agent.start()
        try:
            a = await ready(agent, "a")
            assert a.process is not None
            hung = a.process.pid
            os.kill(hung, signal.SIGSTOP)  # alive, but answers nothing
            await async_wait_until(lambda: a.process is not None and a.process.pid != hung, timeout_s=30)
            lease = await agent.acquire("a")
            lease.release()
            assert "stopped answering its health checks (3 in a row) and was killed" in a.last_error
            assert a.restarts == 1 and a.last_exit == "killed by SIGKILL"
        finally:
            await agent.aclose()

    run(scenario)


def test_the_ready_line_splits_the_estimate_into_buffers_and_runtime_and_compares_like_with_like() -> None:
    """llama-server logs its buffers, not its runtime: the line compares the estimate's buffers with
    them and names the runtime allowance apart, so the sizes it prints add up."""

    async def scenario() -> None:
        agent = Agent(agent_config([A]))
        await agent.start()
        try:
            model = await ready(agent, "a")
            line = next(e for e in agent.events if "a: ready in" in e)
            assert model.buffers is not None
            runtime = model.estimate.parts["runtime"]
            buffers = model.estimate.total - runtime
            error = (buffers - sum(model.buffers.values())) / sum(model.buffers.values())
            assert (
                f"estimate {format_bytes(model.estimate.total)} = {format_bytes(buffers)} of buffers "
                f"+ {format_bytes(runtime)} runtime allowance; llama-server logged "
                f"{format_bytes(sum(model.buffers.values()))} of buffers (estimate {error:+.1%})"
            ) in line, line
        finally:
            await agent.aclose()

    run(scenario)
