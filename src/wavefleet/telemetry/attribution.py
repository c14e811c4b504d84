"""Energy per request: a device's energy counter split among the requests that ran on it.

Pure: no clocks, no I/O. Given the device's cumulative energy at sample times (an `EnergyTotal`
of NVML's, RAPL's or tegrastats' readings) and the requests that ran on it, `attribute` gives each
request its share and says what no request can be charged for.

The model, segment by segment between consecutive moments where anything changes (a sample, a
request starting, a step of its work, its end):

- The device's energy in the segment comes from the counter, linear between samples.
- Its idle draw (`idle_w` x the segment's length, at most the segment's energy) is idle: it is
  not charged to anyone silently. Each running request gets a share of it as `idle_j`, apart from
  its own `energy_j`, so a report can show either.
- The rest is split among the running requests by the work each did in the segment, priced at
  what that work costs when the request runs alone: tokens of its current phase times that
  phase's cost per token (`TokenWeights`; `PhasePower.token_weights` gives joules per token from
  the device's measured power in each phase and the engine's speeds). Where the work lies in time
  is the `Placement`:
  - `STREAMED`: the prompt is worked on over the engine's own prefill time before the first token
    (`first_token - prefill_s`; from the request's start when unknown), and each generated token
    in the step that produced it, between the previous streamed token and its own
    (`token_times`). A request decoding beside another's long prefill makes one token per
    prefill chunk, and is charged for those, not for a solo pace it did not keep.
  - `SPREAD`: prompt and generated tokens at an even pace over their phases (prefill from the
    start, or `first_token - prefill_s`; decode from the first token to the end).
  - `POOLED` (what the gateway uses): work placed as `STREAMED`, but the energy above idle of
    each busy stretch (a time during which some request was alive, within the window) is split
    by the priced work of each request over the whole stretch rather than moment by moment.
    Each request then pays in proportion to what its work costs alone, wherever in the stretch
    it ran: a decode step riding along a neighbour's prefill chunk costs little, and the
    proportional rule does not depend on knowing how much.
  A request without `token_times` is spread in every placement.
- A segment where no request ran is `unattributed_j`: idle draw, model loading, anything else.
  So is, in `STREAMED` and `POOLED`, the energy above idle of a segment where requests were
  alive but none did known work (waiting before the engine took them up), unless some of them
  have no token counts at all (failed, or still running): those share it evenly. `SPREAD`
  splits it evenly among all the requests alive then.

So the requests' energy, their idle shares and the unattributed energy add up to the counter's
total over the window, exactly up to floating-point rounding (a property the tests check). With
`POOLED` and tokens priced at their solo cost, concurrent requests share what batching saves in
proportion to what each would cost alone, so their energies keep the ratio of their solo ones
(as far as the prices are right: a token's cost also depends on the context it runs in).
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "EQUAL_WEIGHTS",
    "Attribution",
    "EnergySample",
    "PhasePower",
    "Placement",
    "RequestEnergy",
    "RequestSpan",
    "TokenWeights",
    "attribute",
    "combine",
    "idle_power",
    "smooth_counter",
    "split_energy",
]


class Placement(StrEnum):
    """Where in a request's lifetime its work is placed (see the module doc)."""

    POOLED = "pooled"
    STREAMED = "streamed"
    SPREAD = "spread"


@dataclass(frozen=True)
class EnergySample:
    """The device's cumulative energy (J, never decreasing) at time `t` (s, any fixed origin)."""

    t: float
    joules: float


