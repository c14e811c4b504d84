"""`wave plan --actual FILE`: the plan's per-host TDP estimate beside what the hosts' energy
counters counted, from a Prometheus range query of those counters; in every output format, each
figure with its source and period; a clear refusal of a file that is not such a query or names
hosts the inventory does not have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from helpers import run_wave
from wavefleet.cli.plan import plan as plan_command
from wavefleet.errors import UsageError
from wavefleet.plan.actual import load_actual

T0 = 1764720000  # 2025-12-03T00:00:00Z
HOUR = 3600
PRICE = 0.12  # the example inventory's tariff, USD per kWh
HOSTS = ["schlimers-server", "xps15", "jetson", "xps13"]  # the example inventory's


def series(metric: str, node: str, values: list[float], **labels: str) -> dict[str, Any]:
    return {
        "metric": {"__name__": metric, "node": node, "service": "wave-agent", **labels},
        "values": [[T0 + k * HOUR, repr(v)] for k, v in enumerate(values)],
    }


def matrix(*result: dict[str, Any], result_type: str = "matrix") -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": result_type, "result": list(result)}}


def fleet_draw() -> dict[str, Any]:
    gpu_mj = 300 * HOUR * 1000  # 300 W for an hour, in mJ
    return matrix(
        # the GPU: 300 W for an hour, then the driver reloads and it counts 60 W for an hour from 0
        series(
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            "schlimers-server",
            [5e8, 5e8 + gpu_mj, 60 * HOUR * 1000],
            gpu="0",
        ),
        # the CPU package at 50 W; the same series again from node_exporter, and its core subzone
        series("node_rapl_package_joules_total", "schlimers-server", [0, 50 * HOUR, 100 * HOUR], index="0"),
        {
            **series(
                "node_rapl_package_joules_total", "schlimers-server", [0, 50 * HOUR, 100 * HOUR], index="0"
            ),
            "metric": {
                "__name__": "node_rapl_package_joules_total",
                "node": "schlimers-server",
                "service": "node-exporter",
                "index": "0",
            },
        },
        series("node_rapl_core_joules_total", "schlimers-server", [0, 30 * HOUR, 60 * HOUR], index="0"),
        series("wave_jetson_energy_joules_total", "jetson", [10, 10 + 5 * HOUR, 10 + 10 * HOUR]),
        series("wave_cpu_estimated_energy_joules_total", "xps13", [0, 9 * HOUR, 18 * HOUR]),
    )


def wave_plan(*args: str) -> Result:
    return CliRunner().invoke(plan_command, list(args))


def write(tmp_path: Path, payload: Any, name: str = "drawn.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(payload) if not isinstance(payload, str) else payload)
    return path


def test_the_json_plan_compares_each_hosts_estimate_with_its_counters(tmp_path: Path) -> None:
    path = write(tmp_path, fleet_draw())
    done = wave_plan("--format", "json", "--actual", str(path))
    assert done.exit_code == 0, done.output
    actual = json.loads(done.output)["actual"]
    assert actual["file"] == str(path)
    hosts = {h["host"]: h for h in actual["hosts"]}
    server = hosts["schlimers-server"]
    assert server["start"] == "2025-12-03T00:00:00Z" and server["end"] == "2025-12-03T02:00:00Z"
    assert server["hours"] == pytest.approx(2.0)
    # 300 W for an hour, 60 W for an hour after the reset, and the CPU package's 50 W twice
    measured_kwh = (300 + 60 + 2 * 50) / 1000
    assert server["measured_kwh"] == pytest.approx(measured_kwh)
    assert server["measured_cost"] == pytest.approx(measured_kwh * PRICE)
    assert server["measured_mean_w"] == pytest.approx(measured_kwh * 1000 / 2)
    assert server["estimate_kwh"] == pytest.approx(420 * 2 / 1000)
    assert server["estimate_cost"] == pytest.approx(420 * 2 / 1000 * PRICE)
    assert server["currency"] == "USD" and server["includes_estimate"] is False
    assert any("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in s and "1 reset" in s for s in server["sources"])
    assert any("node_rapl_package_joules_total" in s for s in server["sources"])
    assert not any("core" in s for s in server["sources"])  # a part of the package, not counted again
    assert hosts["jetson"]["measured_kwh"] == pytest.approx(10 / 1000)
    assert hosts["xps13"]["includes_estimate"] is True  # a TDP estimate, not a measurement
    assert hosts["xps15"]["measured_kwh"] is None and "no series" in hosts["xps15"]["sources"][0]


def test_the_html_and_table_reports_show_estimate_and_measurement_with_source_and_period(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, fleet_draw())
    out = tmp_path / "plan.html"
    done = wave_plan("--format", "html", "--out", str(out), "--actual", str(path))
    assert done.exit_code == 0, done.output
    page = out.read_text()
    assert "Planned vs measured" in page
    assert "2025-12-03T00:00:00Z" in page and "2025-12-03T02:00:00Z" in page and str(path.name) in page
    assert "0.460" in page and "0.840" in page and "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in page
    done = wave_plan("--actual", str(path))
    assert done.exit_code == 0, done.output
    assert "Planned vs measured" in done.output and "0.460" in done.output
    done = wave_plan("--format", "markdown", "--actual", str(path))
    assert "Planned vs measured" in done.output and "0.460" in done.output
    assert "Planned vs measured" not in wave_plan("--format", "markdown").output


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ("not json {", "not JSON"),
        ({"status": "error", "error": "bad query"}, "bad query"),
        (matrix(result_type="vector"), "query_range"),
        (matrix(series("node_load1", "jetson", [1, 2])), "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"),
        (
            matrix(
                {
                    "metric": {"__name__": "wave_jetson_energy_joules_total"},
                    "values": [[T0, "1"], [T0 + 1, "2"]],
                }
            ),
            "`node` label",
        ),
        (matrix(series("wave_jetson_energy_joules_total", "desk", [1, 2])), "desk"),
        (matrix(series("wave_jetson_energy_joules_total", "jetson", [1])), "two"),
        (
            matrix(
                {
                    **series("wave_jetson_energy_joules_total", "jetson", [1, 2]),
                    "values": [[T0, "x"], [T0 + 1, "2"]],
                }
            ),
            "not a number",
        ),
    ],
)
def test_a_bad_or_mismatched_file_is_refused_saying_why(tmp_path: Path, payload: Any, says: str) -> None:
    path = write(tmp_path, payload)
    with pytest.raises(UsageError) as refused:
        load_actual(path, hosts=HOSTS)
    assert says in str(refused.value) and str(path) in str(refused.value)


def test_wave_plan_refuses_a_bad_file_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    done = run_wave("plan", "--actual", str(write(tmp_path, matrix(result_type="vector"))))
    assert done.returncode == 2, done.stderr
    assert "query_range" in done.stderr and "Traceback" not in done.stderr
    done = run_wave("plan", "--actual", str(tmp_path / "nowhere.json"))
    assert done.returncode == 2 and "nowhere.json" in done.stderr
