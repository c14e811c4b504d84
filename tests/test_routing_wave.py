"""The wave policy on hand-made fleet state: its arithmetic, learning, affinity, admission, fairness."""

from __future__ import annotations

from collections import Counter

import pytest

from wavefleet.gateway.config import BackendConfig, BackendProfile, GatewayConfig, PolicyName, WaveSettings
from wavefleet.gateway.monitor.snapshot import EngineTimings, StaticMonitor
from wavefleet.gateway.routing.base import Candidate, Decision, FleetView, Outcome, RouteRequest
from wavefleet.gateway.routing.factory import build_policy
from wavefleet.gateway.routing.wave import WavePolicy
from wavefleet.gateway.routing.wave_model import EwmaLine
from wavefleet.gateway.routing.wave_prefix import PrefixIndex, block_keys

# Shaped like the simulator's RTX 5070 Ti vLLM and Ryzen 9900X llama.cpp profiles (sizing estimates).
GPU = BackendProfile(
    prefill_tokens_per_s=8600, decode_tokens_per_s=78, max_num_seqs=128, batch_slowdown=0.0144
)
CPU = BackendProfile(prefill_tokens_per_s=256, decode_tokens_per_s=26, max_num_seqs=8, batch_slowdown=0.05)
# A small GPU: slower prefill than the big one, faster single-stream decode (a 1B model).
SMALL_GPU = BackendProfile(
    prefill_tokens_per_s=1224, decode_tokens_per_s=105, max_num_seqs=2, batch_slowdown=0.07
)
MID = BackendProfile(prefill_tokens_per_s=1000, decode_tokens_per_s=30, max_num_seqs=4, batch_slowdown=0.05)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def config(name: str, profile: BackendProfile, kind: str = "vllm") -> BackendConfig:
    return BackendConfig(name=name, url=f"http://{name}:8000", kind=kind, profile=profile)  # type: ignore[arg-type]


def fleet_view(monitor: StaticMonitor, *configs: BackendConfig, **inflight: int) -> FleetView:
    return FleetView(
        monitor, {c.name: c for c in configs}, {c.name: inflight.get(c.name, 0) for c in configs}
    )


def ask(
    *names: str,
    prompt: int = 20,
    out: int | None = 64,
    prefix: str = "",
    rid: str = "",
    prefs: tuple[int, ...] = (),
) -> RouteRequest:
    candidates = tuple(Candidate(n, "m", p) for n, p in zip(names, prefs or (0,) * len(names), strict=True))
    return RouteRequest("m", candidates, prompt, out, True, prefix_text=prefix, request_id=rid)


def policy(clock: Clock | None = None, **settings: object) -> WavePolicy:
    base: dict[str, object] = {"explore_rate": 0.0}
    base.update(settings)
    return WavePolicy(WaveSettings(**base), clock or Clock())  # type: ignore[arg-type]


def test_roomy_128_slot_gpu_beats_a_4_slot_cpu_for_a_short_prompt() -> None:
    monitor = StaticMonitor()
    monitor.set("gpu", running=20, waiting=0)
    view = fleet_view(monitor, config("gpu", GPU), config("cpu", CPU, "llamacpp"))
    decision = policy().choose(ask("gpu", "cpu"), view)
    assert decision.ranked[0].backend == "gpu"
    assert decision.reason == "predicted"
    # the GPU at batch 21: 64 tokens at (1 + 0.0144 × 20) / 78 s each, after a short prefill
    assert decision.scores["gpu"] == pytest.approx(1 / 78 + 20 / 8600 + 64 * (1 + 0.0144 * 20) / 78, rel=0.01)
    assert decision.scores["cpu"] > decision.scores["gpu"]


def test_deep_gpu_queue_sends_a_short_prompt_to_the_idle_cpu() -> None:
    monitor = StaticMonitor()
    monitor.set("gpu", running=128, waiting=400)
    view = fleet_view(monitor, config("gpu", GPU), config("cpu", CPU, "llamacpp"))
    decision = policy().choose(ask("gpu", "cpu"), view)
    assert [c.backend for c in decision.ranked] == ["cpu", "gpu"]
    assert decision.scores["gpu"] > 3 * decision.scores["cpu"]


def test_long_prompts_prefer_fast_prefill_short_ones_fast_decode() -> None:
    view = fleet_view(StaticMonitor(), config("big", GPU), config("small", SMALL_GPU))
    wave = policy()
    assert wave.choose(ask("big", "small", prompt=20), view).ranked[0].backend == "small"
    assert wave.choose(ask("big", "small", prompt=2000), view).ranked[0].backend == "big"


def test_the_gateways_inflight_count_is_used_when_the_engine_has_not_been_polled_yet() -> None:
    # no snapshot numbers: 8 requests in flight fill the CPU's 8 slots, so the 9th would queue there
    view = fleet_view(StaticMonitor(), config("cpu", CPU, "llamacpp"), config("gpu", GPU), cpu=8)
    prediction = policy().predict(ask("cpu", "gpu"), view, list(ask("cpu", "gpu").candidates), [], 100.0)
    assert prediction[0].wait_s > 0 and prediction[1].wait_s == 0
    assert prediction[0].batch == 8 and prediction[1].batch == 1


def test_learning_corrects_a_mis_seeded_profile() -> None:
    # seeded 10x too fast at prefill and 2.5x too fast at decode; the engine is really slower
    optimistic = BackendProfile(prefill_tokens_per_s=10000, decode_tokens_per_s=100, max_num_seqs=4)
    honest = BackendProfile(prefill_tokens_per_s=2000, decode_tokens_per_s=40, max_num_seqs=4)
    view = fleet_view(
        StaticMonitor(), config("mis", optimistic, "llamacpp"), config("ok", honest, "llamacpp")
    )
    clock = Clock()
    wave = policy(clock)
    assert wave.choose(ask("mis", "ok", prompt=800, out=32), view).ranked[0].backend == "mis"
    true_rate, true_itl, overhead = 1000.0, 0.025, 0.03
    for i in range(80):
        clock.now += 10  # one request at a time: nothing queues
        tokens = 50 + (i * 37) % 900
        request = ask("mis", prompt=tokens, out=32, rid=f"r{i}")
        wave.choose(request, view)
        ttft = overhead + tokens / true_rate
        wave.observe_first_token("mis", request, ttft)
        wave.observe_finish("mis", request, Outcome(True, tokens, 32, ttft, ttft + 31 * true_itl))
    model = wave.model("mis", view)
    clock.now += 10
    assert 1 / model.speed.prefill.slope == pytest.approx(true_rate, rel=0.15)
    assert model.speed.itl.at(1) == pytest.approx(true_itl, rel=0.15)
    assert wave.choose(ask("mis", "ok", prompt=800, out=32), view).ranked[0].backend == "ok"