@dataclass(frozen=True, kw_only=True)
class RequestSpan:
    """One request as the gateway saw it: when it started, produced its first token and ended.

    `first_token` is None for a request that produced no token (it failed or was cancelled while
    its prompt was processed). `prefill_s` is the engine's own prompt time for it (llama.cpp's
    `timings.prompt_ms` / 1000), when known. `token_times` are the moments its generated tokens
    were streamed, the first one at `first_token`, when known. `weights` price its tokens, in place
    of those `attribute` is given (requests of different models on one device).
    """

    id: str
    start: float
    end: float
    first_token: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prefill_s: float | None = None
    token_times: tuple[float, ...] = ()
    weights: TokenWeights | None = None

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"request {self.id}: ends ({self.end}) before it starts ({self.start})")
        if self.first_token is not None and not self.start <= self.first_token <= self.end:
            raise ValueError(f"request {self.id}: first token at {self.first_token}, outside its lifetime")
        if self.prompt_tokens < 0 or self.completion_tokens < 0:
            raise ValueError(f"request {self.id}: negative token count")
        if self.prefill_s is not None and self.prefill_s < 0:
            raise ValueError(f"request {self.id}: negative prefill time")
        times = self.token_times
        # in order (which no NaN is), so within the lifetime when the first and last are
        if times and (
            not all(map(operator.le, times, itertools.islice(times, 1, None)))
            or not self.start <= times[0] <= self.end
            or not self.start <= times[-1] <= self.end
        ):
            raise ValueError(f"request {self.id}: token times must rise within its lifetime")

    def phases(
        self, weights: TokenWeights, placement: Placement = Placement.SPREAD
    ) -> list[tuple[float, float, float, str]]:
        """(begin, end, work, phase) pieces of its prefill and decode (work: tokens x their
        weight), placed as `placement` says; pieces of no duration left out."""
        w = self.weights or weights
        first = self.end if self.first_token is None else self.first_token
        prefill_begin = self.start if self.prefill_s is None else max(self.start, first - self.prefill_s)
        pieces = [(prefill_begin, first, self.prompt_tokens * w.prefill, "prefill")]
        decode_j = self.completion_tokens * w.decode
        steps = self._steps(first) if self.token_times and placement is not Placement.SPREAD else []
        if steps:
            # each streamed event after the first closes the step that made its token(s)
            events = sum(n for _, _, n in steps)
            pieces += [(a, b, decode_j * n / events, "decode") for a, b, n in steps]
        else:
            pieces.append((first, self.end, decode_j, "decode"))
        return [p for p in pieces if p[1] > p[0]]

    def _steps(self, first: float) -> list[tuple[float, float, int]]:
        """(previous event, this event, events at this moment) for the streamed events after the
        first token; [] when fewer than two were seen."""
        times = [t for t in self.token_times if t >= first]
        steps: list[tuple[float, float, int]] = []
        for before, t in zip(times, times[1:], strict=False):
            if steps and t == steps[-1][1]:
                steps[-1] = (steps[-1][0], t, steps[-1][2] + 1)
            elif t > before:
                steps.append((before, t, 1))
            elif steps:  # events that arrived together belong to one step
                steps[-1] = (steps[-1][0], steps[-1][1], steps[-1][2] + 1)
        return steps


@dataclass(frozen=True)
class TokenWeights:
    """What a prompt token and a generated token cost, relative to each other (any unit)."""

    prefill: float
    decode: float
    basis: str

    def __post_init__(self) -> None:
        if self.prefill < 0 or self.decode < 0 or self.prefill + self.decode == 0:
            raise ValueError("token weights must be non-negative and not both zero")

    @classmethod
    def from_timings(cls, prompt_per_second: float, predicted_per_second: float) -> TokenWeights:
        """Device time per token, from an engine's speeds (llama.cpp's `timings.prompt_per_second`
        and `timings.predicted_per_second` of a request that ran alone).

        Assumes the device draws about the same power in both phases, so energy follows time.
        """
        if prompt_per_second <= 0 or predicted_per_second <= 0:
            raise ValueError("speeds must be positive")
        return cls(
            1 / prompt_per_second,
            1 / predicted_per_second,
            f"engine timings: {prompt_per_second:.0f} prompt tok/s, {predicted_per_second:.1f} generated tok/s",
        )

    @classmethod
    def from_solo_runs(cls, runs: Iterable[RequestEnergy]) -> TokenWeights:
        """Measured joules per token of each phase, from requests that each ran alone."""
        runs = list(runs)
        prompt = sum(r.prompt_tokens for r in runs)
        generated = sum(r.completion_tokens for r in runs)
        if prompt == 0 or generated == 0:
            raise ValueError("the solo runs need prompt tokens and generated tokens")
        return cls(
            sum(r.prefill_j for r in runs) / prompt,
            sum(r.decode_j for r in runs) / generated,
            f"measured J per token of {len(runs)} solo run(s)",
        )


