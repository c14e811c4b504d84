"""Routing policies on hand-set fleet state: what each one picks, and why."""

from __future__ import annotations

import itertools
import random

import pytest

from wavefleet.errors import UsageError
from wavefleet.gateway.config import BackendConfig, GatewayConfig, PolicyName, SizeClass
from wavefleet.gateway.monitor.snapshot import StaticMonitor
from wavefleet.gateway.routing.base import Candidate, FleetView, Outcome, RouteRequest
from wavefleet.gateway.routing.factory import build_policy
from wavefleet.gateway.routing.least_loaded import LeastLoadedPolicy
from wavefleet.gateway.routing.load import capacity, load
from wavefleet.gateway.routing.round_robin import RoundRobinPolicy
from wavefleet.gateway.routing.size_classes import SizeClassPolicy


def backends(**kinds: str) -> dict[str, BackendConfig]:
    return {
        name: BackendConfig(name=name, url=f"http://{name}:8000", kind=kind) for name, kind in kinds.items()
    }


def request(*names: str, prompt_tokens: int = 10, preferences: tuple[int, ...] = ()) -> RouteRequest:
    prefs = preferences or (0,) * len(names)
    candidates = tuple(Candidate(n, "m", p) for n, p in zip(names, prefs, strict=True))
    return RouteRequest("m", candidates, prompt_tokens, None, False)


def view(configs: dict[str, BackendConfig], monitor: StaticMonitor, **inflight: int) -> FleetView:
    return FleetView(monitor, configs, {name: inflight.get(name, 0) for name in configs})


def test_round_robin_alternates_and_keeps_the_others_as_retries() -> None:
    policy = RoundRobinPolicy()
    fleet = view(backends(a="vllm", b="vllm"), StaticMonitor())
    picks = [policy.choose(request("a", "b"), fleet).ranked for _ in range(4)]
    assert [p[0].backend for p in picks] == ["a", "b", "a", "b"]
    assert [c.backend for c in picks[1]] == ["b", "a"]


def test_round_robin_skips_backends_that_are_down() -> None:
    monitor = StaticMonitor()
    monitor.set("a", healthy=False)
    fleet = view(backends(a="vllm", b="vllm"), monitor)
    assert {RoundRobinPolicy().choose(request("a", "b"), fleet).ranked[0].backend for _ in range(3)} == {"b"}


def test_least_loaded_normalises_by_capacity() -> None:
    # 8 of 128 slots busy is emptier than 2 of 4, though 8 > 2
    monitor = StaticMonitor()
    monitor.set("gpu", running=8, waiting=0, slots_total=128)
    monitor.set("cpu", running=2, waiting=0, slots_total=4)
    decision = LeastLoadedPolicy().choose(
        request("cpu", "gpu"), view(backends(gpu="vllm", cpu="llamacpp"), monitor)
    )
    assert [c.backend for c in decision.ranked] == ["gpu", "cpu"]
    assert decision.scores == {"gpu": 8 / 128, "cpu": 0.5}
    assert decision.reason == "least-loaded"


def test_least_loaded_counts_waiting_and_kv_usage() -> None:
    monitor = StaticMonitor()
    monitor.set("a", running=1, waiting=3, slots_total=8)  # 0.5
    monitor.set("b", running=1, waiting=0, slots_total=8, kv_usage=0.9)  # KV nearly full
    decision = LeastLoadedPolicy().choose(request("a", "b"), view(backends(a="vllm", b="vllm"), monitor))
    assert decision.ranked[0].backend == "a"
    assert decision.scores["b"] == 0.9


def test_least_loaded_falls_back_to_the_gateways_own_inflight_counts() -> None:
    # neither engine reports load: the gateway's open requests decide, still per slot
    fleet = view(backends(a="llamacpp", b="llamacpp"), StaticMonitor(), a=3, b=1)
    assert LeastLoadedPolicy().choose(request("a", "b"), fleet).ranked[0].backend == "b"


def test_least_loaded_prefers_the_groups_first_model_until_it_is_full() -> None:
    monitor = StaticMonitor()
    monitor.set("big", running=2, slots_total=4)
    monitor.set("small", running=0, slots_total=4)
    configs = backends(big="vllm", small="llamacpp")
    policy = LeastLoadedPolicy()
    preferred = policy.choose(request("big", "small", preferences=(0, 1)), view(configs, monitor))
    monitor.set("big", running=4, waiting=2)
    overflowed = policy.choose(request("big", "small", preferences=(0, 1)), view(configs, monitor))
    assert preferred.ranked[0].backend == "big"
    assert (overflowed.ranked[0].backend, overflowed.reason) == ("small", "group-overflow")


