"""The fleet agent as its host's collector: `telemetry:` in its config exports the host's device
metrics on its /metrics (the names `wave telemetry --serve` uses) and shows them on its /ui."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agent_support import serving_agent
from helpers import free_port, http_request
from wavefleet.telemetry import names

SECRET = "agent-telemetry-secret"


def test_an_agent_with_telemetry_exports_its_gpus_power_and_energy(tmp_path: Path) -> None:
    elsewhere = {"name": "ext", "url": f"http://127.0.0.1:{free_port()}"}  # an engine it never starts
    with serving_agent(
        tmp_path / "desk", [elsewhere], secret=SECRET, telemetry={"fake": "rtx-4080-super"}
    ) as agent:
        status, _, body = http_request("GET", f"{agent.url}/metrics", headers=agent.headers())
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        power = families[names.DCGM_POWER_USAGE.name]
        assert [s.labels["modelName"] for s in power.samples] == ["NVIDIA GeForce RTX 4080 SUPER"]
        assert power.samples[0].value > 0
        assert names.DCGM_ENERGY.name in families
        status, _, body = http_request("GET", f"{agent.url}/ui/status.json", headers=agent.headers())
        assert status == 200
        [device] = json.loads(body)["telemetry"]["devices"]
        assert "4080" in device["name"] and device["power_w"] > 0


def test_an_unknown_recording_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    from wavefleet.agent.config import AgentConfig

    try:
        AgentConfig.model_validate(
            {"models": [{"name": "ext", "url": "http://127.0.0.1:9"}], "telemetry": {"fake": "no-such-gpu"}}
        )
    except ValueError as exc:
        assert "rtx-4080-super" in str(exc)
    else:
        raise AssertionError("an unknown recording was accepted")


def test_an_agent_without_rapl_estimates_its_cpu_from_a_tdp_and_says_what_it_found(tmp_path: Path) -> None:
    """Where RAPL is not readable (a VM, this test machine) `cpu_tdp:` (or `cpu:`, a catalog id)
    gives the TDP estimate `wave telemetry --cpu-tdp` makes; the agent prints what it found."""
    elsewhere = {"name": "ext", "url": f"http://127.0.0.1:{free_port()}"}
    with serving_agent(tmp_path / "desk", [elsewhere], secret=SECRET, telemetry={"cpu_tdp": 65}) as agent:
        status, _, body = http_request("GET", f"{agent.url}/metrics", headers=agent.headers())
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert names.CPU_ESTIMATED_POWER.name.removesuffix("_watts") in {
            name.removesuffix("_watts") for name in families
        }
        agent.output.seek(0)
        said = agent.output.read()
        assert "telemetry" in said and "TDP 65 W" in said


def test_a_cpu_given_twice_or_unknown_is_refused_naming_the_fix(tmp_path: Path) -> None:
    from wavefleet.agent.config import AgentConfig

    base = {"models": [{"name": "ext", "url": "http://127.0.0.1:9"}]}
    for telemetry, expected in (
        ({"cpu": "ryzen-9-9900x", "cpu_tdp": 120}, "not both"),
        ({"cpu_tdp": 0}, "greater than 0"),
        ({"cpu": "no-such-cpu"}, "no-such-cpu"),
    ):
        try:
            AgentConfig.model_validate({**base, "telemetry": telemetry})
        except ValueError as exc:
            assert expected in str(exc)
        else:
            raise AssertionError(f"{telemetry} was accepted")