EQUAL_WEIGHTS = TokenWeights(1.0, 1.0, "every token alike")


@dataclass(frozen=True, kw_only=True)
class PhasePower:
    """A device's energy above idle and time in each phase while a single request ran on it:
    its solo power in prefill and in decode, learned by `observe` and summed with `+`."""

    prefill_j: float = 0.0
    prefill_s: float = 0.0
    decode_j: float = 0.0
    decode_s: float = 0.0

    def __add__(self, other: PhasePower) -> PhasePower:
        return PhasePower(
            prefill_j=self.prefill_j + other.prefill_j,
            prefill_s=self.prefill_s + other.prefill_s,
            decode_j=self.decode_j + other.decode_j,
            decode_s=self.decode_s + other.decode_s,
        )

    @property
    def prefill_w(self) -> float | None:
        return self.prefill_j / self.prefill_s if self.prefill_s > 0 else None

    @property
    def decode_w(self) -> float | None:
        return self.decode_j / self.decode_s if self.decode_s > 0 else None

    def token_weights(self, *, prompt_per_second: float, predicted_per_second: float) -> TokenWeights:
        """Joules per token of each phase when run alone: the phase's power above idle over the
        engine's speed in it. Until both phases have been seen alone (or where the device drew
        nothing above idle), device time per token (`TokenWeights.from_timings`)."""
        timed = TokenWeights.from_timings(prompt_per_second, predicted_per_second)
        prefill_w, decode_w = self.prefill_w, self.decode_w
        if prefill_w is None or decode_w is None or prefill_w <= 0 or decode_w <= 0:
            return timed
        return TokenWeights(
            prefill_w / prompt_per_second,
            decode_w / predicted_per_second,
            f"solo power {prefill_w:.0f} W prefill, {decode_w:.0f} W decode above idle; {timed.basis}",
        )

    @classmethod
    def observe(
        cls, samples: Sequence[EnergySample], requests: Iterable[RequestSpan], *, idle_w: float
    ) -> PhasePower:
        """The energy above `idle_w` and the time of every moment where one request alone was
        alive, in its prefill (`first_token - prefill_s` to the first token) or its decode."""
        samples = _checked(samples)
        energy = _Interpolator([s.t for s in samples], [s.joules for s in samples])
        lo, hi = samples[0].t, samples[-1].t
        spans = list(requests)
        # how many requests are alive after each moment, and the sum of their indices: the one
        # alive where only one is. Only those stretches are split by that request's phases.
        change: dict[float, list[int]] = {}
        for i, r in enumerate(spans):
            begin, end = min(max(r.start, lo), hi), min(max(r.end, lo), hi)
            if end > begin:
                at_begin = change.setdefault(begin, [0, 0])
                at_begin[0] += 1
                at_begin[1] += i
                at_end = change.setdefault(end, [0, 0])
                at_end[0] -= 1
                at_end[1] -= i
        acc = {"prefill": [0.0, 0.0], "decode": [0.0, 0.0]}
        moments = sorted(change)
        alive = which = 0
        for t, after in zip(moments, moments[1:], strict=False):
            alive += change[t][0]
            which += change[t][1]
            if alive != 1:
                continue
            for pb, pe, _, phase in spans[which].phases(EQUAL_WEIGHTS):
                a, b = max(pb, t), min(pe, after)
                if b > a:
                    acc[phase][0] += energy(b) - energy(a) - idle_w * (b - a)
                    acc[phase][1] += b - a
        return cls(
            prefill_j=acc["prefill"][0],
            prefill_s=acc["prefill"][1],
            decode_j=acc["decode"][0],
            decode_s=acc["decode"][1],
        )