def test_capacity_comes_from_the_engine_then_the_profile_then_an_assumption() -> None:
    monitor = StaticMonitor()
    monitor.set("a", slots_total=64)
    profiled = BackendConfig.model_validate(
        {
            "name": "p",
            "url": "http://p:1",
            "profile": {"prefill_tokens_per_s": 100, "decode_tokens_per_s": 10, "max_num_seqs": 2},
        }
    )
    assert capacity(backends(a="vllm")["a"], monitor.snapshot("a")) == 64
    assert capacity(profiled, monitor.snapshot("p")) == 2
    assert capacity(backends(c="llamacpp")["c"], monitor.snapshot("c")) == 4
    assert load(profiled, monitor.snapshot("p"), inflight=1) == 0.5


def size_policy() -> tuple[SizeClassPolicy, dict[str, BackendConfig]]:
    classes = [
        SizeClass(backends=["big"]),
        SizeClass(max_prompt_tokens=512, backends=["small"]),
        SizeClass(max_prompt_tokens=4096, backends=["mid"]),
    ]
    return SizeClassPolicy(classes), backends(small="llamacpp", mid="vllm", big="vllm")


@pytest.mark.parametrize(("tokens", "first"), [(100, "small"), (512, "small"), (513, "mid"), (9000, "big")])
def test_size_classes_pick_by_prompt_size(tokens: int, first: str) -> None:
    policy, configs = size_policy()
    decision = policy.choose(
        request("small", "mid", "big", prompt_tokens=tokens), view(configs, StaticMonitor())
    )
    assert decision.ranked[0].backend == first
    assert decision.reason == "size-class"


def test_size_classes_overflow_to_the_next_class_when_full() -> None:
    policy, configs = size_policy()
    monitor = StaticMonitor()
    monitor.set("small", running=4, slots_total=4)
    decision = policy.choose(request("small", "mid", "big", prompt_tokens=100), view(configs, monitor))
    assert [c.backend for c in decision.ranked] == ["mid", "big", "small"]
    assert decision.reason == "size-class-overflow"
    # a big prompt never goes down to a smaller class's backends first
    big = policy.choose(request("small", "mid", "big", prompt_tokens=9000), view(configs, StaticMonitor()))
    assert big.ranked[0].backend == "big"


def test_gpu_only_never_picks_a_cpu_backend() -> None:
    configs = {
        **backends(cpu="llamacpp", gpu="vllm"),
        "jetson": BackendConfig(name="jetson", url="http://j:8080", kind="llamacpp", gpu=True),
    }
    config = GatewayConfig(backends=list(configs.values()), policy=PolicyName.GPU_ONLY)
    policy = build_policy(config)
    monitor = StaticMonitor()
    monitor.set("gpu", running=100, slots_total=128)
    decision = policy.choose(request("cpu", "gpu", "jetson"), view(configs, monitor))
    assert [c.backend for c in decision.ranked] == ["jetson", "gpu"]
    assert policy.choose(request("cpu"), view(configs, monitor)).ranked == ()


def test_factory_builds_each_policy() -> None:
    config = GatewayConfig(backends=list(backends(a="vllm").values()))
    chosen = [PolicyName.ROUND_ROBIN, PolicyName.LEAST_LOADED, PolicyName.GPU_ONLY]
    assert [build_policy(config.model_copy(update={"policy": p})).name for p in chosen] == chosen
    with pytest.raises(UsageError, match="size_classes"):
        build_policy(config.model_copy(update={"policy": PolicyName.SIZE_CLASSES}))
    assert build_policy(config.model_copy(update={"policy": PolicyName.WAVE})).name is PolicyName.WAVE


def longest_run(picks: list[str]) -> int:
    return max(len(list(group)) for _, group in itertools.groupby(picks))


def test_least_loaded_alternates_twins_whose_kv_gauges_are_frozen_between_polls() -> None:
    # vLLM reports no slot count and its KV gauge changes once a poll; the gateway's own
    # dispatches since that poll must move the score, or every request between two polls lands
    # on whichever twin looked emptier at the last one
    rng = random.Random(7)
    configs = backends(a="vllm", b="vllm")
    monitor = StaticMonitor()
    policy = LeastLoadedPolicy()
    inflight = {"a": 28, "b": 31}
    kv_per_request = {"a": 0.0131, "b": 0.0142}  # the twins' prompt mixes differ a little
    picks: list[str] = []
    for poll in range(10):
        for name in configs:
            monitor.set(
                name,
                running=inflight[name],
                waiting=0,
                kv_usage=inflight[name] * kv_per_request[name],
                updated_at=float(poll),
            )
        for _ in range(10):
            route = request("a", "b")
            chosen = policy.choose(route, view(configs, monitor, **inflight)).ranked[0].backend
            picks.append(chosen)
            inflight[chosen] += 1
            for name in configs:  # requests end meanwhile, at random
                if inflight[name] and rng.random() < 0.4:
                    inflight[name] -= 1
                    policy.observe_finish(name, route, Outcome(True, 800, 170, 0.1, 5.0))
    assert len(picks) == 100
    assert longest_run(picks) <= 3, "".join(picks)
    assert 40 <= picks.count("a") <= 60


