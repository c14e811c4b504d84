"""Energy per request through fleet agents: `wave serve --telemetry` in front of real `wave agent`s
on loopback, one replaying a recorded GPU (`telemetry: {fake: ...}`), one without telemetry, both
serving fake OpenAI engines. The agent attributes each request's energy on its own devices and the
gateway asks for it by the id it sent: the audit rows and the gateway's energy metrics carry the
agent's figures exactly, and the agent's own books close."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent_support import serving_agent
from helpers import chat_body, http_request, serving_wave, wave_env
from wavefleet.agent.config import AgentConfig
from wavefleet.agent.devices import HostMemory, MemoryReading
from wavefleet.agent.host import Agent
from wavefleet.agent.server import agent_gateway_config
from wavefleet.gateway.backends.fake_servers import FakeOpenAIEngine, serve_in_thread
from wavefleet.gateway.energy import devices_of

SECRET = "energy-agents-secret"
ENERGY_FAMILIES = (
    "wave_request_energy_joules_total",
    "wave_request_idle_energy_joules_total",
    "wave_request_energy_measured_requests_total",
    "wave_request_cost_total",
    "wave_device_metered_energy_joules_total",
    "wave_device_unattributed_energy_joules_total",
)


def metric_sums(url: str, headers: dict[str, str], *, backend: str | None = None) -> dict[str, float]:
    status, _, body = http_request("GET", url + "/metrics", headers=headers)
    assert status == 200
    sums = dict.fromkeys(ENERGY_FAMILIES, 0.0)
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name in sums and (backend is None or sample.labels.get("backend", backend) == backend):
                sums[sample.name] += sample.value
    return sums


def audit_rows(db: Path, count: int, *, within_s: float = 40.0) -> list[dict[str, Any]]:
    """The audit rows once `count` are written."""
    deadline = time.monotonic() + within_s
    while True:
        found: list[dict[str, Any]] = []
        if db.exists():
            connection = sqlite3.connect(db)
            connection.row_factory = sqlite3.Row
            try:
                found = [dict(r) for r in connection.execute("SELECT * FROM audit ORDER BY request_id")]
            except sqlite3.OperationalError:
                found = []
            finally:
                connection.close()
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"after {within_s} s: {len(found)} audit rows of {count}: {found}")
        time.sleep(0.05)


def test_requests_through_agents_from_two_gateways_carry_the_energy_the_agent_attributed(
    tmp_path: Path,
) -> None:
    with (
        serve_in_thread(FakeOpenAIEngine("gpu-engine", ["m"], delay_s=0.2).app()) as gpu_engine,
        serve_in_thread(FakeOpenAIEngine("cpu-engine", ["r"], delay_s=0.05).app()) as cpu_engine,
        serving_agent(
            tmp_path / "desk",
            [{"name": "m", "kind": "vllm", "url": gpu_engine.url}],
            secret=SECRET,
            telemetry={"fake": "rtx-4080-super"},
        ) as desk,
        serving_agent(
            tmp_path / "xps13", [{"name": "r", "kind": "vllm", "url": cpu_engine.url}], secret=SECRET
        ) as xps13,
    ):

        def gateway_args(db: Path) -> list[str]:
            args = ["--agent", f"desk={desk.url}", "--agent", f"xps13={xps13.url}", "--audit-db", str(db)]
            # no device of its own here (a replayed host without a driver): the GPUs are the agents'
            return [
                *args,
                "--telemetry",
                "--telemetry-fake",
                "no-driver",
                "--tariff",
                "0.30",
                "--currency",
                "EUR",
            ]

        env = wave_env(WAVE_AGENT_SECRET=SECRET)
        # two gateways share the agents: the agent splits its GPU among the requests of both
        with (
            serving_wave(*gateway_args(tmp_path / "one.db"), env=env) as one,
            serving_wave(*gateway_args(tmp_path / "two.db"), env=env) as two,
        ):

            def send(i: int) -> int:
                model = "r" if i % 4 == 3 else "m"
                body = chat_body(" ".join(["word"] * (2 + i % 5)), model=model, stream=i % 2 == 0)
                gateway = one if i < 12 else two
                status, _, _ = http_request("POST", f"{gateway}/v1/chat/completions", body)
                return status

            with ThreadPoolExecutor(8) as pool:  # concurrent, through both gateways at once
                assert set(pool.map(send, range(20))) == {200}
            found = {"one": audit_rows(tmp_path / "one.db", 12), "two": audit_rows(tmp_path / "two.db", 8)}
            at_gateway = {
                "one": metric_sums(one, {}, backend="desk"),
                "two": metric_sums(two, {}, backend="desk"),
            }
        at_agent = metric_sums(desk.url, desk.headers())
        quiet = metric_sums(xps13.url, xps13.headers())

    energy = idle = 0.0
    for name, sent_to_desk in (("one", 9), ("two", 6)):
        on_desk = [r for r in found[name] if r["backend"] == "desk"]
        on_xps13 = [r for r in found[name] if r["backend"] == "xps13"]
        assert len(on_desk) == sent_to_desk and len(on_xps13) == len(found[name]) - sent_to_desk
        for row in on_desk:
            assert row["energy_j"] is not None and row["idle_j"] is not None, row
            assert row["energy_j"] >= 0 and row["idle_j"] >= 0 and row["energy_j"] + row["idle_j"] > 0
            assert row["currency"] == "EUR"
            assert row["cost"] == pytest.approx((row["energy_j"] + row["idle_j"]) / 3.6e6 * 0.30, rel=1e-6)
        # an agent without telemetry measures nothing: absent, never zero
        assert all(r[c] is None for r in on_xps13 for c in ("energy_j", "idle_j", "cost", "currency"))
        # each gateway's books hold exactly what the agent attributed to the requests it sent there
        mine = at_gateway[name]
        assert mine["wave_request_energy_joules_total"] == pytest.approx(sum(r["energy_j"] for r in on_desk))
        assert mine["wave_request_idle_energy_joules_total"] == pytest.approx(
            sum(r["idle_j"] for r in on_desk)
        )
        assert mine["wave_request_energy_measured_requests_total"] == sent_to_desk
        assert mine["wave_request_cost_total"] == pytest.approx(sum(r["cost"] for r in on_desk), rel=1e-6)
        energy += sum(r["energy_j"] for r in on_desk)
        idle += sum(r["idle_j"] for r in on_desk)
    assert quiet["wave_request_energy_measured_requests_total"] == 0
    # the two gateways' shares are the agent's, none counted twice
    assert at_agent["wave_request_energy_measured_requests_total"] == 15
    assert at_agent["wave_request_energy_joules_total"] == pytest.approx(energy, rel=1e-6)
    assert at_agent["wave_request_idle_energy_joules_total"] == pytest.approx(idle, rel=1e-6)
    # and the agent's books close: requests + idle shares + unattributed = what its GPU counted
    metered = at_agent["wave_device_metered_energy_joules_total"]
    assert metered > 0
    assert energy + idle + at_agent["wave_device_unattributed_energy_joules_total"] == pytest.approx(
        metered, rel=1e-6
    )


def test_the_agents_energy_api_refuses_bad_ids_and_says_unknown_ones(tmp_path: Path) -> None:
    with (
        serve_in_thread(FakeOpenAIEngine("gpu-engine", ["m"], delay_s=0).app()) as engine,
        serving_agent(
            tmp_path / "desk",
            [{"name": "m", "kind": "vllm", "url": engine.url}],
            secret=SECRET,
            telemetry={"fake": "rtx-4080-super"},
        ) as desk,
    ):
        base = f"{desk.url}/agent/v1/energy"
        status, _, body = http_request("GET", f"{base}/abc", headers={})
        assert status == 401
        status, _, body = http_request("GET", f"{base}/{'x' * 200}", headers=desk.headers())
        assert status == 400 and "energy id" in json.loads(body)["error"]["message"]
        status, _, body = http_request("GET", f"{base}/no-such-request?wait=0", headers=desk.headers())
        assert status == 404 and "no request" in json.loads(body)["error"]["message"]
        status, _, body = http_request("GET", f"{base}/abc?wait=soon", headers=desk.headers())
        assert status == 400 and "wait" in json.loads(body)["error"]["message"]


class EightGiBGpu:
    """A GPU's memory as the agent reads it, without NVML."""

    def read(self) -> MemoryReading:
        return MemoryReading(total=8 << 30, free=8 << 30, source="test")

    def process_bytes(self, pid: int) -> int | None:
        return None


def test_an_agent_meters_each_model_on_the_device_it_runs_on() -> None:
    """A llama.cpp model on the agent's second GPU is metered on that GPU's counter, not the CPU's
    or every GPU's; one in host RAM on the CPU's."""
    unused = "http://127.0.0.1:9"
    config = AgentConfig.model_validate(
        {
            "devices": {"cpu": {}, "big": {"gpu": 1}},
            "models": [
                {"name": "on-gpu", "kind": "llamacpp", "url": unused, "device": "big"},
                {"name": "on-cpu", "kind": "llamacpp", "url": unused, "device": "cpu"},
            ],
        }
    )

    async def served() -> dict[str, list[str]]:
        agent = Agent(config, devices={"cpu": HostMemory(), "big": EightGiBGpu()})
        await agent.start()
        try:
            backends = agent_gateway_config(agent).backends
            measured = ["cpu-estimate", "gpu0", "gpu1"]
            return {b.models[0]: devices_of(b, measured) for b in backends}
        finally:
            await agent.aclose()

    assert asyncio.run(served()) == {"on-gpu": ["gpu1"], "on-cpu": ["cpu-estimate"]}