@dataclass(frozen=True, kw_only=True)
class RequestEnergy:
    """A request's share of a device's energy over the part of its lifetime the samples cover."""

    id: str
    prompt_tokens: int
    completion_tokens: int
    prefill_j: float = 0.0
    decode_j: float = 0.0
    idle_j: float = 0.0
    busy_s: float = 0.0
    coverage: float = 1.0

    @property
    def energy_j(self) -> float:
        """Energy above the device's idle draw."""
        return self.prefill_j + self.decode_j

    @property
    def total_j(self) -> float:
        """Its energy and its share of the idle draw while it ran."""
        return self.energy_j + self.idle_j

    def j_per_output_token(self, *, include_idle: bool = False) -> float | None:
        if self.completion_tokens == 0:
            return None
        return (self.total_j if include_idle else self.energy_j) / self.completion_tokens

    def __add__(self, other: RequestEnergy) -> RequestEnergy:
        if other.id != self.id:
            raise ValueError(f"cannot add request {other.id} to request {self.id}")
        return RequestEnergy(
            id=self.id,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            prefill_j=self.prefill_j + other.prefill_j,
            decode_j=self.decode_j + other.decode_j,
            idle_j=self.idle_j + other.idle_j,
            busy_s=self.busy_s + other.busy_s,
            coverage=min(self.coverage, other.coverage),
        )


@dataclass(frozen=True, kw_only=True)
class Attribution:
    """A device's energy over a window and who it goes to."""

    start: float
    end: float
    total_j: float
    idle_w: float
    weights: TokenWeights
    requests: dict[str, RequestEnergy]
    unattributed_j: float

    @property
    def attributed_j(self) -> float:
        """Requests' energy and their idle shares."""
        return sum(r.total_j for r in self.requests.values())

    @property
    def closure_error(self) -> float:
        """|attributed + unattributed - counter total| as a share of the total (0 when it closes)."""
        gap = abs(self.attributed_j + self.unattributed_j - self.total_j)
        return gap / self.total_j if self.total_j else gap


def attribute(
    samples: Sequence[EnergySample],
    requests: Iterable[RequestSpan],
    *,
    weights: TokenWeights,
    idle_w: float,
    placement: Placement = Placement.SPREAD,
) -> Attribution:
    """Split the energy between the first and last sample among `requests` (see the module doc).

    Linear in the cuts and the pieces of work, not in their product: a piece's share of a segment
    is its pace (work per second) over the segment's total pace, so what a piece gets over its
    segments is its pace times the sum, over those segments, of each one's figure over its total
    pace: a difference of two running sums (`_RunningSum`, exact), read once per piece.
    """
    spans = list(requests)
    acc, unattributed = split_energy(samples, spans, weights=weights, idle_w=idle_w, placement=placement)
    window_start, window_end = samples[0].t, samples[-1].t
    result = {}
    for r, (prefill_j, decode_j, idle_j, busy_s) in zip(spans, acc, strict=True):
        lifetime = r.end - r.start
        covered = max(0.0, min(r.end, window_end) - max(r.start, window_start))
        result[r.id] = RequestEnergy(
            id=r.id,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            prefill_j=prefill_j,
            decode_j=decode_j,
            idle_j=idle_j,
            busy_s=busy_s,
            coverage=covered / lifetime if lifetime > 0 else float(window_start <= r.start <= window_end),
        )
    return Attribution(
        start=window_start,
        end=window_end,
        total_j=samples[-1].joules - samples[0].joules,
        idle_w=idle_w,
        weights=weights,
        requests=result,
        unattributed_j=unattributed,
    )