def test_least_loaded_sends_nothing_to_an_engine_far_slower_to_first_token_while_another_has_room() -> None:
    configs = backends(gpu_a="vllm", gpu_b="vllm", cpu="llamacpp")
    monitor = StaticMonitor()
    for name in ("gpu_a", "gpu_b"):
        monitor.set(name, running=40, waiting=0, kv_usage=0.5, updated_at=1.0)
    monitor.set("cpu", running=0, slots_total=4, updated_at=1.0)  # idle: 0 of 4 slots
    policy = LeastLoadedPolicy()
    route = request("gpu_a", "gpu_b", "cpu")
    for ttft in (0.06, 0.12, 0.09):
        policy.observe_first_token("gpu_a", route, ttft)
        policy.observe_first_token("gpu_b", route, ttft * 1.5)
    policy.observe_first_token("cpu", route, 4.2)  # a 250-token prompt at ~60 tokens/s
    fleet = view(configs, monitor, gpu_a=40, gpu_b=40)
    firsts = [policy.choose(route, fleet).ranked[0].backend for _ in range(50)]
    assert "cpu" not in firsts
    # it is not banned: with both GPUs full it takes the overflow
    for name in ("gpu_a", "gpu_b"):
        monitor.set(name, running=60, waiting=12, kv_usage=1.0, updated_at=2.0)
    assert policy.choose(route, view(configs, monitor, gpu_a=72, gpu_b=72)).ranked[0].backend == "cpu"


def test_least_loaded_takes_turns_among_equals() -> None:
    # three idle replicas, each request over before the next: equal loads every time
    configs = backends(a="llamacpp", b="llamacpp", c="llamacpp")
    policy = LeastLoadedPolicy()
    picks = []
    for _ in range(6):
        route = request("a", "b", "c")
        chosen = policy.choose(route, view(configs, StaticMonitor())).ranked[0].backend
        policy.observe_first_token(chosen, route, 0.1)
        policy.observe_finish(chosen, route, Outcome(True, 10, 5, 0.1, 0.3))
        picks.append(chosen)
    assert sorted(picks[:3]) == ["a", "b", "c"]
    assert picks[3:] == picks[:3]


def test_gpu_only_takes_turns_too() -> None:
    configs = backends(a="vllm", b="vllm")
    monitor = StaticMonitor()
    for name in configs:
        monitor.set(name, running=30, waiting=0, kv_usage=0.4, updated_at=1.0)
    policy = build_policy(GatewayConfig(backends=list(configs.values()), policy=PolicyName.GPU_ONLY))
    inflight = {"a": 30, "b": 30}
    picks = []
    for _ in range(20):
        chosen = policy.choose(request("a", "b"), view(configs, monitor, **inflight)).ranked[0].backend
        inflight[chosen] += 1
        picks.append(chosen)
    assert longest_run(picks) <= 2, "".join(picks)


def test_least_loaded_keeps_an_unmeasured_cpu_backend_for_overflow() -> None:
    # a fresh gateway has measured nothing: a CPU engine (slower to prefill than a GPU as a rule)
    # gets work once the GPUs are full, not a turn among them, and the GPUs take turns meanwhile
    # (here vLLM's CPU build: as many assumed slots as the GPUs)
    configs = {
        **backends(gpu_a="vllm", gpu_b="vllm"),
        "cpu": BackendConfig(name="cpu", url="http://cpu:8000", kind="vllm", gpu=False),
    }
    policy = LeastLoadedPolicy()
    inflight = {"gpu_a": 0, "gpu_b": 0, "cpu": 0}
    picks = []
    for _ in range(30):
        route = request("gpu_a", "gpu_b", "cpu")
        chosen = policy.choose(route, view(configs, StaticMonitor(), **inflight)).ranked[0].backend
        inflight[chosen] += 1
        picks.append(chosen)
        if chosen != "cpu" and len(picks) > 10:  # GPU requests end after a while
            policy.observe_first_token(chosen, route, 0.05)
    assert "cpu" not in picks
    assert longest_run(picks) <= 2, picks
    full = StaticMonitor()
    for name in ("gpu_a", "gpu_b"):
        full.set(name, running=60, waiting=5, kv_usage=1.0)
    assert (
        policy.choose(request("gpu_a", "gpu_b", "cpu"), view(configs, full, **inflight)).ranked[0].backend
        == "cpu"
    )


def test_least_loaded_twins_either_side_of_full_take_turns() -> None:
    # near saturation one twin polls at 0.95 and the other at 1.01: "full" must not hand every
    # request to the one just under it until it is past full too
    configs = backends(a="vllm", b="vllm")
    monitor = StaticMonitor()
    monitor.set("a", running=60, waiting=0, kv_usage=0.95, updated_at=1.0)
    monitor.set("b", running=60, waiting=1, kv_usage=0.995, updated_at=1.0)
    policy = LeastLoadedPolicy()
    inflight = {"a": 60, "b": 61}
    picks = []
    for _ in range(8):
        chosen = policy.choose(request("a", "b"), view(configs, monitor, **inflight)).ranked[0].backend
        inflight[chosen] += 1
        picks.append(chosen)
    assert longest_run(picks) <= 2, picks
