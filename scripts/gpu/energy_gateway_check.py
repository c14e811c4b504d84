"""Energy per request through a running `wave serve --telemetry`, checked against NVML's counter.

Run by scripts/gpu/energy_gateway.sh. Reads NVML's total energy counter of GPU 0 itself, runs
`wave bench` through the gateway (concurrency 1, then 4, prompt lengths spread from 64 to 2048
tokens), waits until the gateway has settled every request, and reports:

- closure: requests' energy + idle shares + unattributed = metered, from one /metrics scrape;
- metered against NVML's own counter read by this script over the same run (the gateway's
  windows start and end at its own samples, so they differ by up to a sample interval of draw);
- the audit rows' energy and cost against /metrics;
- `wave audit --usage` of the run.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pynvml
from prometheus_client.parser import text_string_to_metric_families


def scrape(gateway: str) -> dict[str, float]:
    with urllib.request.urlopen(gateway + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(("wave_request_", "wave_device_")) and sample.name.endswith("_total"):
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def nvml_joules() -> float:
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1000


def bench(gateway: str, key: str, concurrency: int, count: int, out: Path) -> None:
    """One `wave bench` level; its report (with the J/token line) goes to bench-cN.txt."""
    command = [
        *(sys.executable, "-m", "wavefleet", "bench", "--url", gateway + "/v1", "--api-key", key),
        *(
            "--model",
            "llama-3.1-8b-synthetic",
            "--concurrency",
            str(concurrency),
            "--num-requests",
            str(count),
        ),
        *("--input-len", "1024", "--length-dist", "uniform:0.9", "--output-len", "128", "--ignore-eos"),
        "--no-progress",
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    (out / f"bench-c{concurrency}.txt").write_text(done.stdout)
    print(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=24, help="per concurrency level")
    args = parser.parse_args()
    pynvml.nvmlInit()
    time.sleep(2)  # the gateway's first samples, and some idle draw to learn
    before, nvml_before = scrape(args.gateway), nvml_joules()
    for concurrency in (1, 4):
        bench(args.gateway, args.key, concurrency, args.requests, args.out)
    expected = before.get("wave_request_energy_measured_requests_total", 0) + 2 * args.requests
    deadline = time.monotonic() + 30
    while True:
        after = scrape(args.gateway)
        if (
            after.get("wave_request_energy_measured_requests_total", 0) >= expected
            or time.monotonic() > deadline
        ):
            break
        time.sleep(0.5)
    nvml_after = nvml_joules()

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    requests_j = after["wave_request_energy_joules_total"] + after["wave_request_idle_energy_joules_total"]
    split = requests_j + after["wave_device_unattributed_energy_joules_total"]
    metered = after["wave_device_metered_energy_joules_total"]
    time.sleep(1)  # the audit writer's last rows
    db = sqlite3.connect(args.db)
    audit_j, audit_cost, rows, measured = db.execute(
        "SELECT sum(energy_j + idle_j), sum(cost), count(*), count(energy_j) FROM audit"
    ).fetchone()
    usage = subprocess.run(
        [sys.executable, "-m", "wavefleet", "audit", "--db", str(args.db), "--usage", "--format", "jsonl"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = {
        "closure_error": abs(split - metered) / metered if metered else None,
        "metered_j_during_run": delta("wave_device_metered_energy_joules_total"),
        "nvml_j_during_run": nvml_after - nvml_before,
        "requests_metered": after.get("wave_request_energy_measured_requests_total"),
        "requests_j": requests_j,
        "unattributed_j": after["wave_device_unattributed_energy_joules_total"],
        "audit": {"rows": rows, "measured": measured, "energy_and_idle_j": audit_j, "cost": audit_cost},
        "metrics_cost": after.get("wave_request_cost_total"),
        "j_per_output_token": requests_j / after["wave_request_energy_measured_completion_tokens_total"],
        "usage": [json.loads(line) for line in usage.splitlines()],
    }
    (args.out / "energy_gateway.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "usage"}, indent=2))
    print(usage)
    closes = result["closure_error"] is not None and result["closure_error"] < 0.02
    print("closure within 2 %:", closes)
    return 0 if closes else 1


if __name__ == "__main__":
    sys.exit(main())
