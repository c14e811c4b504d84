"""The rendered alert rules fire when they should and only then: `promtool test rules` over
series written for each case (GPU memory pressure is used over total, not used over free)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from render_example import example_fleet  # tests/ is on pytest's pythonpath
from wavefleet.render.render import render_to


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    fleet = example_fleet()
    out = tmp_path_factory.mktemp("render") / "out"
    render_to(fleet, out)
    return out / fleet.monitoring_node / "prometheus" / "rules" / "wavefleet.rules.yml"


def rules(rules_file: Path) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]}


def firing(alert: str, at: str, labels: dict[str, str] | None) -> dict[str, Any]:
    """A promql test that `alert` is firing at `at` with `labels` (None: that it is not)."""
    test: dict[str, Any] = {"expr": f'ALERTS{{alertname="{alert}",alertstate="firing"}}', "eval_time": at}
    if labels is None:
        test["exp_samples"] = []
    else:
        every = {"alertname": alert, "alertstate": "firing", "severity": "warning", **labels}
        text = ",".join(f'{k}="{v}"' for k, v in sorted(every.items()))
        test["exp_samples"] = [{"labels": f"ALERTS{{{text}}}", "value": 1}]
    return test


def promtool_test(rules_file: Path, tmp_path: Path, tests: list[dict[str, Any]], every: str = "1m") -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; ./dev test installs it")
    spec = tmp_path / "test.yml"
    spec.write_text(
        yaml.safe_dump({"rule_files": [str(rules_file)], "evaluation_interval": every, "tests": tests})
    )
    done = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_gpu_memory_pressure_is_used_over_total(rules_file: Path, tmp_path: Path) -> None:
    plain = [
        r
        for name, r in rules(rules_file).items()
        if name.startswith("GpuMemoryAlmostFull") and r["expr"].endswith("> 0.90")
    ]
    assert plain, "no GPU without a preallocating engine in the example fleet"
    node, gpu = re.findall(r'node="([^"]+)",gpu="(\d+)"', plain[0]["expr"])[0]
    name, labels = plain[0]["alert"], {"node": node, "gpu": gpu}
    selector = f'{{node="{node}",gpu="{gpu}"}}'

    def case(used: int, free: int, fires: bool) -> dict[str, Any]:
        return {
            "interval": "1m",
            "input_series": [
                {"series": f"DCGM_FI_DEV_FB_USED{selector}", "values": f"{used}x20"},
                {"series": f"DCGM_FI_DEV_FB_FREE{selector}", "values": f"{free}x20"},
            ],
            "promql_expr_test": [firing(name, "15m", labels if fires else None)],
        }

    promtool_test(
        rules_file,
        tmp_path,
        [
            case(14000, 2000, fires=False),  # 87.5 % of 16 GB used (used / free would be 700 %)
            case(15100, 900, fires=True),  # 94 %
        ],
    )


def test_throttling_by_heat_alerts_and_a_power_cap_does_not(rules_file: Path, tmp_path: Path) -> None:
    base = 'wave_gpu_clocks_event_reason_active{gpu="0",instance="desk:9184"'
    promtool_test(
        rules_file,
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    {"series": base + ',reason="hw_thermal_slowdown"}', "values": "0x4 1x16"},
                    {"series": base + ',reason="sw_power_cap"}', "values": "1x20"},
                ],
                "promql_expr_test": [
                    firing("GpuThrottled", "5m", None),
                    firing(
                        "GpuThrottled",
                        "15m",
                        {"gpu": "0", "instance": "desk:9184", "reason": "hw_thermal_slowdown"},
                    ),
                ],
            }
        ],
    )


def test_a_failed_engine_alerts_after_a_minute(rules_file: Path, tmp_path: Path) -> None:
    series = 'wave_engine_state{engine="llama-desk",model="llama-3.1-8b",state="failed",instance="desk:9184"}'
    labels = {"engine": "llama-desk", "model": "llama-3.1-8b", "state": "failed", "instance": "desk:9184"}
    promtool_test(
        rules_file,
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": "0 0 1 1 1 1"}],
                "promql_expr_test": [
                    firing("EngineFailed", "2m", None),
                    firing("EngineFailed", "4m", labels),
                ],
            }
        ],
    )


def test_llama_cpp_slots_full_fires_on_more_in_flight_than_its_slots_at_its_agent(
    rules_file: Path, tmp_path: Path
) -> None:
    """The agent starts llama.cpp (no llama-server scrape): more requests in flight at the agent
    than the placement's slots, for 5 minutes, means requests waited for a slot."""
    fleet = example_fleet()
    engine = next(e for e in fleet.engines if e.name == "llamacpp-gtx1650")  # 4 slots
    name = "LlamaCppSlotsFull_llamacpp_gtx1650"
    assert name in rules(rules_file)
    where = f'job="wave-agent",node="{engine.node}",service="wave-agent",model="{engine.model}"'
    labels = {"job": "wave-agent", "node": engine.node, "service": "wave-agent", "model": engine.model}

    def case(inflight: int, fires: bool) -> dict[str, Any]:
        return {
            "interval": "1m",
            "input_series": [{"series": f"wave_engine_inflight{{{where}}}", "values": f"{inflight}x10"}],
            "promql_expr_test": [firing(name, "8m", labels if fires else None)],
        }

    promtool_test(
        rules_file,
        tmp_path,
        [case(engine.parallel, fires=False), case(engine.parallel + 1, fires=True)],
    )


WEEK = 1008  # 10-minute steps in 7 days


def energy_case(joules_per_step: int, tokens_per_step: int, fires: bool) -> dict[str, Any]:
    """A week at 1 J per generated token, then an hour at `joules_per_step / tokens_per_step`."""
    week_j = 600 * WEEK
    week_tokens = 600 * WEEK
    energy = f"0+600x{WEEK} {week_j + joules_per_step}+{joules_per_step}x6"
    tokens = f"0+600x{WEEK} {week_tokens + tokens_per_step}+{tokens_per_step}x6"
    labels = {"model": "llama-3.1-8b", "backend": "desk"}
    return {
        "interval": "10m",
        "input_series": [
            {
                "series": 'wave_request_energy_joules_total{model="llama-3.1-8b",backend="desk",key="k1"}',
                "values": energy,
            },
            {"series": 'wave_completion_tokens_total{model="llama-3.1-8b",backend="desk"}', "values": tokens},
        ],
        "promql_expr_test": [firing("EnergyPerTokenHigh", f"{(WEEK + 7) * 10}m", labels if fires else None)],
    }


def test_energy_per_token_far_above_its_week_alerts(rules_file: Path, tmp_path: Path) -> None:
    promtool_test(
        rules_file,
        tmp_path,
        [
            energy_case(1800, 600, fires=True),  # 3 J per token for an hour
            energy_case(1200, 600, fires=False),  # twice the week's level: not over it
            energy_case(180, 60, fires=False),  # 3 J per token, but too few tokens to judge
        ],
        every="5m",  # a week of series: evaluating every minute takes half a minute
    )