def split_energy(
    samples: Sequence[EnergySample],
    spans: Sequence[RequestSpan],
    *,
    weights: TokenWeights,
    idle_w: float,
    placement: Placement = Placement.SPREAD,
) -> tuple[list[list[float]], float]:
    """What `attribute` computes, as bare figures: each request's [prefill J, decode J, idle J,
    busy s] in the order of `spans`, and the unattributed energy. For a caller that adds them
    up itself (the gateway's meter, every window), without a `RequestEnergy` per request."""
    samples = _checked(samples)
    if idle_w < 0:
        raise ValueError("idle power cannot be negative")
    window_start, window_end = samples[0].t, samples[-1].t
    ids = [r.id for r in spans]
    if len(set(ids)) != len(ids):
        raise ValueError("request ids must be unique")
    # (begin, end, work, whole piece's length, phase, request index), clipped to the window
    pieces = [
        (lo, hi, work, e - b, phase, i)
        for i, r in enumerate(spans)
        for b, e, work, phase in r.phases(weights, placement)
        if (hi := min(e, window_end)) > (lo := max(b, window_start))
    ]
    present = [(max(r.start, window_start), min(r.end, window_end)) for r in spans]
    begins = [p[0] for p in pieces]
    ends = [p[1] for p in pieces]
    cuts = sorted(
        {s.t for s in samples}.union(
            begins, ends, itertools.chain.from_iterable(p for p in present if p[1] > p[0])
        )
    )
    at = {t: k for k, t in enumerate(cuts)}
    levels = _levels(samples, cuts)
    segments = len(cuts) - 1
    no_counts = [r.prompt_tokens == 0 and r.completion_tokens == 0 for r in spans]
    # changes at each cut: requests alive, those of them without token counts, pieces with work,
    # and the total pace (exact: integers over one power of two, so pieces ending take off
    # exactly what they put on)
    alive_at = [0] * (segments + 1)
    unknown_at = [0] * (segments + 1)
    working_at = [0] * (segments + 1)
    pace_at = [0] * (segments + 1)
    ranges = []  # (request index, first segment, past its last)
    for i, (b, e) in enumerate(present):
        if e > b:
            first, last = at[b], at[e]
            ranges.append((i, first, last))
            alive_at[first] += 1
            alive_at[last] -= 1
            if no_counts[i]:
                unknown_at[first] += 1
                unknown_at[last] -= 1
    paces = _paces([p[2] for p in pieces], [p[3] for p in pieces])
    pace_units, scale = _exact(paces)
    firsts = [at[t] for t in begins]  # each piece covers segments firsts[j] to lasts[j] - 1
    lasts = [at[t] for t in ends]
    for first, last, units, item in zip(firsts, lasts, pace_units, pieces, strict=True):
        pace_at[first] += units
        pace_at[last] -= units
        if item[2] > 0:
            working_at[first] += 1
            working_at[last] -= 1
    pooled = placement is Placement.POOLED
    spread = placement is Placement.SPREAD
    # per segment: its idle draw, time and energy above idle over its total pace where pieces
    # work; over the requests alive (or, for the energy, those without counts) where none does
    idle_by_pace = [0.0] * segments
    time_by_pace = [0.0] * segments
    energy_by_pace = [0.0] * segments
    idle_each = [0.0] * segments
    time_each = [0.0] * segments
    energy_each = [0.0] * segments
    stretch_of = [0] * segments  # busy stretches (POOLED) end where no request is alive
    stretch_j = [0.0]
    stretch = 0  # the current one: len(stretch_j) - 1
    unattributed = 0.0
    waited = False  # some segment had requests alive and none working
    alive = unknown = working = units = 0
    for k in range(segments):
        alive += alive_at[k]
        unknown += unknown_at[k]
        working += working_at[k]
        units += pace_at[k]
        d_energy = levels[k + 1] - levels[k]
        if not alive:
            unattributed += d_energy
            stretch_j.append(0.0)
            stretch += 1
            stretch_of[k] = stretch
            continue
        stretch_of[k] = stretch
        dt = cuts[k + 1] - cuts[k]
        idle = min(d_energy, idle_w * dt)
        dynamic = d_energy - idle
        total = units / scale if working and units > 0 else 0.0
        if total > 0:
            idle_by_pace[k] = idle / total
            time_by_pace[k] = dt / total
            if pooled:
                stretch_j[-1] += dynamic
            else:
                energy_by_pace[k] = dynamic / total
            continue
        waited = True
        idle_each[k] = idle / alive
        time_each[k] = dt / alive
        if spread:
            energy_each[k] = dynamic / alive
        elif unknown:
            # requests whose work is unknown (no token counts) may have caused it; they share it
            energy_each[k] = dynamic / unknown
        else:
            # no known work: what the device drew above idle is not any request's doing
            unattributed += dynamic
    acc = [[0.0, 0.0, 0.0, 0.0] for _ in spans]  # prefill, decode, idle, busy
    idle_sums, idle_scale = _RunningSum(idle_by_pace).parts()
    time_sums, time_scale = _RunningSum(time_by_pace).parts()
    energy_sums, energy_scale = ([], 1) if pooled else _RunningSum(energy_by_pace).parts()
    priced = [0.0] * len(stretch_j)
    done = []
    for (b, e, work, length, phase, i), first, last, pace in zip(pieces, firsts, lasts, paces, strict=True):
        into = acc[i]
        into[2] += pace * ((idle_sums[last] - idle_sums[first]) / idle_scale)
        into[3] += pace * ((time_sums[last] - time_sums[first]) / time_scale)
        slot = 0 if phase == "prefill" else 1
        if not pooled:
            into[slot] += pace * ((energy_sums[last] - energy_sums[first]) / energy_scale)
        elif work > 0:
            # its priced work in its busy stretch
            piece = work * ((e - b) / length)
            priced[stretch_of[first]] += piece
            done.append((piece, stretch_of[first], slot, i))
    for piece, stretch, slot, i in done:
        acc[i][slot] += stretch_j[stretch] * piece / priced[stretch]
    if waited:
        idle_even, time_even, energy_even = (
            _RunningSum(idle_each),
            _RunningSum(time_each),
            _RunningSum(energy_each),
        )
        for i, first, last in ranges:
            into = acc[i]
            into[2] += idle_even.between(first, last)
            into[3] += time_even.between(first, last)
            if spread or no_counts[i]:
                into[0] += energy_even.between(first, last)
    return acc, unattributed


