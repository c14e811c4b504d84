"""A routing policy in front of simulated engines, in virtual time: seconds of fleet in milliseconds.

The gateway's parts that decide (the policy, a monitor fed from the engines' own metrics text
parsed by the gateway's dialect parsers every poll, the in-flight counts, the `observe_*` calls
the proxy makes) drive `SimEngine`s on an event loop whose clock jumps to the next timer instead
of sleeping. No HTTP, no gateway overhead: what differs from `scripts/compare_policies.py` is
transport alone, so a routing decision that goes wrong there goes wrong here, in a second.

    result = run_fleet(lambda clock: WavePolicy(settings, clock), rate=15.6, seconds=30, seed=3)
    result.goodput, result.sent, result.shed
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import selectors
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from wavefleet.bench.arrivals import arrival_offsets
from wavefleet.bench.workload import Session, SyntheticWorkload, Turn
from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.dialects.llamacpp import parse_llamacpp_metrics
from wavefleet.gateway.monitor.dialects.vllm import parse_vllm_metrics
from wavefleet.gateway.monitor.snapshot import StaticMonitor
from wavefleet.gateway.routing.base import Candidate, FleetView, Outcome, RouteRequest, RoutingPolicy
from wavefleet.sim.dialects import render_metrics
from wavefleet.sim.engine import SimEngine
from wavefleet.sim.profile import SimProfile
from wavefleet.sim.tokens import chat_prompt_text, encode

__all__ = ["FleetRun", "VirtualTimeLoop", "fleet_d", "long_workload", "run_fleet"]

SLO_TTFT_S, SLO_TPOT_S = 1.0, 0.1


class _VirtualSelector(selectors.DefaultSelector):
    """Never blocks: a wait for `timeout` seconds moves the loop's clock on by that much."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self._loop.advance(timeout)
        elif not ready and timeout is None:
            raise RuntimeError("the simulated fleet waits on nothing: every task is blocked")
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose `time()` is virtual: idle waits take no wall time."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def _harness() -> ModuleType:
    """scripts/compare_policies.py, the real harness, whose fleets and workloads this simulation runs."""
    path = Path(__file__).resolve().parent.parent / "scripts" / "compare_policies.py"
    spec = importlib.util.spec_from_file_location("compare_policies", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("compare_policies", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


HARNESS = _harness()


def long_workload(seed: int) -> SyntheticWorkload:
    """Issue 13's workload, as the harness draws it: prompts 200-1500 words, answers 50-300."""
    workload: SyntheticWorkload = HARNESS.long_workload(seed)
    return workload


def fleet_d() -> list[SimProfile]:
    """Issue 13's fleet as the harness builds it (`scripts/compare_policies.py --fleets d`): two
    RTX 5070 Ti vLLM twins and a Ryzen 9 7950X llama.cpp engine, all serving Llama 3.1 8B."""
    fleets, _ = HARNESS.build_fleets(["d"])
    return [engine.profile for engine in fleets["d"].engines]


def unprofiled_configs(profiles: list[SimProfile]) -> dict[str, BackendConfig]:
    """The gateway's backends as the README configures them: kind, URL, models, no `profile:`."""
    return {
        p.name: BackendConfig.model_validate(
            {"name": p.name, "url": f"http://{p.name}:8000", "kind": p.dialect.value, "models": [p.model]}
        )
        for p in profiles
    }


@dataclass
class Sent:
    """One request the policy decided on, and how it went (device seconds from its arrival)."""

    at: float
    backend: str  # "" when shed
    reason: str
    prompt: int
    output: int
    ttft_s: float | None = None
    tpot_s: float | None = None

    @property
    def good(self) -> bool:
        return (
            self.ttft_s is not None
            and self.ttft_s <= SLO_TTFT_S
            and (self.tpot_s is None or self.tpot_s <= SLO_TPOT_S)
        )


@dataclass
class FleetRun:
    """What happened to every request that arrived during the run."""

    seconds: float
    requests: list[Sent] = field(default_factory=list)
    # (time, backend, running, waiting) each poll: what the policy could see
    polls: list[tuple[float, str, int, int]] = field(default_factory=list)

    @property
    def goodput(self) -> float:
        """Requests that met both targets over the planned arrival window (sheds and failures
        count as not good), as `scripts/compare_policies.py` counts goodput."""
        return sum(r.good for r in self.requests) / self.seconds

    @property
    def shed(self) -> int:
        return sum(not r.backend for r in self.requests)

    @property
    def sent(self) -> Counter[str]:
        return Counter(r.backend for r in self.requests if r.backend)

    def misses_by_bin(self, width_s: float = 3.0) -> list[int]:
        """TTFT misses (failures included, sheds not) per `width_s` of arrival time."""
        bins = [0] * (int(max((r.at for r in self.requests), default=0.0) / width_s) + 1)
        for r in self.requests:
            if r.backend and (r.ttft_s is None or r.ttft_s > SLO_TTFT_S):
                bins[int(r.at / width_s)] += 1
        return bins


async def _poll(
    monitor: StaticMonitor, engines: Mapping[str, SimEngine], run: FleetRun, interval_s: float
) -> None:
    loop = asyncio.get_running_loop()
    while True:
        for name, engine in engines.items():
            text = render_metrics(engine).decode()
            if engine.profile.dialect.value == "vllm":
                load = parse_vllm_metrics(text)
                slots = load.slots_total
            else:  # llama.cpp's /slots gives the slot count
                load = parse_llamacpp_metrics(text)
                slots = engine.profile.max_num_seqs
            monitor.set(
                name,
                healthy=True,
                running=load.running,
                waiting=load.waiting,
                kv_usage=load.kv_usage,
                slots_total=slots,
                models=(engine.profile.model,),
                kv_capacity_tokens=load.kv_capacity_tokens,
                timings=load.timings,
                updated_at=loop.time(),
            )
            run.polls.append((loop.time(), name, load.running or 0, load.waiting or 0))
        await asyncio.sleep(interval_s)


async def _serve(
    policy: RoutingPolicy,
    engine: SimEngine,
    backend: str,
    request: RouteRequest,
    prompt: list[int],
    inflight: dict[str, int],
    sent: Sent,
    at_first_token: bool,
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    inflight[backend] += 1
    seq = engine.submit(prompt, request.max_tokens or 256)
    first = last = None
    count = 0
    try:
        async for generated in seq.tokens():
            count, last = generated, loop.time()
            if first is None:
                first = last
                if at_first_token:
                    policy.observe_first_token(backend, request, first - started)
    finally:
        inflight[backend] -= 1
    ttft = first - started if first is not None else None
    if ttft is not None and not at_first_token:  # only at the request's end
        policy.observe_first_token(backend, request, ttft)
    end = loop.time()
    ok = seq.finish_reason in ("stop", "length")
    policy.observe_finish(backend, request, Outcome(ok, len(prompt), count, ttft, end - started))
    sent.ttft_s = ttft
    if first is not None and last is not None and count > 1:
        sent.tpot_s = (last - first) / (count - 1)


def _arrivals(
    rate: float, seconds: float, seed: int, phases: list[float] | None, first: int = 0
) -> list[tuple[float, Turn]]:
    """(offset, turn) of every request: rate x seconds of them (the harness's fresh runs), or,
    with `phases`, `seconds` of Poisson arrivals at each rate in turn, phase k drawn from stream
    seed x 100 + first + k (the harness's warm-gateway runs; `first` = n replays phase n)."""
    if phases is None:
        sessions = long_workload(seed).sessions()
        offsets = itertools.islice(arrival_offsets(rate, seed=seed), round(rate * seconds))
        return [(t, _turn(sessions)) for t in offsets]
    out: list[tuple[float, Turn]] = []
    for k, phase_rate in enumerate(phases):
        stream = seed * 100 + first + k
        sessions = long_workload(stream).sessions()
        offsets = itertools.takewhile(lambda t: t < seconds, arrival_offsets(phase_rate, seed=stream))
        out += [(k * seconds + t, _turn(sessions)) for t in offsets]
    return sorted(out, key=lambda pair: pair[0])


def _turn(sessions: Iterator[Session]) -> Turn:
    turn = next(sessions).next_turn(None)
    assert turn is not None
    return turn


async def _drive(
    policy: RoutingPolicy,
    profiles: list[SimProfile],
    configs: Mapping[str, BackendConfig],
    *,
    rate: float,
    seconds: float,
    seed: int,
    poll_s: float,
    drain_s: float,
    at_first_token: bool,
    phases: list[float] | None,
    first_phase: int,
) -> FleetRun:
    loop = asyncio.get_running_loop()
    engines = {p.name: SimEngine(p, seed=seed + i) for i, p in enumerate(profiles)}
    for engine in engines.values():
        await engine.start()
    monitor = StaticMonitor()
    run = FleetRun(seconds * len(phases) if phases else seconds)
    poller = asyncio.create_task(_poll(monitor, engines, run, poll_s))
    inflight = dict.fromkeys(engines, 0)
    view = FleetView(monitor, configs, inflight)
    candidates = tuple(Candidate(p.name, p.model) for p in profiles)
    tasks: set[asyncio.Task[None]] = set()
    start = loop.time()
    for k, (offset, turn) in enumerate(_arrivals(rate, seconds, seed, phases, first_phase)):
        await asyncio.sleep(max(0.0, start + offset - loop.time()))
        text = turn.messages[0]["content"]
        request = RouteRequest(
            requested_model="chat",
            candidates=candidates,
            prompt_tokens=max(1, len(text) // 4),  # the gateway's estimate: 4 characters a token
            max_tokens=turn.max_tokens,
            stream=True,
            prefix_text=text[:4096],
            request_id=f"wave-{k}",
        )
        decision = policy.choose(request, view)
        prompt = encode(chat_prompt_text(list(turn.messages)))
        sent = Sent(offset, "", decision.reason, len(prompt), turn.max_tokens or 0)
        run.requests.append(sent)
        if not decision.ranked:
            continue
        backend = decision.ranked[0].backend
        sent.backend = backend
        task = asyncio.create_task(
            _serve(policy, engines[backend], backend, request, prompt, inflight, sent, at_first_token)
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    deadline = loop.time() + drain_s
    while tasks and loop.time() < deadline:
        await asyncio.wait(set(tasks), timeout=deadline - loop.time())
    poller.cancel()
    for engine in engines.values():
        await engine.close()
    if tasks:
        await asyncio.wait(set(tasks))
    return run


def run_fleet(
    make_policy: Callable[[Callable[[], float]], RoutingPolicy],
    profiles: list[SimProfile] | None = None,
    *,
    rate: float,
    seconds: float = 30.0,
    seed: int = 1,
    poll_s: float = 1.0,
    drain_s: float = 35.0,
    at_first_token: bool = True,
    configs: Mapping[str, BackendConfig] | None = None,
    phases: list[float] | None = None,
    first_phase: int = 0,
) -> FleetRun:
    """`rate` x `seconds` Poisson arrivals at `rate` (the bench's arrivals and issue 13's workload for
    `seed`) through the policy `make_policy(clock)` builds on the loop's clock to fresh engines
    (told of each first token when it comes, as the proxy does, or with `at_first_token=False`
    only at the request's end). With `phases` (rates): one gateway and one set of engines through
    `seconds` of arrivals at each rate in turn, as `compare_policies.py --phases`; `first_phase`
    = n replays phase n alone (the harness's fresh gateway after a warm run), in virtual time; requests still running `drain_s`
    after the last arrival are aborted (failures)."""
    profiles = profiles if profiles is not None else fleet_d()
    configs = configs if configs is not None else unprofiled_configs(profiles)
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(
            _drive(
                make_policy(loop.time),
                profiles,
                configs,
                rate=rate,
                seconds=seconds,
                seed=seed,
                poll_s=poll_s,
                drain_s=drain_s,
                at_first_token=at_first_token,
                phases=phases,
                first_phase=first_phase,
            )
        )
    finally:
        loop.close()