def test_affinity_returns_a_prefix_to_its_backend_unless_that_backend_is_overloaded() -> None:
    monitor = StaticMonitor()
    a, b = config("a", MID, "llamacpp"), config("b", MID, "llamacpp")
    clock = Clock()
    wave = policy(clock)
    chat = "system: you are a terse assistant. " * 40 + "user: hello there"  # ~1,400 characters
    first = wave.choose(ask("a", "b", prompt=len(chat) // 4, prefix=chat), fleet_view(monitor, a, b))
    home = first.ranked[0].backend
    other = "b" if home == "a" else "a"
    for _ in range(3):
        clock.now += 10
        again = wave.choose(
            ask("a", "b", prompt=len(chat) // 4 + 20, prefix=chat + " more"), fleet_view(monitor, a, b)
        )
        assert again.ranked[0].backend == home
        assert again.reason == "affinity"
        assert again.scores[home] < again.scores[other]
    monitor.set(home, running=4, waiting=20)
    busy = wave.choose(
        ask("a", "b", prompt=len(chat) // 4 + 20, prefix=chat + " more"), fleet_view(monitor, a, b)
    )
    assert busy.ranked[0].backend == other


def test_affinity_off_ignores_cached_prefixes() -> None:
    a, b = config("a", MID, "llamacpp"), config("b", MID, "llamacpp")
    clock = Clock()
    wave = policy(clock, affinity=False)
    chat = "system: you are a terse assistant. " * 40
    picks = []
    for _ in range(4):
        clock.now += 10
        picks.append(wave.choose(ask("a", "b", prompt=350, prefix=chat), fleet_view(StaticMonitor(), a, b)))
    assert {p.ranked[0].backend for p in picks} == {"a", "b"}
    assert all(p.reason == "predicted" for p in picks)


def test_admission_sheds_with_retry_after_when_nothing_meets_the_slo() -> None:
    monitor = StaticMonitor()
    monitor.set("cpu", running=8, waiting=30)
    view = fleet_view(monitor, config("cpu", CPU, "llamacpp"))
    shed = policy().choose(ask("cpu"), view)
    assert shed.ranked == () and shed.reason == "shed"
    assert shed.retry_after_s is not None and 0.5 <= shed.retry_after_s <= 10
    assert shed.scores["cpu"] > 1.0
    kept = policy(shed=False).choose(ask("cpu"), view)
    assert kept.ranked[0].backend == "cpu" and kept.reason == "over-slo"


def test_a_long_prompt_no_backend_can_prefill_in_time_is_shed() -> None:
    view = fleet_view(StaticMonitor(), config("cpu", CPU, "llamacpp"))
    assert policy().choose(ask("cpu", prompt=2000), view).reason == "shed"
    assert policy().choose(ask("cpu", prompt=100), view).reason == "predicted"


def test_equal_predictions_spread_over_both_backends() -> None:
    view = fleet_view(StaticMonitor(), config("a", GPU), config("b", GPU))
    clock = Clock()
    wave = policy(clock)
    picks: Counter[str] = Counter()
    for _ in range(100):
        clock.now += 1
        picks[wave.choose(ask("a", "b", prompt=20), view).ranked[0].backend] += 1
    assert picks["a"] >= 40 and picks["b"] >= 40


@pytest.mark.parametrize(("near_tie", "slower_share"), [(0.05, 0.0), (0.15, 0.4)])
def test_backends_believed_a_few_percent_apart_take_turns_within_the_near_tie_band(
    near_tie: float, slower_share: float
) -> None:
    # twin engines (one model) whose learned lines drifted 8 % apart: outside a 5 % band the
    # "faster" one takes everything, inside a 15 % band they alternate like round-robin
    drifted = GPU.model_copy(update={"decode_tokens_per_s": GPU.decode_tokens_per_s / 1.08})
    view = fleet_view(StaticMonitor(), config("a", GPU), config("b", drifted))
    clock = Clock()
    wave = policy(clock, near_tie=near_tie)
    picks: Counter[str] = Counter()
    for _ in range(100):
        clock.now += 1
        picks[wave.choose(ask("a", "b", prompt=20), view).ranked[0].backend] += 1
    assert picks["b"] >= 100 * slower_share
    if slower_share == 0.0:
        assert picks["b"] == 0


def test_the_wide_near_tie_band_does_not_pull_requests_down_the_groups_order() -> None:
    # the same drift between two models of a group: the second model only gets ties within 5 %
    drifted = GPU.model_copy(update={"decode_tokens_per_s": GPU.decode_tokens_per_s / 1.08})
    view = fleet_view(StaticMonitor(), config("a", GPU), config("b", drifted))
    clock = Clock()
    wave = policy(clock, near_tie=0.15, preference_penalty_s=0.0)
    picks: Counter[str] = Counter()
    for _ in range(50):
        clock.now += 1
        picks[wave.choose(ask("a", "b", prompt=20, prefs=(0, 1)), view).ranked[0].backend] += 1
    assert picks == {"a": 50}


def test_exploration_sends_a_small_share_elsewhere_but_not_to_a_far_slower_engine() -> None:
    view = fleet_view(
        StaticMonitor(), config("gpu", GPU), config("gpu2", SMALL_GPU), config("cpu", CPU, "llamacpp")
    )
    clock = Clock()
    wave = policy(clock, explore_rate=0.05, seed=3)
    decisions = []
    for _ in range(1000):
        clock.now += 1
        decisions.append(wave.choose(ask("gpu", "gpu2", "cpu", prompt=200), view))
    explored = [d for d in decisions if d.reason == "explore"]
    assert 20 <= len(explored) <= 90
    assert all(d.ranked[0].backend == "gpu" for d in explored)  # the small GPU is best; the CPU 4x slower


def test_group_preference_breaks_near_ties_toward_the_first_model() -> None:
    view = fleet_view(StaticMonitor(), config("a", GPU), config("b", GPU))
    wave = policy(preference_penalty_s=0.5)
    picks = {wave.choose(ask("a", "b", prefs=(1, 0)), view).ranked[0].backend for _ in range(10)}
    assert picks == {"b"}


def test_prefix_index_matches_leading_blocks_and_evicts_deep_ones_first() -> None:
    index = PrefixIndex(blocks_per_backend=4)
    text = "".join(f"{i:064d}" for i in range(6))  # six distinct 64-char blocks
    keys = block_keys(text)
    assert len(keys) == 6
    index.add("x", keys[:3])
    assert index.matched("x", keys) == 3
    assert index.matched("y", keys) == 0
    assert index.matched("x", block_keys("z" * 64 + text)) == 0  # a different first block: nothing shared
    index.add("x", keys)  # six blocks into room for four: the deepest go first
    assert index.size("x") == 4 and index.matched("x", keys) == 4


def test_explain_lists_the_fastest_candidates_first() -> None:
    assert Decision((), "predicted", {"cpu": 2.1, "gpu": 0.84}).explanation() == "gpu=0.84s, cpu=2.10s"


def test_factory_builds_wave_with_its_settings() -> None:
    gateway = GatewayConfig(
        policy=PolicyName.WAVE,
        backends=[config("gpu", GPU)],
        wave=WaveSettings(ttft_slo_s=0.5, headroom=0.85, shed_slack_s=0.1),
    )
    built = build_policy(gateway)
    assert isinstance(built, WavePolicy) and built.name is PolicyName.WAVE
    monitor = StaticMonitor()
    monitor.set("gpu", running=0)
    # prefill at 8,600 tokens/s against 0.85 x this config's 0.5 s TTFT target (+ 0.1 s slack before shedding)
    view = fleet_view(monitor, config("gpu", GPU))
    assert WavePolicy(gateway.wave).choose(ask("gpu", prompt=3000), view).reason == "predicted"
    assert WavePolicy(gateway.wave).choose(ask("gpu", prompt=4000), view).reason == "over-slo"
    assert WavePolicy(gateway.wave).choose(ask("gpu", prompt=9000), view).reason == "shed"


def test_no_shedding_on_an_assumed_profile_until_it_has_been_checked() -> None:
    unprofiled = BackendConfig(name="cpu", url="http://cpu:8000", kind="llamacpp")  # type: ignore[arg-type]
    monitor = StaticMonitor()
    monitor.set("cpu", running=1, waiting=3, slots_total=1)
    view = fleet_view(monitor, unprofiled)
    clock = Clock()
    wave = policy(clock)
    first = wave.choose(ask("cpu", prompt=100, rid="r0"), view)
    assert first.reason == "over-slo" and first.ranked[0].backend == "cpu"
    for i in range(8):  # slow requests finish: now the policy knows, and sheds what cannot make it
        clock.now += 10
        request = ask("cpu", prompt=100, rid=f"q{i}")
        wave.choose(request, view)
        wave.observe_first_token("cpu", request, 3.0)
        wave.observe_finish("cpu", request, Outcome(True, 100, 64, 3.0, 3.0 + 63 * 0.2))
    assert wave.choose(ask("cpu", prompt=100), view).reason == "shed"


def test_replicas_of_one_profile_and_model_learn_together_and_nothing_else_does() -> None:
    def serving(name: str, profile: BackendProfile, model: str = "llama-3.1-8b") -> BackendConfig:
        return config(name, profile).model_copy(update={"models": [model]})

    # the simulator's profiles differ only in their `basis` text: still replicas
    a = serving("a", GPU.model_copy(update={"basis": "replica a"}))
    b = serving("b", GPU.model_copy(update={"basis": "replica b"}))
    other_model = serving("c", GPU, "llama-3.2-3b")
    # models read from /v1/models later: nothing says two such backends serve the same one
    unlisted = [config(n, GPU) for n in ("g", "h")]
    unprofiled = [BackendConfig(name=n, url=f"http://{n}:8000", kind="vllm") for n in ("e", "f")]  # type: ignore[arg-type]
    view = fleet_view(StaticMonitor(), a, b, other_model, serving("d", SMALL_GPU), *unlisted, *unprofiled)
    clock = Clock()
    wave = policy(clock)

    def ttft(name: str) -> float:
        return wave.predict(ask(name, prompt=1000), view, [Candidate(name, "m")], [], clock.now)[0].ttft_s

    before = {name: ttft(name) for name in "bcdefg"}
    for i in range(30):  # requests to `a` alone: its prefill is really 4x slower than the profile
        clock.now += 10
        request = ask("a", prompt=1000, rid=f"r{i}")
        wave.choose(request, view)
        wave.observe_first_token("a", request, 4 * 1000 / GPU.prefill_tokens_per_s)
    assert ttft("b") > 2.5 * before["b"]  # `b` learned from `a`'s requests
    assert {name: ttft(name) for name in "cdefg"} == {name: before[name] for name in "cdefg"}
    assert wave.model("g", view).speed is not wave.model("h", view).speed


def test_a_first_token_bounds_the_prefill_backlog_the_policy_believes() -> None:
    # seeded 10x too slow at prefill: five 1,000-token prompts sent at once look like 50 s of work
    slow = MID.model_copy(update={"prefill_tokens_per_s": 100})
    view = fleet_view(StaticMonitor(), config("x", slow, "llamacpp"))
    clock = Clock()
    wave = policy(clock, shed=False)
    sent = [ask("x", prompt=1000, rid=f"r{i}") for i in range(5)]
    for request in sent:
        wave.choose(request, view)

    def backlog() -> float:
        return wave.predict(ask("x"), view, [Candidate("x", "m")], [], clock.now)[0].backlog_s

    assert backlog() == pytest.approx(50.0, rel=0.01)
    clock.now += 1.0
    # the second request's first token: the first two prefills are done, three remain at most
    wave.observe_first_token("x", sent[1], 1.0)
    assert backlog() == pytest.approx(30.0, rel=0.01)
    # the last one's: nothing the gateway sent is left to prefill, whatever the line believed
    wave.observe_first_token("x", sent[4], 1.0)
    assert backlog() == 0.0
    # an earlier request's first token arriving late never raises the bound again
    wave.observe_first_token("x", sent[0], 1.0)
    assert backlog() == 0.0


def unprofiled(name: str, kind: str = "vllm", models: tuple[str, ...] = ("llama-3.1-8b",)) -> BackendConfig:
    return BackendConfig.model_validate(
        {"name": name, "url": f"http://{name}:8000", "kind": kind, "models": models}
    )


def teach_slow_prefill(wave: WavePolicy, clock: Clock, view: FleetView, name: str, ttft_s: float) -> None:
    """Requests one at a time, each answered after `ttft_s`, until the policy believes it: what a
    throttled engine teaches (or queued first tokens taken for prefill)."""
    for i in range(200):
        clock.now += 10
        request = ask(name, prompt=1000, rid=f"slow-{name}-{i}")
        wave.choose(request, view)
        wave.observe_first_token(name, request, ttft_s)
        if wave.predict(request, view, [Candidate(name, "m")], [], clock.now)[0].ttft_s > 0.9 * ttft_s:
            return


def queued_history(ttft_s: float) -> EngineTimings:
    """What a vLLM engine reports after serving 1,000-token prompts that queued for `ttft_s`
    each (its TTFT histogram includes the queue) at 13 ms a token."""
    return EngineTimings(
        requests=100, prefill_tokens=100_000, prefill_s=100 * ttft_s, decode_tokens=20_000, decode_s=260.0
    )


# `a` believed ~40x too slow at prefill: a profile sized for a far weaker device, or (no profile)
# an engine whose own TTFT history is of requests that queued, as after an overload
BELIEVED_SLOW = {
    "mis-sized profile": (config("a", GPU.model_copy(update={"prefill_tokens_per_s": 200})), None),
    "queued engine history": (unprofiled("a"), queued_history(5.0)),
}


@pytest.mark.parametrize("belief", list(BELIEVED_SLOW))
def test_a_backend_believed_slow_whose_engine_is_idle_gets_traffic_again(belief: str) -> None:
    # its engine reports nothing running and the gateway has nothing in flight there, while `b`
    # is swamped: the policy sheds or queues, so the idle engine must get a request that shows
    # what it can do, and then the traffic
    a, history = BELIEVED_SLOW[belief]
    b = config("b", GPU)
    monitor = StaticMonitor()
    monitor.set("a", running=0, waiting=0, timings=history)
    monitor.set("b", running=128, waiting=300)
    view = fleet_view(monitor, a, b)
    clock = Clock()
    wave = policy(clock)
    assert wave.predict(ask("a", prompt=1000), view, [Candidate("a", "m")], [], clock.now)[0].ttft_s > 3.0
    wave.model("b", view)
    clock.now += 10.0  # the policy has known both for 10 TTFT targets (a fresh one waits that long)
    probe = None
    for i in range(3):  # within three decisions, one of them half a second apart
        clock.now += 0.5
        request = ask("a", "b", prompt=1000, rid=f"p{i}")
        decision = wave.choose(request, view)
        if decision.ranked and decision.ranked[0].backend == "a":
            probe = (request, decision)
            break
    assert probe is not None, "the idle backend got no request"
    assert probe[1].reason == "probe"
    # while the probe runs the gateway has it in flight: `a` is not idle and gets no second probe
    busy = fleet_view(monitor, a, b, a=1)
    clock.now += 0.1
    assert wave.choose(ask("a", "b", prompt=1000, rid="q"), busy).reason == "shed"
    clock.now += 0.1
    wave.observe_first_token("a", probe[0], 0.13)  # an idle engine's real prefill of 1,000 tokens
    wave.observe_finish("a", probe[0], Outcome(True, 1000, 64, 0.13, 0.13 + 63 * 0.013))
    clock.now += 0.1
    after = wave.choose(ask("a", "b", prompt=1000, rid="r"), view)
    assert after.ranked[0].backend == "a" and after.reason == "predicted"
    assert after.scores["a"] < 2.0


@pytest.mark.parametrize(("ttft_s", "most", "doubling"), [(1000 / 60, 2, False), (1.2, 7, True)])
def test_an_idle_backend_that_really_is_slow_is_probed_ever_more_rarely(
    ttft_s: float, most: int, doubling: bool
) -> None:
    # the CPU engine sits idle because it cannot meet the SLO; probes confirm it and back off:
    # one answered far beyond the target (17 s, a CPU prefilling at 60 tokens/s) waits the
    # longest backoff (32 targets: the manual's one probe per 32 s), a near miss (1.2 s) doubles it
    monitor = StaticMonitor()
    gpu, cpu = config("gpu", GPU), config("cpu", CPU, "llamacpp")
    monitor.set("gpu", running=128, waiting=300)
    monitor.set("cpu", running=0, waiting=0)
    view = fleet_view(monitor, gpu, cpu)
    clock = Clock()
    wave = policy(clock)
    probes = []
    for i in range(600):  # a minute of requests every 0.1 s, every one hopeless on the GPU
        clock.now += 0.1
        request = ask("gpu", "cpu", prompt=1000, rid=f"r{i}")
        decision = wave.choose(request, view)
        if decision.ranked:
            assert decision.ranked[0].backend == "cpu" and decision.reason == "probe"
            probes.append(clock.now)
            wave.observe_first_token("cpu", request, ttft_s)
            wave.observe_finish("cpu", request, Outcome(True, 1000, 64, ttft_s, ttft_s + 63 * 0.1))
    assert 2 <= len(probes) <= most
    gaps = [later - earlier for earlier, later in zip(probes, probes[1:], strict=False)]
    if doubling:
        assert gaps == sorted(gaps) and gaps[0] < 5.0  # each confirmation doubles the wait before the next
    else:
        assert min(gaps) >= 32.0


def test_exploration_reaches_an_idle_backend_whatever_its_prediction() -> None:
    a, b = config("a", GPU.model_copy(update={"prefill_tokens_per_s": 200})), config("b", GPU)
    monitor = StaticMonitor()
    clock = Clock()
    wave = policy(clock, explore_rate=0.05, seed=5)
    monitor.set("a", running=0, waiting=0)
    monitor.set("b", running=3, waiting=0)  # `b` meets the SLO: nothing is shed or queued
    view = fleet_view(monitor, a, b)
    assert wave.predict(ask("a", prompt=1000), view, [Candidate("a", "m")], [], clock.now)[0].ttft_s > 3.0
    explored = []
    start = clock.now
    for i in range(400):
        clock.now += 0.5
        decision = wave.choose(ask("a", "b", prompt=1000, rid=f"x{i}"), view)
        if decision.ranked[0].backend == "a":
            assert decision.reason == "explore"
            explored.append(clock.now - start)
    # not before nothing has been sent there for 32 TTFT targets: at most one such request in
    # 32 s, and none in a gateway's first seconds, when every belief is young
    assert explored and explored[0] >= 32.0
    assert all(later - earlier >= 32.0 for earlier, later in zip(explored, explored[1:], strict=False))


def test_unprofiled_replicas_of_one_model_and_engine_learn_together() -> None:
    monitor = StaticMonitor()
    twins = [unprofiled("a"), unprofiled("b")]
    for twin in twins:  # what their engines report: the same KV size, one model
        monitor.set(twin.name, kv_capacity_tokens=436_896, models=("llama-3.1-8b",))
    other_gpu = unprofiled("c")  # the same model on an engine with a different KV size
    monitor.set("c", kv_capacity_tokens=200_000)
    other_model = unprofiled("d", models=("llama-3.2-3b",))
    monitor.set("d", kv_capacity_tokens=436_896)
    cpu_pair = [unprofiled("e", "llamacpp"), unprofiled("f", "llamacpp")]
    for cpu in cpu_pair:
        monitor.set(cpu.name, slots_total=4)
    silent = [unprofiled("g"), unprofiled("h")]  # no size reported: nothing says they are alike
    view = fleet_view(monitor, *twins, other_gpu, other_model, *cpu_pair, *silent)
    clock = Clock()
    wave = policy(clock)

    def speed(name: str) -> object:
        return wave.model(name, view).speed

    assert speed("a") is speed("b")
    assert speed("e") is speed("f")
    assert len({id(speed(n)) for n in "acdeg"}) == 5
    assert speed("g") is not speed("h")
    before = wave.predict(ask("b", prompt=1000), view, [Candidate("b", "m")], [], clock.now)[0].ttft_s
    teach_slow_prefill(wave, clock, view, "a", 4 * before)
    after = wave.predict(ask("b", prompt=1000), view, [Candidate("b", "m")], [], clock.now)[0].ttft_s
    assert after > 2.5 * before  # `b` learned from `a`'s requests


def test_engine_reported_timings_seed_an_unprofiled_backend_so_it_sheds_from_the_first_request() -> None:
    # the engine has timed itself (prefill 1,000 tokens/s, 20 ms a token) and reports a long queue
    measured = EngineTimings(
        requests=200, prefill_tokens=200_000, prefill_s=200.0, decode_tokens=30_000, decode_s=600.0
    )
    monitor = StaticMonitor()
    monitor.set("g", running=64, waiting=200, kv_usage=0.99, timings=measured)
    view = fleet_view(monitor, unprofiled("g"))
    first = policy().choose(ask("g", prompt=800, rid="r0"), view)
    assert first.reason == "shed"
    # the same engine idle: a prompt it can prefill in time is admitted, and its prediction follows
    # the engine's own figures, not the assumed GPU's
    monitor.set("g", running=0, waiting=0, kv_usage=0.0)
    kept = policy().choose(ask("g", prompt=300, out=20, rid="r1"), view)
    assert kept.reason == "predicted"
    assert kept.scores["g"] == pytest.approx(0.3 + 20 * 0.02, rel=0.25)


def test_engine_timings_arriving_after_the_first_requests_replace_the_assumed_profile() -> None:
    monitor = StaticMonitor()
    monitor.set("g", running=64, waiting=200, kv_usage=0.99)
    view = fleet_view(monitor, unprofiled("g"))
    wave = policy()
    assert wave.choose(ask("g", prompt=800, rid="r0"), view).reason == "over-slo"  # a guess: no shedding
    measured = EngineTimings(
        requests=12, prefill_tokens=9_600, prefill_s=9.6, decode_tokens=2_000, decode_s=40.0
    )
    monitor.set("g", timings=measured)  # the next poll: the engine has timed its first requests
    assert wave.choose(ask("g", prompt=800, rid="r1"), view).reason == "shed"


def test_first_tokens_of_requests_the_engine_queued_do_not_teach_the_prefill_line() -> None:
    # the engine reports a queue (or a nearly full KV cache) that the policy's slot count does not
    # explain: the long first tokens that follow are the queue's, not the engine's prefill speed
    monitor = StaticMonitor()
    monitor.set("a", running=40, waiting=6, kv_usage=0.92)
    view = fleet_view(monitor, config("a", GPU))
    clock = Clock()
    wave = policy(clock, shed=False)
    before = wave.model("a", view).speed.prefill.at(1000)
    for i in range(40):
        clock.now += 10
        request = ask("a", prompt=1000, rid=f"q{i}")
        wave.choose(request, view)
        wave.observe_first_token("a", request, 3.0)
    assert wave.model("a", view).speed.prefill.at(1000) == pytest.approx(before, rel=0.01)
    monitor.set("a", running=40, waiting=0, kv_usage=0.5)  # no queue: now a slow first token counts
    for i in range(40):
        clock.now += 10
        request = ask("a", prompt=1000, rid=f"r{i}")
        wave.choose(request, view)
        wave.observe_first_token("a", request, 0.5)
    assert wave.model("a", view).speed.prefill.at(1000) == pytest.approx(0.5, rel=0.15)


def test_first_tokens_under_heavy_prefill_load_teach_the_step_wait_not_the_engines_prefill_speed() -> None:
    # an engine busy prefilling others' prompts answers every prompt after about one shared
    # chunked-prefill step (~0.3 s here) whatever its length: the prefill line must keep the
    # engine's own speed (it sizes the backlog and the prefill share), and the extra wait is
    # learned against the share
    view = fleet_view(StaticMonitor(), config("a", GPU))
    clock = Clock()
    wave = policy(clock, shed=False)
    slope = wave.model("a", view).speed.prefill.slope
    for i in range(200):  # a steady stream: 5 requests a second of 200-1,500 tokens
        clock.now += 0.2
        tokens = 200 + (i * 397) % 1300
        request = ask("a", prompt=tokens, rid=f"r{i}")
        share = wave.predict(request, view, [Candidate("a", "m")], [], clock.now)[0].share
        wave.choose(request, view)
        # the engine's own prefill until others' prompts keep it busy, then one shared step
        wave.observe_first_token("a", request, 0.3 if share > 0.25 else 1 / 78 + tokens / 8600)
    assert wave.model("a", view).speed.prefill.slope == pytest.approx(slope, rel=0.05)
    busy = wave.predict(ask("a", prompt=800), view, [Candidate("a", "m")], [], clock.now)[0]
    assert busy.share > 0.3
    assert busy.ttft_s == pytest.approx(0.3, rel=0.3)


def test_a_near_tie_never_hands_a_request_to_a_twin_it_would_have_shed_for() -> None:
    # both twins are past the headroom target; `b` is within the shedding slack, `a` far beyond
    # it, yet their completion times (long answers) are within the near-tie band and `a` has been
    # used less: the request must go to `b`, not to the twin that misses its first token
    monitor = StaticMonitor()
    a, b = config("a", GPU), config("b", GPU)
    monitor.set("a", running=128, waiting=45)
    monitor.set("b", running=128, waiting=20)
    view = fleet_view(monitor, a, b)
    clock = Clock()
    wave = policy(clock, shed_slack_s=0.3)
    predictions = wave.predict(
        ask("a", "b", prompt=800, out=300), view, list(ask("a", "b").candidates), [], clock.now
    )
    ttft = {p.backend: p.ttft_s for p in predictions}
    e2e = {p.backend: p.e2e_s for p in predictions}
    assert 0.8 < ttft["b"] < 1.1 < ttft["a"] and e2e["a"] < 1.3 * e2e["b"]
    wave.model("b", view).dispatched = 50  # `a` is the less used
    decision = wave.choose(ask("a", "b", prompt=800, out=300), view)
    assert decision.ranked[0].backend == "b"


def test_past_the_target_a_backend_within_the_slack_ranks_before_a_hopeless_one() -> None:
    # the GPU is just past the headroom target (within the shedding slack), the CPU's first token
    # is seconds away but its short answer would end sooner: admitted, the request goes to the GPU
    monitor = StaticMonitor()
    monitor.set("gpu", running=128, waiting=20)
    quick_decode = CPU.model_copy(update={"decode_tokens_per_s": 60})
    view = fleet_view(monitor, config("gpu", GPU), config("cpu", quick_decode, "llamacpp"))
    wave = policy(shed_slack_s=0.3)
    request = ask("gpu", "cpu", prompt=500, out=300)
    scores = {p.backend: p for p in wave.predict(request, view, list(request.candidates), [], 100.0)}
    assert 0.8 < scores["gpu"].ttft_s < 1.1 < 1.5 < scores["cpu"].ttft_s
    assert scores["cpu"].e2e_s < scores["gpu"].e2e_s
    decision = wave.choose(request, view)
    assert decision.ranked[0].backend == "gpu" and decision.reason == "over-slo"


def test_a_slow_engine_on_an_assumed_profile_does_not_outrank_gpus_past_the_slack() -> None:
    # both GPUs are far past the target (the request will be shed); the CPU engine's belief is
    # still the assumed one, which never causes shedding, but it predicts a first token further
    # still: the request is shed, not sent to the CPU
    monitor = StaticMonitor()
    monitor.set("a", running=128, waiting=200)
    monitor.set("b", running=128, waiting=200)
    view = fleet_view(monitor, config("a", GPU), config("b", GPU), unprofiled("cpu", "llamacpp"))
    wave = policy()
    decision = wave.choose(ask("a", "b", "cpu", prompt=850, out=175), view)
    assert decision.reason == "shed"


def test_a_few_milliseconds_of_backlog_do_not_teach_the_wait_scale() -> None:
    # a prompt sent right behind a short one waits ~35 ms of backlog by the fluid queue, but its
    # first token comes after a shared step (0.3 s): dividing by the tiny backlog would teach a
    # wait scale of ~8 that then multiplies every long backlog
    view = fleet_view(StaticMonitor(), config("a", GPU))
    clock = Clock()
    wave = policy(clock, shed=False)
    for i in range(60):
        clock.now += 10
        wave.choose(ask("a", prompt=300, rid=f"lead{i}"), view)
        behind = ask("a", prompt=300, rid=f"behind{i}")
        wave.choose(behind, view)
        wave.observe_first_token("a", behind, 0.3)
    assert wave.model("a", view).speed.wait_scale == pytest.approx(1.0, abs=0.05)


def test_a_full_kv_cache_makes_a_request_wait_half_a_finish_plus_the_queue_ahead() -> None:
    # at 97 % KV usage vLLM still admits a prompt that fits (about half of them): a request waits
    # half a finish plus one per request queued ahead; with every llama.cpp slot busy, a whole one
    monitor = StaticMonitor()
    monitor.set("gpu", running=60, waiting=0, kv_usage=0.97)
    monitor.set("queued", running=60, waiting=3, kv_usage=0.97)
    monitor.set("cpu", running=4, waiting=0, slots_total=4)
    view = fleet_view(
        monitor,
        config("gpu", GPU),
        config("queued", GPU),
        config("cpu", CPU, "llamacpp"),
        gpu=60,
        queued=63,
        cpu=4,
    )
    request = ask("gpu", "queued", "cpu", prompt=300)
    predictions = {p.backend: p for p in policy().predict(request, view, list(request.candidates), [], 100.0)}
    assert predictions["queued"].slot_wait_s == pytest.approx(7 * predictions["gpu"].slot_wait_s)
    cpu = predictions["cpu"].slot_wait_s  # one service time over four slots
    speed = policy().model("cpu", view).speed
    assert cpu == pytest.approx(
        (speed.prefill.at(speed.mean_prompt) + speed.mean_output * speed.itl.at(4)) / 4
    )


def test_a_backend_held_open_by_its_circuit_breaker_is_not_probed() -> None:
    # it looks idle because the gateway sends it nothing; the proxy would skip it anyway
    monitor = StaticMonitor()
    monitor.set("a", running=0, waiting=0, breaker="open")
    monitor.set("b", running=128, waiting=300)
    slow = config("a", GPU.model_copy(update={"prefill_tokens_per_s": 200}))
    decision = policy().choose(ask("a", "b", prompt=1000), fleet_view(monitor, slow, config("b", GPU)))
    assert decision.reason == "shed"


def test_a_backend_on_an_assumed_profile_gets_one_hopeless_request_at_a_time() -> None:
    # every candidate is past the shedding line and the CPU engine, still on its assumed profile,
    # is predicted to finish first: it may show what it can do with one request, not take a flood
    monitor = StaticMonitor()
    for gpu in ("a", "b"):
        monitor.set(gpu, running=128, waiting=2000)
    cpu = unprofiled("cpu", "llamacpp")
    wave = policy()
    request = ask("a", "b", "cpu", prompt=850, out=175)
    view = fleet_view(monitor, config("a", GPU), config("b", GPU), cpu)
    best = min(wave.predict(request, view, list(request.candidates), [], 100.0), key=lambda p: p.e2e_s)
    assert best.backend == "cpu" and best.hopeless
    assert wave.choose(request, view).ranked[0].backend == "cpu"
    # with one request of this gateway's already there (sent before this policy's memory of it
    # could make the CPU look worse), the next is shed
    busy = fleet_view(monitor, config("a", GPU), config("b", GPU), cpu, cpu=1)
    assert policy().choose(ask("a", "b", "cpu", prompt=850, out=175), busy).reason == "shed"


def test_no_probe_while_the_shortfall_is_itself_a_guess() -> None:
    # at start every belief is assumed: that the best candidate misses the SLO is a guess too,
    # and no idle engine believed slow is probed on it
    monitor = StaticMonitor()
    monitor.set("gpu", running=256, waiting=40)
    monitor.set("cpu", running=0, waiting=0)
    view = fleet_view(monitor, unprofiled("gpu"), config("cpu", CPU, "llamacpp"))
    request = ask("gpu", "cpu", prompt=850, out=8)
    predictions = {p.backend: p for p in policy().predict(request, view, list(request.candidates), [], 100.0)}
    assert predictions["gpu"].hopeless and predictions["gpu"].e2e_s < predictions["cpu"].e2e_s
    decision = policy().choose(request, view)
    assert decision.reason != "probe" and decision.ranked[0].backend == "gpu"


def test_at_a_cold_start_a_guessed_slow_stream_does_not_send_requests_to_an_engine_that_answers_late() -> (
    None
):
    # every belief is assumed; the GPUs' guessed prefill share makes their streams look too slow,
    # the CPU engine's first token is seconds away: the GPUs still rank first
    monitor = StaticMonitor()
    for name in ("a", "b", "cpu"):
        monitor.set(name, running=0, waiting=0)
    clock = Clock()
    wave = policy(clock)
    sent: Counter[str] = Counter()
    for i in range(40):  # 20 requests a second of 850 tokens, before any engine has answered
        clock.now += 0.05
        busy = fleet_view(monitor, unprofiled("a"), unprofiled("b"), unprofiled("cpu", "llamacpp"), **sent)
        decision = wave.choose(ask("a", "b", "cpu", prompt=850, out=175, rid=f"r{i}"), busy)
        sent[decision.ranked[0].backend if decision.ranked else "shed"] += 1
    assert sent["cpu"] == 0
    assert sent["a"] + sent["b"] == 40  # and nothing is shed on guesses


def test_a_twin_that_could_be_admitted_ranks_before_one_the_request_would_be_shed_for() -> None:
    # `a` answers first sooner but its stream is predicted past the TPOT target (shed); `b` is
    # within the shedding slack on both: with a short answer `a` would finish first, yet the
    # request goes to `b` rather than being shed on `a`'s account
    monitor = StaticMonitor()
    monitor.set("a", running=128, waiting=0)
    monitor.set("b", running=128, waiting=20)
    slow_stream = GPU.model_copy(update={"decode_tokens_per_s": 25})
    view = fleet_view(monitor, config("a", slow_stream), config("b", GPU))
    request = ask("a", "b", prompt=300, out=8)
    predictions = {
        p.backend: p
        for p in policy(shed_slack_s=0.3).predict(request, view, list(request.candidates), [], 100.0)
    }
    assert predictions["a"].hopeless and not predictions["a"].late
    assert not predictions["b"].hopeless and predictions["a"].e2e_s < predictions["b"].e2e_s
    decision = policy(shed_slack_s=0.3).choose(request, view)
    assert decision.ranked and decision.ranked[0].backend == "b"


def test_an_engine_met_seconds_ago_is_not_probed_yet() -> None:
    # a fresh gateway: every belief is young and traffic is correcting it; a probe of the idle CPU
    # engine would only cost a request. Once the policy has known it for 10 TTFT targets it may.
    monitor = StaticMonitor()
    monitor.set("gpu", running=128, waiting=300)
    monitor.set("cpu", running=0, waiting=0)
    view = fleet_view(monitor, config("gpu", GPU), config("cpu", CPU, "llamacpp"))
    clock = Clock()
    wave = policy(clock)
    reasons = []
    for i in range(30):
        reasons.append(wave.choose(ask("gpu", "cpu", prompt=1000, rid=f"r{i}"), view).reason)
        clock.now += 0.5
    assert reasons[:20] == ["shed"] * 20 and "probe" in reasons[20:]


def test_a_line_pushed_below_zero_and_then_rebased_keeps_a_sane_shape() -> None:
    # Seeded from an engine's inter-token histogram taken in a startup burst (170 ms: prefill
    # stalls counted as decode), an ITL line learns from busy samples with the prefill load taken
    # out, which fall with the batch: the fit's slope may not go negative, so the line crosses
    # zero at one stream. An idle engine's sample there (14 ms) then rebases it: the line must
    # pass through that sample and stay within the engine's real range at a dozen streams (about
    # 15 ms), not scale a line through ~0 by 100x (fleet (d) at 130 %: 50 s a token predicted at
    # 14 streams, so nearly every request was shed while the GPUs ran half empty)
    line = EwmaLine(0.1708, 0.1708 * 0.01, (1.0, 64.0), 0.1)
    for batch, itl in [(6, 0.0086), (13, 0.0009), (10, 0.0040), (5, 0.0114), (16, 0.0002), (11, 0.0050),
                       (5, 0.0092), (12, 0.0036), (14, 0.0026), (9, 0.0059), (9, 0.0075), (6, 0.0102)]:  # fmt: skip
        line.observe(batch, itl)
        assert line.intercept >= 0.0, f"the line crosses zero: {line.intercept:.4f} + {line.slope:.2e} x"
    line.rebase(1.0, 0.0144)
    assert line.at(1) == pytest.approx(0.0144, rel=0.01)
    for batch in (4, 12, 16, 32, 64):
        assert 0.0 < line.at(batch) < 0.1, f"{line.at(batch):.3f} s a token at {batch} streams"


def test_a_stream_slowed_only_by_other_prompts_prefill_is_admitted_not_shed() -> None:
    # Twins at 56 streams each (KV 80 %), the prefill they were sent lately taking 70 % of their
    # time, and measured streams 1.4x slower than the model said (a full KV cache preempted some
    # lately): the stretched TPOT comes out past the target, but each twin's decode alone is 25 ms
    # a token and first tokens come at once. Fleet (d) at 85-130 %: every stream admitted with
    # such a prediction (0.08-0.15 s) met the TPOT target, so shedding them cost goodput; the
    # request is admitted, ranked below any twin predicted within the SLO
    clock = Clock()
    monitor = StaticMonitor()
    for name in ("a", "b"):
        monitor.set(name, running=56, waiting=0, kv_usage=0.8)
    view = fleet_view(monitor, config("a", GPU), config("b", GPU), a=56, b=56)
    wave = policy(clock)
    for name in ("a", "b"):
        model = wave.model(name, view)
        model.speed.tpot_scale = 1.4
        model.add_prefill_work(clock.now, 0.7 * 5.0, 5.0)  # a prefill share of 0.7
    request = ask("a", "b", prompt=800, out=175)
    best = min(wave.predict(request, view, list(request.candidates), [], clock.now), key=lambda p: p.e2e_s)
    assert best.tpot_s > 0.1 and best.ttft_s < 0.5
    decision = wave.choose(request, view)
    assert decision.reason != "shed" and decision.ranked


@pytest.mark.parametrize(("kv_usage", "admitted"), [(0.5, True), (0.97, False)])
def test_past_the_target_a_request_for_a_full_kv_cache_gets_no_slack(kv_usage: float, admitted: bool) -> None:
    # a first token predicted past the target but within the shedding slack: admitted where the
    # engine has KV room, shed where its KV cache is full (the request waits for blocks to free and
    # is the first preempted: a warm gateway that admits these on the slack keeps the cache full)
    clock = Clock()
    monitor = StaticMonitor()
    monitor.set("a", running=60, waiting=0, kv_usage=kv_usage)
    view = fleet_view(monitor, config("a", GPU), a=60)
    wave = policy(clock, shed_slack_s=0.25)
    wave.model("a", view).backlog_until = clock.now + 0.75
    request = ask("a", prompt=800, out=175)
    (prediction,) = wave.predict(request, view, list(request.candidates), [], clock.now)
    assert 0.8 < prediction.ttft_s < 1.05
    decision = wave.choose(request, view)
    assert (decision.reason == "over-slo") if admitted else (decision.reason == "shed"), decision.reason


def test_requests_sent_since_the_last_poll_fill_the_kv_cache_before_the_engine_reports_it() -> None:
    # both twins reported 60 sequences in 90 % of their KV cache at the last poll: at that mix a
    # cache holds about 67. The gateway has sent one of them 10 more since: the next request there
    # waits for blocks to free, as in a full cache (a slot wait, no slack past the target), while
    # its twin still has room. Fleet (d) past capacity: 8 prompts of ~1,000 tokens a second fill
    # the last 10 % of a twin's cache between two polls
    monitor = StaticMonitor()
    monitor.set("filled", running=60, waiting=0, kv_usage=0.9)
    monitor.set("room", running=60, waiting=0, kv_usage=0.9)
    view = fleet_view(monitor, config("filled", GPU), config("room", GPU), filled=70, room=60)
    wave = policy(shed_slack_s=0.25)
    request = ask("filled", "room", prompt=800, out=175)
    predictions = {p.backend: p for p in wave.predict(request, view, list(request.candidates), [], 100.0)}
    assert predictions["room"].slot_wait_s == 0.0
    held = 60 / 0.9
    speed = wave.model("filled", view).speed
    service = speed.prefill.at(speed.mean_prompt) + speed.mean_output * speed.itl.at(128)
    assert predictions["filled"].slot_wait_s == pytest.approx((70 + 1 - held) / held * service)
    # both predicted past the target, within the slack: the twin with room takes it on the slack,
    # the filled one would make it wait for blocks, so there it counts as hopeless
    for name in ("filled", "room"):
        wave.model(name, view).backlog_until = 100.0 + 0.75
    predictions = {p.backend: p for p in wave.predict(request, view, list(request.candidates), [], 100.0)}
    assert all(0.8 < p.ttft_s < 1.05 for p in predictions.values()), predictions
    assert predictions["filled"].hopeless and not predictions["room"].hopeless


def test_a_gpu_a_second_late_outranks_an_assumed_cpu_ten_seconds_late() -> None:
    # fleet (d)'s cold start past capacity: both twins' first tokens come just past the shedding
    # line, and their streams are stretched by the prefill they were sent (0.3 s a token for a
    # 250-token answer: completion in ~80 s), while an idle CPU engine on its assumed profile
    # would give the first token in ~7 s and finish in ~25 s. Ranked by completion the CPU came
    # first and, as a guess, got the request (every such request missed by 15-25 s); ranked by
    # first token the twins come first and the request is shed
    clock = Clock()
    monitor = StaticMonitor()
    for name in ("a", "b"):
        monitor.set(name, running=56, waiting=0, kv_usage=0.8)
    monitor.set("cpu", running=0, waiting=0, slots_total=4)
    view = fleet_view(monitor, config("a", GPU), config("b", GPU), unprofiled("cpu", "llamacpp"), a=56, b=56)
    wave = policy(clock, shed_slack_s=0.25)
    for name in ("a", "b"):
        model = wave.model(name, view)
        model.backlog_until = clock.now + 1.2
        model.speed.tpot_scale = 3.0
        model.add_prefill_work(clock.now, 0.7 * 5.0, 5.0)
    request = ask("a", "b", "cpu", prompt=1000, out=250)
    predictions = {p.backend: p for p in wave.predict(request, view, list(request.candidates), [], clock.now)}
    assert all(p.late for p in predictions.values()), predictions
    assert (
        predictions["cpu"].e2e_s < predictions["a"].e2e_s
        and predictions["a"].ttft_s < predictions["cpu"].ttft_s
    )
    decision = wave.choose(request, view)
    assert decision.reason == "shed", decision.explanation()
