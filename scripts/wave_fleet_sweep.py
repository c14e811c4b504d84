"""The wave policy on fleet (d) in virtual time (tests/fleet_sim_support.py), every point of
issue 13's goal: fresh gateways at 85/100/115/130 % of capacity against least-loaded on the same
arrivals, and warm gateways (100 -> 115 -> 150 -> 100 %) against a fresh one on the last
phase's arrivals. About 2 min for seeds 1-6 on one core.

    python scripts/wave_fleet_sweep.py --seeds 1,2,3,4,5,6 --out out/wave-sweep.json

Per point: goodput (req/s over the arrival window), requests shed, requests admitted but not
good, what the CPU engine got (by decision reason), and whether the goal holds (fresh: >= 90 %
of the ideal, min(rate, capacity), and >= 95 % of least-loaded's; warm: last phase >= 95 % of
fresh).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fleet_sim_support import FleetRun, fleet_d, run_fleet, unprofiled_configs
from wavefleet.gateway.config import GatewayConfig, WaveSettings
from wavefleet.gateway.routing.base import RoutingPolicy
from wavefleet.gateway.routing.factory import build_policy
from wavefleet.gateway.routing.wave import WavePolicy

CAPACITY = 12.0  # fleet (d)'s twins within the SLO, requests/s
PHASE_S = 30.0
# the harness's settings (scripts/compare_policies.py), as tests/test_routing_wave_fleet.py
SETTINGS = WaveSettings(ttft_slo_s=1.0, tpot_slo_s=0.1, shed_slack_s=0.25, preference_penalty_s=0.5)


def wave(clock: Callable[[], float]) -> RoutingPolicy:
    return WavePolicy(SETTINGS, clock)


def least_loaded(clock: Callable[[], float]) -> RoutingPolicy:
    backends = [c.model_dump() for c in unprofiled_configs(fleet_d()).values()]
    return build_policy(GatewayConfig.model_validate({"policy": "least-loaded", "backends": backends}))


def cpu_requests(run: FleetRun, start: float = 0.0) -> dict[str, int]:
    return dict(Counter(r.reason for r in run.requests if r.backend.startswith("cpu") and r.at >= start))


def fresh_point(seed: int, load: float) -> dict[str, Any]:
    rate = round(load * CAPACITY, 2)
    run, least = run_fleet(wave, rate=rate, seed=seed), run_fleet(least_loaded, rate=rate, seed=seed)
    ideal = min(rate, CAPACITY)
    return {
        "goodput": run.goodput,
        "shed": run.shed,
        "not_good": sum(1 for r in run.requests if r.backend and not r.good),
        "cpu": cpu_requests(run),
        "least_loaded": least.goodput,
        "ok": run.goodput >= 0.9 * ideal - 1e-9 and run.goodput >= 0.95 * least.goodput - 1e-9,
    }


def warm_point(seed: int) -> dict[str, Any]:
    phases = [1.0 * CAPACITY, 1.15 * CAPACITY, 1.5 * CAPACITY, 1.0 * CAPACITY]
    run = run_fleet(wave, rate=0.0, seed=seed, phases=phases)
    per_phase = [
        sum(r.good for r in run.requests if k * PHASE_S <= r.at < (k + 1) * PHASE_S) / PHASE_S
        for k in range(len(phases))
    ]
    fresh = run_fleet(wave, rate=0.0, seed=seed, phases=phases[3:], first_phase=3)
    return {
        "phases": per_phase,
        "fresh": fresh.goodput,
        "last_over_fresh": per_phase[-1] / fresh.goodput,
        "cpu": cpu_requests(run),
        "ok": per_phase[-1] >= 0.95 * fresh.goodput,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3,4,5,6", help="comma-separated seeds (default 1-6)")
    parser.add_argument("--loads", default="0.85,1.0,1.15,1.3", help="fractions of capacity, fresh runs")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm-gateway runs")
    parser.add_argument("--out", type=Path, help="write every point as JSON here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    loads = [float(x) for x in args.loads.split(",")]
    points: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        for load in loads:
            p = points[f"fresh seed {seed} @ {load:.2f}"] = fresh_point(seed, load)
            print(
                f"fresh seed {seed} @ {load:.2f}: {p['goodput']:.2f} req/s (shed {p['shed']}, "
                f"not good {p['not_good']}), least-loaded {p['least_loaded']:.2f}, cpu {p['cpu']}"
                f"{'' if p['ok'] else '  GOAL MISSED'}",
                flush=True,
            )
    if not args.no_warm:
        for seed in seeds:
            p = points[f"warm seed {seed}"] = warm_point(seed)
            phases = " / ".join(f"{g:.2f}" for g in p["phases"])
            print(
                f"warm seed {seed}: {phases}, fresh {p['fresh']:.2f}, last / fresh "
                f"{p['last_over_fresh']:.1%}, cpu {p['cpu']}{'' if p['ok'] else '  GOAL MISSED'}",
                flush=True,
            )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(points, indent=1))
    return 0 if all(p["ok"] for p in points.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
