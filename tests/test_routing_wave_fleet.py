"""The wave policy in front of simulated engines (virtual time, `fleet_sim_support`): what it
does to goodput on issue 13's fleet (d), two vLLM GPU twins and a CPU engine that can never meet
the SLO, none of them with a `profile:`, against least-loaded on the same arrivals."""

from __future__ import annotations

from collections import Counter

import pytest

from fleet_sim_support import FleetRun, fleet_d, run_fleet, unprofiled_configs
from wavefleet.gateway.config import GatewayConfig, WaveSettings
from wavefleet.gateway.routing.factory import build_policy
from wavefleet.gateway.routing.wave import WavePolicy

CAPACITY = 12.0  # fleet (d)'s twins within the SLO, requests/s (docs/measurements, least-loaded's page)
# the harness's settings (scripts/compare_policies.py) in device time
SETTINGS = WaveSettings(ttft_slo_s=1.0, tpot_slo_s=0.1, shed_slack_s=0.25, preference_penalty_s=0.5)


def wave_run(rate: float, seed: int) -> FleetRun:
    return run_fleet(lambda clock: WavePolicy(SETTINGS, clock), rate=rate, seed=seed)


def least_loaded_run(rate: float, seed: int) -> FleetRun:
    backends = [c.model_dump() for c in unprofiled_configs(fleet_d()).values()]
    config = GatewayConfig.model_validate({"policy": "least-loaded", "backends": backends})
    return run_fleet(lambda clock: build_policy(config), rate=rate, seed=seed)


@pytest.mark.parametrize(("load", "seed"), [(1.15, 3), (1.3, 3), (1.3, 1)])
def test_past_capacity_wave_fills_the_gpus_instead_of_shedding(load: float, seed: int) -> None:
    # past capacity both GPUs can serve about 6 requests/s each within the SLO (seed 3's
    # prompts are short: least-loaded gets 13.1 at 13.8/s): what wave admits must fill them
    # (>= 90 % of the ideal), and shedding must not cost it goodput that plain forwarding gets
    # on the same arrivals (>= 95 %). The CPU engine, which never meets the SLO, gets no request
    # beyond a probe (none ranked before a GPU on a guessed profile's completion time)
    rate = load * CAPACITY
    wave, least = wave_run(rate, seed), least_loaded_run(rate, seed)
    summary = f"wave {wave.goodput:.2f} req/s ({dict(wave.sent)}, shed {wave.shed}), least-loaded {least.goodput:.2f}"
    assert wave.goodput >= 0.9 * CAPACITY, summary
    assert wave.goodput >= 0.95 * least.goodput, summary
    cpu = Counter(r.reason for r in wave.requests if r.backend == "cpu-7950x")
    assert set(cpu) <= {"probe", "explore"} and cpu["probe"] <= 1, cpu


@pytest.mark.parametrize(("load", "seed"), [(1.3, 2), (1.15, 2)])
def test_past_capacity_what_wave_admits_gets_its_first_token_in_time(load: float, seed: int) -> None:
    # seed 2's long prompts fill the twins' KV caches (about 65 sequences of ~1,000 tokens) faster
    # than the engines' gauges show it: a poll a second, 8 requests a second to each twin. What
    # wave admits must get its first token within the SLO (<= 5 % missed), so goodput comes
    # from requests served, not from requests admitted into a full cache to wait for blocks
    rate = load * CAPACITY
    wave, least = wave_run(rate, seed), least_loaded_run(rate, seed)
    admitted = [r for r in wave.requests if r.backend]
    late = sum(1 for r in admitted if r.ttft_s is None or r.ttft_s > 1.0)
    summary = (
        f"wave {wave.goodput:.2f} req/s ({dict(wave.sent)}, shed {wave.shed}, {late} of "
        f"{len(admitted)} admitted late), least-loaded {least.goodput:.2f}"
    )
    assert late <= 0.05 * len(admitted), summary
    assert wave.goodput >= 0.9 * CAPACITY, summary
    assert wave.goodput >= 0.95 * least.goodput, summary


WARM_PHASES = [1.0 * CAPACITY, 1.15 * CAPACITY, 1.5 * CAPACITY, 1.0 * CAPACITY]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_warm_gateway_serves_the_last_phase_as_well_as_a_fresh_one(seed: int) -> None:
    # one gateway through 100 -> 115 -> 150 -> 100 % of capacity: what it learned under overload
    # (full KV caches, long queues) must not cost the last phase more than 5 % of what a fresh
    # gateway serves on the same arrivals
    seconds = 30.0
    warm = run_fleet(lambda clock: WavePolicy(SETTINGS, clock), rate=0.0, seed=seed, phases=WARM_PHASES)
    last = [r for r in warm.requests if r.at >= 3 * seconds]
    warm_goodput = sum(r.good for r in last) / seconds
    fresh = run_fleet(
        lambda clock: WavePolicy(SETTINGS, clock), rate=0.0, seed=seed, phases=WARM_PHASES[3:], first_phase=3
    )
    summary = (
        f"warm last phase {warm_goodput:.2f} req/s (shed {sum(not r.backend for r in last)}), "
        f"fresh {fresh.goodput:.2f} (shed {fresh.shed})"
    )
    assert warm_goodput >= 0.95 * fresh.goodput, summary