def _levels(samples: Sequence[EnergySample], cuts: list[float]) -> list[float]:
    """The counter at each of the cuts (in order, within the samples), linear between samples."""
    out = []
    i = 0
    last = len(samples) - 1
    for t in cuts:
        while i < last and samples[i + 1].t <= t:
            i += 1
        a = samples[i]
        if a.t == t or i == last:
            out.append(a.joules)
        else:
            b = samples[i + 1]
            out.append(a.joules + (b.joules - a.joules) * (t - a.t) / (b.t - a.t))
    return out


def _paces(works: list[float], lengths: list[float]) -> list[float]:
    """Each piece's work per second, all scaled by one power of two when that is needed to keep
    the fastest and the slowest in range (work / length overflows for a piece a few ulps long)."""
    paces = [w / n for w, n in zip(works, lengths, strict=True)]
    moving = [p for w, p in zip(works, paces, strict=True) if w > 0]
    if not moving or (max(moving) < 1e150 and min(moving) > 1e-150):
        return paces
    parts = [(math.frexp(w), math.frexp(n)) for w, n in zip(works, lengths, strict=True)]
    exponents = [we - ne for (wm, we), (_, ne) in parts if wm > 0]
    middle = (min(exponents) + max(exponents)) // 2
    return [math.ldexp(wm / nm, we - ne - middle) if wm > 0 else 0.0 for (wm, we), (nm, ne) in parts]


class _RunningSum:
    """Running sums of floats kept exactly, as integers over one power of two (`_exact`): the sum
    over any range of them is a difference of two, rounded once. (A float running sum would lose
    a short range's digits to the long sum before it.)"""

    def __init__(self, values: list[float]) -> None:
        units, self.scale = _exact(values)
        self.sums = [0, *itertools.accumulate(units)]

    def parts(self) -> tuple[list[int], int]:
        """(sums, scale): the sum of values[a:b] is (sums[b] - sums[a]) / scale."""
        return self.sums, self.scale

    def between(self, first: int, last: int) -> float:
        """The sum of values[first:last]."""
        return (self.sums[last] - self.sums[first]) / self.scale


