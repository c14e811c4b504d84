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
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

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
        steps = self._steps(first) if placement is not Placement.SPREAD else []
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
        pieces = [r.phases(EQUAL_WEIGHTS) for r in spans]
        moments = {t for r in spans for t in (r.start, r.end)}
        moments |= {t for phases in pieces for b, e, _, _ in phases for t in (b, e)}
        cuts = sorted({lo, hi} | {min(max(t, lo), hi) for t in moments})
        at = {t: k for k, t in enumerate(cuts)}
        # how many requests are alive in each segment, and the sum of their indices: the one
        # alive when only one is (a sweep, not a scan of every request at every cut)
        count = [0] * len(cuts)
        owner = [0] * len(cuts)
        for i, r in enumerate(spans):
            first, last = at[min(max(r.start, lo), hi)], at[min(max(r.end, lo), hi)]
            if last > first:
                count[first] += 1
                count[last] -= 1
                owner[first] += i
                owner[last] -= i
        acc = {"prefill": [0.0, 0.0], "decode": [0.0, 0.0]}
        alive = which = 0
        for k in range(len(cuts) - 1):
            alive += count[k]
            which += owner[k]
            if alive != 1:
                continue
            a, b = cuts[k], cuts[k + 1]
            phase = next((ph for pb, pe, _, ph in pieces[which] if pb <= a and pe >= b), None)
            if phase is None:
                continue
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

    Linear in the cuts and pieces of work, not in their product: a piece's share of a segment is
    its pace over the segment's total pace, so what a piece gets over its segments is its pace
    times a range sum of per-segment figures (`_Tree`), and the total pace of each segment a
    stabbing sum of the paces over it.
    """
    samples = _checked(samples)
    if idle_w < 0:
        raise ValueError("idle power cannot be negative")
    window_start, window_end = samples[0].t, samples[-1].t
    spans = list(requests)
    ids = [r.id for r in spans]
    if len(set(ids)) != len(ids):
        raise ValueError("request ids must be unique")
    piece_from, piece_to, work_of, length, is_decode, owner = _pieces(
        spans, weights, placement, window_start, window_end
    )
    times = np.array([s.t for s in samples])
    joules = np.array([s.joules for s in samples])
    alive_from = np.array([max(r.start, window_start) for r in spans], dtype=float)
    alive_to = np.array([min(r.end, window_end) for r in spans], dtype=float)
    alive = alive_to > alive_from
    cuts = np.unique(np.concatenate([times, piece_from, piece_to, alive_from[alive], alive_to[alive]]))
    segments = len(cuts) - 1
    # each piece and each request's presence covers the segments [first, last) between its cuts
    p_first, p_last = np.searchsorted(cuts, piece_from), np.searchsorted(cuts, piece_to)
    r_first = np.where(alive, np.searchsorted(cuts, alive_from), 0)
    r_last = np.where(alive, np.searchsorted(cuts, alive_to), 0)
    dt = np.diff(cuts)
    d_energy = np.diff(np.interp(cuts, times, joules))
    idle = np.minimum(d_energy, idle_w * dt)
    dynamic = d_energy - idle
    no_counts = np.array([r.prompt_tokens == 0 and r.completion_tokens == 0 for r in spans], dtype=bool)
    present = _count(r_first[alive], r_last[alive], segments)
    unknown = _count(r_first[alive & no_counts], r_last[alive & no_counts], segments)
    pace = _paces(work_of, length)
    tree = _Tree(segments)
    total_pace = tree.stab(p_first, p_last, pace)
    working = (_count(p_first[work_of > 0], p_last[work_of > 0], segments) > 0) & (total_pace > 0)
    quiet = present == 0
    waiting = ~quiet & ~working  # requests alive, none of them doing known work
    unattributed = float(np.sum(d_energy[quiet]))
    pooled = placement is Placement.POOLED
    spread = placement is Placement.SPREAD

    def per(values: npt.NDArray[np.float64], by: npt.NDArray[Any], where: npt.NDArray[np.bool_]) -> Any:
        return np.divide(values, by, out=np.zeros(segments), where=where)

    # working segments: shares by pace
    by_pace = np.stack(
        [per(idle, total_pace, working), per(dt, total_pace, working), per(dynamic, total_pace, working)],
        axis=1,
    )
    got = tree.sums(by_pace, p_first, p_last) * pace[:, None]
    n = len(spans)
    acc_idle = _sum_by(owner, got[:, 0], n)
    acc_busy = _sum_by(owner, got[:, 1], n)
    if pooled:
        # the energy above idle of each busy stretch (stretches end where no request is alive),
        # split by each piece's priced work in it: its work times the part of it in the window
        stretch = np.cumsum(quiet)
        stretch_j = _sum_by(stretch[working], dynamic[working], segments + 1)
        done = work_of * ((piece_to - piece_from) / length)
        of = stretch[p_first]
        priced = _sum_by(of, done, segments + 1)
        gain = np.divide(stretch_j[of] * done, priced[of], out=np.zeros(len(done)), where=done > 0)
    else:
        gain = got[:, 2]
    acc_prefill = _sum_by(owner, np.where(is_decode, 0.0, gain), n)
    acc_decode = _sum_by(owner, np.where(is_decode, gain, 0.0), n)
    # alive but not working: an even split of the idle draw and the time among the alive; the
    # energy above idle too (SPREAD), or among those with no token counts, else unattributed
    if spread:
        third = per(dynamic, present, waiting)
    else:
        third = per(dynamic, unknown, waiting & (unknown > 0))
        unattributed += float(np.sum(dynamic[waiting & (unknown == 0)]))
    evenly = tree.sums(
        np.stack([per(idle, present, waiting), per(dt, present, waiting), third], axis=1), r_first, r_last
    )
    acc_idle += evenly[:, 0]
    acc_busy += evenly[:, 1]
    acc_prefill += evenly[:, 2] if spread else np.where(no_counts, evenly[:, 2], 0.0)
    result = {}
    for i, r in enumerate(spans):
        lifetime = r.end - r.start
        covered = max(0.0, min(r.end, window_end) - max(r.start, window_start))
        result[r.id] = RequestEnergy(
            id=r.id,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            prefill_j=float(acc_prefill[i]),
            decode_j=float(acc_decode[i]),
            idle_j=float(acc_idle[i]),
            busy_s=float(acc_busy[i]),
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


def _pieces(
    spans: list[RequestSpan], weights: TokenWeights, placement: Placement, lo: float, hi: float
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.bool_],
    npt.NDArray[np.intp],
]:
    """Every request's pieces of work as `RequestSpan.phases` places them, clipped to [lo, hi]:
    (begin, end, work, the whole piece's length, decode?, request index), one array each; the
    streamed steps of all requests found at once rather than token by token."""
    n = len(spans)
    rows = []
    for r in spans:
        w = r.weights or weights
        token = r.end if r.first_token is None else r.first_token
        begin = r.start if r.prefill_s is None else max(r.start, token - r.prefill_s)
        rows.append((begin, token, r.prompt_tokens * w.prefill, r.end, r.completion_tokens * w.decode))
    table = np.array(rows, dtype=float).reshape(n, 5)
    prefill_from, first, prefill_work, end, decode_work = table.T
    index = np.arange(n)
    begins, ends, works, decode, owners = (
        [prefill_from],
        [first],
        [prefill_work],
        [np.zeros(n, bool)],
        [index],
    )
    whole = np.ones(n, bool)  # decode spread from the first token to the end
    streamed = (
        [i for i, r in enumerate(spans) if len(r.token_times) > 1]
        if placement is not Placement.SPREAD
        else []
    )
    if streamed:
        sizes = np.array([len(spans[i].token_times) for i in streamed])
        t = np.fromiter(
            itertools.chain.from_iterable(spans[i].token_times for i in streamed),
            float,
            count=int(sizes.sum()),
        )
        of = np.repeat(np.array(streamed), sizes)
        keep = t >= first[of]
        t, of = t[keep], of[keep]
        # runs of events at one moment; every run after a request's first closes a step that
        # began at the run before it and made as many tokens as the run has events
        run = np.ones(len(t), bool)
        run[1:] = (of[1:] != of[:-1]) | (t[1:] != t[:-1])
        starts = np.flatnonzero(run)
        run_t, run_of = t[starts], of[starts]
        run_events = np.diff(np.append(starts, len(t)))
        step = np.zeros(len(starts), bool)
        step[1:] = run_of[1:] == run_of[:-1]
        at = np.flatnonzero(step)
        step_of, step_events = run_of[at], run_events[at]
        events = np.bincount(step_of, step_events, minlength=n)
        whole = events == 0
        begins.append(run_t[at - 1])
        ends.append(run_t[at])
        works.append(decode_work[step_of] * step_events / events[step_of])
        decode.append(np.ones(len(at), bool))
        owners.append(step_of)
    begins.append(first[whole])
    ends.append(end[whole])
    works.append(decode_work[whole])
    decode.append(np.ones(int(whole.sum()), bool))
    owners.append(index[whole])
    b, e = np.concatenate(begins), np.concatenate(ends)
    clipped_b, clipped_e = np.maximum(b, lo), np.minimum(e, hi)
    inside = clipped_e > clipped_b
    return (
        clipped_b[inside],
        clipped_e[inside],
        np.concatenate(works)[inside],
        (e - b)[inside],
        np.concatenate(decode)[inside],
        np.concatenate(owners)[inside].astype(np.intp),
    )


def _sum_by(
    index: npt.NDArray[np.intp], values: npt.NDArray[np.float64], size: int
) -> npt.NDArray[np.float64]:
    """values summed by index, for indices 0 to size - 1 (floats even when there are none)."""
    return np.bincount(index, values, minlength=size).astype(float, copy=False)


def _count(first: npt.NDArray[np.int64], last: npt.NDArray[np.int64], segments: int) -> npt.NDArray[np.int64]:
    """How many of the ranges [first, last) cover each segment."""
    starts = np.bincount(first, minlength=segments + 1)
    stops = np.bincount(last, minlength=segments + 1)
    return np.cumsum(starts - stops)[:segments]


def _paces(work: npt.NDArray[np.float64], length: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Work per second of each piece, all scaled by one power of two that keeps the fastest and
    the slowest in range (work / length alone overflows for a piece a few ulps long)."""
    if not len(work):
        return work
    w_mantissa, w_exponent = np.frexp(work)
    l_mantissa, l_exponent = np.frexp(length)
    exponent = w_exponent - l_exponent
    positive = work > 0
    if not positive.any():
        return np.zeros(len(work))
    middle = (int(exponent[positive].min()) + int(exponent[positive].max())) // 2
    paces: npt.NDArray[np.float64] = np.ldexp(
        np.where(positive, w_mantissa / l_mantissa, 0.0), exponent - middle
    )
    return paces


class _Tree:
    """Range sums over the segments by a binary tree of partial sums: each range is the sum of at
    most two nodes a level, each node a sum of its segments' figures. The figures are never
    negative, so no sum cancels (prefix sums would: a short range's sum as the difference of two
    long ones loses its digits)."""

    def __init__(self, segments: int) -> None:
        self.segments = segments

    def _cover(
        self, first: npt.NDArray[np.int64], last: npt.NDArray[np.int64]
    ) -> list[tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
        """(level, which ranges, their node at that level) that make up the ranges [first, last)."""
        rows = np.flatnonzero(first < last)
        lo, hi = first[rows], last[rows]
        nodes = []
        level = 0
        while rows.size:
            left = (lo & 1).astype(bool)
            nodes.append((level, rows[left], lo[left]))
            lo = lo + left
            right = (hi & 1).astype(bool) & (lo < hi)
            hi = hi - right
            nodes.append((level, rows[right], hi[right]))
            lo, hi = lo >> 1, hi >> 1
            keep = lo < hi
            rows, lo, hi = rows[keep], lo[keep], hi[keep]
            level += 1
        return nodes

    def sums(
        self, values: npt.NDArray[np.float64], first: npt.NDArray[np.int64], last: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        """values[first[i]:last[i]].sum(axis=0) for each i (`values` one row a segment)."""
        out = np.zeros((len(first), values.shape[1]))
        nodes = self._cover(first, last)
        level, tree = 0, values
        for at, rows, index in nodes:
            while level < at:
                if len(tree) % 2:
                    tree = np.concatenate([tree, np.zeros((1, tree.shape[1]))])
                tree = tree[0::2] + tree[1::2]
                level += 1
            out[rows] += tree[index]
        return out

    def stab(
        self, first: npt.NDArray[np.int64], last: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """For each segment, the sum of values[i] over the ranges [first[i], last[i]) that cover it."""
        out = np.zeros(self.segments)
        for level, rows, index in self._cover(first, last):
            size = -(-self.segments // (1 << level))
            out += np.repeat(np.bincount(index, values[rows], minlength=size), 1 << level)[: self.segments]
        return out


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
