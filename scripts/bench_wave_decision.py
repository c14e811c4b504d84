"""Time one wave routing decision over 8 candidate backends (median of many timeit runs).

    PYTHONPATH=src python scripts/bench_wave_decision.py [--out docs/data/routing/decision_time.json]

Each timed call is a full `choose()` with live-looking snapshots, in-flight counts, a 1,000-char
prompt prefix looked up in (and added to) the prefix index. Least-loaded is timed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import timeit
from pathlib import Path

from wavefleet.gateway.config import BackendConfig, BackendProfile, WaveSettings
from wavefleet.gateway.monitor.snapshot import StaticMonitor
from wavefleet.gateway.routing.base import Candidate, FleetView, RouteRequest, RoutingPolicy
from wavefleet.gateway.routing.least_loaded import LeastLoadedPolicy
from wavefleet.gateway.routing.wave import WavePolicy

BACKENDS = 8


def fleet() -> FleetView:
    monitor = StaticMonitor()
    configs = {}
    for i in range(BACKENDS):
        gpu = i % 2 == 0
        name = f"b{i}"
        profile = BackendProfile(
            prefill_tokens_per_s=8000 if gpu else 250,
            decode_tokens_per_s=75 if gpu else 25,
            max_num_seqs=128 if gpu else 8,
            batch_slowdown=0.015 if gpu else 0.05,
        )
        configs[name] = BackendConfig(
            name=name,
            url=f"http://{name}:8000",
            kind="vllm" if gpu else "llamacpp",
            profile=profile,  # type: ignore[arg-type]
        )
        monitor.set(name, running=(i * 7) % 20, waiting=i % 3, kv_usage=0.3 if gpu else None)
    return FleetView(monitor, configs, {name: 2 for name in configs})


def time_policy(policy: RoutingPolicy, view: FleetView, calls: int, repeats: int) -> list[float]:
    prefix = ("You are a helpful assistant for the home lab. " * 22)[:1000]
    candidates = tuple(Candidate(f"b{i}", "m", 0) for i in range(BACKENDS))
    requests = [
        RouteRequest(
            "m", candidates, 180 + i % 50, 128, True, prefix_text=prefix + str(i % 10), request_id=f"r{i}"
        )
        for i in range(calls)
    ]
    runs = []
    for _ in range(repeats):
        seconds = timeit.timeit(
            "choose(next(it), view)",
            globals={"choose": policy.choose, "it": iter(requests), "view": view},
            number=calls,
        )
        runs.append(seconds / calls * 1e6)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    view = fleet()
    results = {}
    for name, policy in (
        ("wave", WavePolicy(WaveSettings())),
        ("wave-no-affinity", WavePolicy(WaveSettings(affinity=False))),
        ("least-loaded", LeastLoadedPolicy()),
    ):
        runs = time_policy(policy, view, args.calls, args.repeats)
        results[name] = {"median_us": statistics.median(runs), "min_us": min(runs), "max_us": max(runs)}
        print(f"{name:18s} median {statistics.median(runs):6.1f} us per decision (8 candidates)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "what": "one choose() over 8 candidates; median over repeats of timeit means",
            "calls_per_repeat": args.calls,
            "repeats": args.repeats,
            "python": platform.python_version(),
            "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end",
            "results": results,
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