def _exact(values: list[float]) -> tuple[list[int], int]:
    """The values as whole numbers over one power of two: (numerators, the power)."""
    smallest = min(filter(None, map(abs, values)), default=1.0)
    largest = max(map(abs, values), default=0.0)
    # every value times 2**shift is a whole number: its lowest bit lands at 2**0 or above
    shift = max(0, 53 - math.frexp(smallest)[1])
    if math.frexp(largest)[1] + shift < 1000:
        return list(map(int, map(math.ldexp, values, itertools.repeat(shift)))), 1 << shift
    # too far apart for a float to hold both scaled: the same, one value at a time
    exact = [v.as_integer_ratio() for v in values]
    scale = max((d for _, d in exact), default=1)
    return [n * (scale // d) for n, d in exact], scale


def idle_power(samples: Sequence[EnergySample], requests: Iterable[RequestSpan]) -> float | None:
    """Mean power while no request was alive (W), or None when requests always ran."""
    samples = _checked(samples)
    energy = _Interpolator([s.t for s in samples], [s.joules for s in samples])
    busy = sorted((r.start, r.end) for r in requests)
    quiet_j = quiet_s = 0.0
    cursor = samples[0].t
    for begin, end in [*busy, (samples[-1].t, samples[-1].t)]:
        begin = min(max(begin, cursor), samples[-1].t)
        if begin > cursor:
            quiet_j += energy(begin) - energy(cursor)
            quiet_s += begin - cursor
        cursor = max(cursor, min(end, samples[-1].t))
    return quiet_j / quiet_s if quiet_s > 0 else None


def smooth_counter(samples: Sequence[EnergySample]) -> list[EnergySample]:
    """The readings at which the counter moved (and the last one), so that linear interpolation
    spreads each update over the time since the previous one.

    A counter read faster than it updates (NVML's moves every 100 ms, read every 10 ms) is a
    staircase: between its updates it stands still, then jumps. Read as is, each update's energy
    lands in the moment of the jump, up to an update period away from where it was drawn.
    """
    samples = _checked(samples)
    kept = [samples[0]]
    for before, s in zip(samples, samples[1:], strict=False):
        if s.joules != before.joules:
            kept.append(s)
    if kept[-1] is not samples[-1]:
        kept.append(samples[-1])
    return kept


def combine(attributions: Iterable[Attribution]) -> dict[str, RequestEnergy]:
    """Each request's energy summed over the devices that served it (a model split over GPUs)."""
    out: dict[str, RequestEnergy] = {}
    for attribution in attributions:
        for rid, energy in attribution.requests.items():
            out[rid] = out[rid] + energy if rid in out else energy
    return out


def _checked(samples: Sequence[EnergySample]) -> Sequence[EnergySample]:
    if len(samples) < 2:
        raise ValueError("need at least two energy samples")
    for a, b in zip(samples, samples[1:], strict=False):
        if b.t <= a.t:
            raise ValueError(f"sample times must increase ({a.t} then {b.t})")
        if b.joules < a.joules:
            raise ValueError(f"cumulative energy decreased at t={b.t}: use EnergyTotal for raw counters")
    return samples


class _Interpolator:
    """Cumulative energy at any time in the window, linear between samples."""

    def __init__(self, times: list[float], joules: list[float]) -> None:
        self.times, self.joules = times, joules

    def __call__(self, t: float) -> float:
        i = bisect.bisect_right(self.times, t)
        if i == 0:
            return self.joules[0]
        if i == len(self.times):
            return self.joules[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        j0, j1 = self.joules[i - 1], self.joules[i]
        return j0 + (j1 - j0) * (t - t0) / (t1 - t0)
