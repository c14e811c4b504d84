"""Faults with real processes: engines killed, cut, hung and flapping; a gateway killed with SIGKILL.

Engines are tests/reliability_engine.py processes; the gateway is `wave serve` in its own
process, except for the circuit-breaker test, which runs the app with the PollingMonitor in
this process (what `wave up` does) in front of a real engine process.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

import reliability_support as support  # tests/ is on pytest's pythonpath
from helpers import chat_body, http_request
from wavefleet.gateway.app import create_app
from wavefleet.gateway.config import BackendConfig, GatewayConfig
from wavefleet.gateway.monitor.breaker import BreakerPolicy
from wavefleet.gateway.monitor.polling import PollingMonitor
from wavefleet.wire import Fault

KEY = "sk-local-0123456789abcdef"
pytestmark = pytest.mark.slow


def chat(stream: bool, max_tokens: int = 20, content: str = "hello") -> dict[str, Any]:
    return chat_body(content, max_tokens=max_tokens, stream=stream)


async def ask(session: aiohttp.ClientSession, url: str, stream: bool, **headers: str) -> dict[str, Any]:
    """One request; what came back: status, backend, body text, and for streams how it ended."""
    async with session.post(
        f"{url}/v1/chat/completions", json=chat(stream), headers={"Authorization": f"Bearer {KEY}", **headers}
    ) as reply:
        text = (await reply.read()).decode()
    events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    return {
        "status": reply.status,
        "backend": reply.headers.get("x-wave-backend"),
        "text": text,
        "done": bool(events) and events[-1] == "[DONE]",
        "error": next((json.loads(e)["error"] for e in events if e.startswith('{"error"')), None),
        "finished": time.time(),
    }


async def received(session: aiohttp.ClientSession, *engines: Any) -> int:
    """How many request bodies the engines have received, in all."""
    total = 0
    for engine in engines:
        async with session.get(f"{engine.url}/admin/bodies") as reply:
            total += len(await reply.json())
    return total


@pytest.fixture
def engines() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for engine in started:
        engine.stop()


def test_engine_killed_under_load_loses_no_request_that_had_not_streamed(
    engines: list[Any], tmp_path: Path
) -> None:
    a = support.EngineProcess("a", "--token-delay", "0.05", "--tokens", "20")
    b = support.EngineProcess("b", "--token-delay", "0.05", "--tokens", "20")
    engines += [a, b]
    gateway = support.GatewayProcess(
        "--backend", f"a={a.url}", "--backend", f"b={b.url}", "--policy", "round-robin", "--api-key", KEY,
        log=tmp_path / "gateway.log",
    )  # fmt: skip
    try:

        async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            async with aiohttp.ClientSession() as session:
                during = [
                    asyncio.ensure_future(ask(session, gateway.url, stream=i % 2 == 0)) for i in range(40)
                ]
                deadline = time.monotonic() + 20
                while await received(session, a, b) < 40:  # every answer takes ~1 s: all 40 in flight
                    assert time.monotonic() < deadline, "the engines never received the 40 requests"
                    await asyncio.sleep(0.02)
                a.kill()
                first = await asyncio.gather(*during)
                after = await asyncio.gather(
                    *(ask(session, gateway.url, stream=i % 2 == 0) for i in range(20))
                )
                return first, after

        during, after = asyncio.run(main())
    finally:
        gateway.stop()
    plain = [r for i, r in enumerate(during) if i % 2 == 1]
    streams = [r for i, r in enumerate(during) if i % 2 == 0]
    # non-streaming answers had sent the client nothing when `a` died: every one was retried on b
    assert all(r["status"] == 200 for r in plain), [r["text"][:200] for r in plain if r["status"] != 200]
    assert {r["backend"] for r in plain} == {"b"}
    # a stream already under way on `a` cannot move: it ends with an in-band error event, never silently
    cut = [r for r in streams if r["error"] is not None]
    assert cut, "no stream was running on the killed engine"
    assert all(r["status"] == 200 and (r["done"] or r["error"] is not None) for r in streams)
    assert all(r["backend"] == "a" for r in cut) and all(r["backend"] == "b" for r in streams if r not in cut)
    # after the kill nothing is lost: requests routed to the dead engine are retried on b
    assert [r["status"] for r in after] == [200] * 20
    assert all(r["error"] is None and (r["done"] or i % 2) for i, r in enumerate(after))


def test_stream_cut_midway_surfaces_as_an_error_in_the_openai_client(engines: list[Any]) -> None:
    engine = support.EngineProcess("c", "--fault", Fault.CUT)
    engines.append(engine)
    gateway = support.GatewayProcess("--backend", f"c={engine.url}", "--api-key", KEY)
    try:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0)
        received = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=20
            ):
                received.extend(c.delta.content or "" for c in chunk.choices)
        assert "".join(received).startswith("c0 c1 c2")
        assert "c" in str(caught.value)
        client.close()
    finally:
        gateway.stop()


def test_hung_engine_trips_the_first_byte_idle_and_total_timeouts(engines: list[Any], tmp_path: Path) -> None:
    hung = support.EngineProcess("hung", "--fault", Fault.HANG)
    stalls = support.EngineProcess("stall", "--fault", Fault.STALL)
    slow = support.EngineProcess("slow", "--token-delay", "0.3", "--tokens", "40")
    engines += [hung, stalls, slow]
    config = tmp_path / "wave.yaml"
    config.write_text(
        "timeouts: {connect_s: 1, first_byte_s: 1, idle_s: 1, total_s: 3}\n"
        "backends:\n"
        f"  - {{name: hung, url: '{hung.url}', models: [hung]}}\n"
        f"  - {{name: stall, url: '{stalls.url}', models: [stall]}}\n"
        f"  - {{name: slow, url: '{slow.url}', models: [slow]}}\n"
    )
    gateway = support.GatewayProcess("--config", str(config), "--api-key", KEY)
    try:

        def call(model: str, stream: bool) -> tuple[int, str]:
            status, _, body = http_request(
                "POST", gateway.url + "/v1/chat/completions", {**chat(stream, 40), "model": model},
                {"Authorization": f"Bearer {KEY}"}, timeout=30,
            )  # fmt: skip
            return status, body.decode()

        status, body = call("hung", False)
        assert status == 504 and "first byte within 1 s" in json.loads(body)["error"]["message"]
        status, body = call("hung", True)
        assert status == 504 and json.loads(body)["error"]["code"] == "upstream_timeout"
        status, body = call("stall", True)  # one event, then silence: cut by the idle gap, in-band
        assert (
            status == 200 and "stall0" in body and '"code": "upstream_timeout"' in body.replace('":"', '": "')
        )
        status, body = call("slow", True)  # 40 tokens at 0.3 s need 12 s: the 3 s total ends it
        events = [line for line in body.split("\n") if line.startswith("data: {")]
        assert status == 200 and "upstream_timeout" in events[-1]
        assert 3 <= len(events) - 1 < 40
    finally:
        gateway.stop()


def test_flapping_engine_trips_the_breaker_and_recovers(engines: list[Any]) -> None:
    engine = support.EngineProcess("f")
    engines.append(engine)
    config = GatewayConfig(backends=[BackendConfig(name="f", url=engine.url, models=["m"])], retries=0)

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            breaker = BreakerPolicy(failure_threshold=3, base_cooldown_s=0.5, max_cooldown_s=2.0)
            monitor = PollingMonitor(config.backends, session, interval_s=60, breaker=breaker)
            runner = web.AppRunner(create_app(config, monitor, api_keys=[KEY]), handler_cancellation=True)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            try:
                for _ in range(3):  # flap: ok, failing, ok, failing
                    engine.fault(Fault.ERROR)
                    seen_before = len(engine.bodies())
                    statuses = [(await ask(session, url, False))["status"] for _ in range(30)]
                    reached = len(engine.bodies()) - seen_before
                    assert 500 in statuses and 503 in statuses  # failures, then the breaker answers itself
                    assert reached < 30  # the open breaker kept most requests off the failing engine
                    assert monitor.snapshot("f").breaker in ("open", "half-open")
                    engine.fault(Fault.NONE)
                    deadline = time.monotonic() + 15
                    while (await ask(session, url, False))["status"] != 200:  # half-open probe, then closed
                        assert time.monotonic() < deadline, "the breaker never closed again"
                        await asyncio.sleep(0.1)
                    assert monitor.snapshot("f").breaker == "closed"
                    assert [(await ask(session, url, False))["status"] for _ in range(5)] == [200] * 5
            finally:
                await runner.cleanup()

    asyncio.run(main())


def test_gateway_sigkilled_under_load_leaves_a_sound_audit_database(
    engines: list[Any], tmp_path: Path
) -> None:
    engine = support.EngineProcess("k", "--token-delay", "0.002", "--tokens", "5")
    engines.append(engine)
    db = tmp_path / "audit.db"
    gateway = support.GatewayProcess(
        "--backend", f"k={engine.url}", "--api-key", KEY, "--audit-db", str(db), "--screening", "flag",
        "--api-key-limits", "rpm=1000000,max_concurrent=64",
    )  # fmt: skip
    finished: dict[str, float] = {}
    stop = threading.Event()

    async def load() -> None:
        async with aiohttp.ClientSession() as session:

            async def worker(w: int) -> None:
                n = 0
                while not stop.is_set():
                    rid = f"w{w}-{n}"
                    n += 1
                    try:
                        result = await ask(session, gateway.url, n % 2 == 0, **{"x-request-id": rid})
                    except aiohttp.ClientError:
                        return  # the gateway is gone
                    if result["status"] == 200:
                        finished[rid] = result["finished"]

            await asyncio.gather(*(worker(w) for w in range(8)))

    thread = threading.Thread(target=lambda: asyncio.run(load()))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(finished) < 200:  # under load: answers keep coming while the gateway dies
            assert time.monotonic() < deadline and thread.is_alive(), f"only {len(finished)} answers"
            time.sleep(0.05)
    finally:
        killed_at = time.time()
        gateway.stop(signal.SIGKILL)
        stop.set()
        thread.join(timeout=30)
    assert gateway.proc.returncode == -signal.SIGKILL
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {row[0] for row in con.execute("SELECT request_id FROM audit")}
    missing_ages = sorted(killed_at - t for rid, t in finished.items() if rid not in stored)
    assert len(finished) >= 200
    # only rows of the last batch interval (0.2 s) plus the batch being written may be lost;
    # 1 s of margin for a busy 2-core machine's thread scheduling
    assert all(age < 1.2 for age in missing_ages), missing_ages[-5:]
    print(f"\naudit after SIGKILL: {len(finished)} answered, {len(stored)} rows, {len(missing_ages)} missing, "
          f"oldest missing {max(missing_ages, default=0):.3f} s before the kill")  # fmt: skip
