"""`attribute` and `PhasePower.observe` give the same figures, up to float rounding, as a
straightforward segment-by-segment reference (kept here, not in src): every moment between two
cuts visits every request and piece of work alive in it."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wavefleet.telemetry.attribution import (
    EQUAL_WEIGHTS,
    Attribution,
    EnergySample,
    PhasePower,
    Placement,
    RequestEnergy,
    RequestSpan,
    TokenWeights,
    attribute,
)

# --- the reference ---------------------------------------------------------------------------------


def _energy_at(samples: Sequence[EnergySample], t: float) -> float:
    times = [s.t for s in samples]
    i = bisect.bisect_right(times, t)
    if i == 0:
        return samples[0].joules
    if i == len(times):
        return samples[-1].joules
    a, b = samples[i - 1], samples[i]
    return a.joules + (b.joules - a.joules) * (t - a.t) / (b.t - a.t)


def reference_attribute(
    samples: Sequence[EnergySample],
    requests: Iterable[RequestSpan],
    *,
    weights: TokenWeights,
    idle_w: float,
    placement: Placement,
) -> Attribution:
    ws, we = samples[0].t, samples[-1].t
    spans = list(requests)
    phases = [
        (max(b, ws), min(e, we), work, e - b, phase, r.id)
        for r in spans
        for b, e, work, phase in r.phases(weights, placement)
        if min(e, we) > max(b, ws)
    ]
    present = [(max(r.start, ws), min(r.end, we), r.id) for r in spans]
    cuts = sorted(
        {s.t for s in samples}
        | {t for b, e, *_ in phases for t in (b, e)}
        | {t for b, e, _ in present if e > b for t in (b, e)}
    )
    acc = {r.id: {"prefill": 0.0, "decode": 0.0, "idle": 0.0, "busy": 0.0} for r in spans}
    unattributed = 0.0
    no_counts = {r.id for r in spans if r.prompt_tokens == 0 and r.completion_tokens == 0}
    pools: list[tuple[list[float], dict[tuple[str, str], float]]] = [([0.0], {})]
    for a, b in zip(cuts, cuts[1:], strict=False):
        d_energy = _energy_at(samples, b) - _energy_at(samples, a)
        alive = [rid for lo, hi, rid in present if lo <= a and hi >= b]
        if not alive:
            unattributed += d_energy
            if pools[-1][1]:
                pools.append(([0.0], {}))
            continue
        dt = b - a
        working = [
            (work * (dt / length), phase, rid)
            for lo, hi, work, length, phase, rid in phases
            if lo <= a and hi >= b
        ]
        idle = min(d_energy, idle_w * dt)
        dynamic = d_energy - idle
        work = sum(done for done, _, _ in working)
        if work > 0 and placement is Placement.POOLED:
            pools[-1][0][0] += dynamic
            for done, phase, rid in working:
                pools[-1][1][rid, phase] = pools[-1][1].get((rid, phase), 0.0) + done
                acc[rid]["idle"] += idle * done / work
                acc[rid]["busy"] += dt * done / work
            continue
        if work > 0:
            shares = [(rid, phase, done / work) for done, phase, rid in working]
        elif placement is Placement.SPREAD or not (unknown := [rid for rid in alive if rid in no_counts]):
            shares = [(rid, "prefill", 1 / len(alive)) for rid in alive]
            if placement is not Placement.SPREAD:
                unattributed += dynamic
                dynamic = 0.0
        else:
            for rid in alive:
                acc[rid]["idle"] += idle / len(alive)
                acc[rid]["busy"] += dt / len(alive)
            idle = dt = 0.0
            shares = [(rid, "prefill", 1 / len(unknown)) for rid in unknown]
        for rid, phase, share in shares:
            acc[rid][phase] += dynamic * share
            acc[rid]["idle"] += idle * share
            acc[rid]["busy"] += dt * share
    for (stretch_j,), stretch_work in pools:
        priced = sum(stretch_work.values())
        for (rid, phase), done in stretch_work.items():
            acc[rid][phase] += stretch_j * done / priced
    return Attribution(
        start=ws,
        end=we,
        total_j=samples[-1].joules - samples[0].joules,
        idle_w=idle_w,
        weights=weights,
        requests={
            r.id: RequestEnergy(
                id=r.id,
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                prefill_j=acc[r.id]["prefill"],
                decode_j=acc[r.id]["decode"],
                idle_j=acc[r.id]["idle"],
                busy_s=acc[r.id]["busy"],
            )
            for r in spans
        },
        unattributed_j=unattributed,
    )


def reference_observe(
    samples: Sequence[EnergySample], spans: list[RequestSpan], *, idle_w: float
) -> PhasePower:
    lo, hi = samples[0].t, samples[-1].t
    moments = {t for r in spans for t in (r.start, r.end)}
    moments |= {t for r in spans for b, e, _, _ in r.phases(EQUAL_WEIGHTS) for t in (b, e)}
    cuts = sorted({lo, hi} | {min(max(t, lo), hi) for t in moments})
    acc = {"prefill": [0.0, 0.0], "decode": [0.0, 0.0]}
    for a, b in zip(cuts, cuts[1:], strict=False):
        alive = [r for r in spans if r.start <= a and r.end >= b]
        if len(alive) != 1:
            continue
        phase = next((ph for pb, pe, _, ph in alive[0].phases(EQUAL_WEIGHTS) if pb <= a and pe >= b), None)
        if phase is None:
            continue
        acc[phase][0] += _energy_at(samples, b) - _energy_at(samples, a) - idle_w * (b - a)
        acc[phase][1] += b - a
    return PhasePower(
        prefill_j=acc["prefill"][0],
        prefill_s=acc["prefill"][1],
        decode_j=acc["decode"][0],
        decode_s=acc["decode"][1],
    )


# --- random runs, on a clock of microseconds as the gateway's ---------------------------------------


def _moment(draw: st.DrawFn, lo: float, hi: float) -> float:
    return draw(st.integers(round(lo * 1e6), round(hi * 1e6))) / 1e6


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[EnergySample], list[RequestSpan], float]:
    n = draw(st.integers(2, 30))
    samples, t, joules = [EnergySample(0.0, 0.0)], 0.0, 0.0
    for _ in range(n - 1):
        gap = draw(st.integers(1, 400_000)) / 1e6
        t, joules = t + gap, joules + gap * draw(st.floats(0, 700))
        samples.append(EnergySample(t, joules))
    spans = []
    for i in range(draw(st.integers(0, 14))):
        start = _moment(draw, -1, t + 1)
        end = _moment(draw, start, start + draw(st.sampled_from([0.0, 0.01, 0.5, t + 1])))
        kind = draw(st.sampled_from(["none", "at start", "inside"]))
        first = None if kind == "none" else start if kind == "at start" else _moment(draw, start, end)
        times: tuple[float, ...] = ()
        if first is not None and draw(st.booleans()):
            # streamed events, some at one moment (relayed together), some before the first token
            times = tuple(
                sorted(_moment(draw, max(start, first - 0.05), end) for _ in range(draw(st.integers(0, 40))))
            )
            times = tuple(x for x in times if x >= start)
        counted = draw(st.booleans()) or not draw(st.booleans())
        spans.append(
            RequestSpan(
                id=f"r{i}",
                start=start,
                end=end,
                first_token=first,
                prompt_tokens=draw(st.integers(0, 5000)) if counted else 0,
                completion_tokens=draw(st.integers(0, 500)) if counted else 0,
                prefill_s=draw(st.one_of(st.none(), st.integers(0, 2_000_000).map(lambda u: u / 1e6))),
                token_times=times,
                weights=draw(st.one_of(st.none(), st.just(TokenWeights(0.3, 2.0, "another model")))),
            )
        )
    return samples, spans, draw(st.floats(0, 400))


def _close(got: float, want: float, scale: float) -> bool:
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, scale))


@settings(max_examples=400, deadline=None)
@given(
    runs(),
    st.sampled_from([EQUAL_WEIGHTS, TokenWeights(0.02, 1.5, "fitted"), TokenWeights(0, 1, "decode only")]),
    st.sampled_from(list(Placement)),
)
def test_attribution_equals_the_segment_by_segment_reference(
    run: tuple[list[EnergySample], list[RequestSpan], float], weights: TokenWeights, placement: Placement
) -> None:
    samples, spans, idle_w = run
    got = attribute(samples, spans, weights=weights, idle_w=idle_w, placement=placement)
    want = reference_attribute(samples, spans, weights=weights, idle_w=idle_w, placement=placement)
    scale = want.total_j
    assert _close(got.unattributed_j, want.unattributed_j, scale)
    for r in spans:
        g, w = got.requests[r.id], want.requests[r.id]
        for name in ("prefill_j", "decode_j", "idle_j"):
            assert _close(getattr(g, name), getattr(w, name), scale), (r.id, name, g, w)
        assert _close(g.busy_s, w.busy_s, samples[-1].t - samples[0].t), (r.id, "busy_s", g, w)


@settings(max_examples=300, deadline=None)
@given(runs())
def test_solo_power_equals_the_segment_by_segment_reference(
    run: tuple[list[EnergySample], list[RequestSpan], float],
) -> None:
    samples, spans, idle_w = run
    got = PhasePower.observe(samples, spans, idle_w=idle_w)
    want = reference_observe(samples, spans, idle_w=idle_w)
    scale = samples[-1].joules - samples[0].joules + idle_w * (samples[-1].t - samples[0].t)
    for name in ("prefill_j", "decode_j"):
        assert _close(getattr(got, name), getattr(want, name), scale)
    for name in ("prefill_s", "decode_s"):
        assert _close(getattr(got, name), getattr(want, name), samples[-1].t - samples[0].t)


def test_many_concurrent_streams_are_split_as_the_reference_splits_them() -> None:
    """A busy minute of the gateway: 32 streams at once, a token each 20 ms, pooled."""
    samples = [EnergySample(t / 5, 100.0 * t / 5 + 3 * (t % 3)) for t in range(6)]
    spans = [
        RequestSpan(
            id=f"s{i}",
            start=round(i * 0.03, 6),
            end=round(i * 0.03 + 0.6, 6),
            first_token=round(i * 0.03 + 0.1, 6),
            prompt_tokens=50 + i,
            completion_tokens=25,
            token_times=tuple(round(i * 0.03 + 0.1 + k * 0.02, 6) for k in range(26)),
        )
        for i in range(32)
    ]
    weights = TokenWeights(0.05, 1.0, "test")
    got = attribute(samples, spans, weights=weights, idle_w=40, placement=Placement.POOLED)
    want = reference_attribute(samples, spans, weights=weights, idle_w=40, placement=Placement.POOLED)
    assert got.closure_error < 1e-12
    for r in spans:
        assert got.requests[r.id].energy_j == pytest.approx(want.requests[r.id].energy_j, rel=1e-12)
        assert got.requests[r.id].idle_j == pytest.approx(want.requests[r.id].idle_j, rel=1e-12)
        assert got.requests[r.id].busy_s == pytest.approx(want.requests[r.id].busy_s, rel=1e-12)


@pytest.mark.parametrize("placement", list(Placement))
def test_a_piece_a_few_ulps_long_beside_slow_ones_still_closes(placement: Placement) -> None:
    """Its pace (work over length) is beyond a float's range: the split must still be finite."""
    samples = [EnergySample(0.0, 0.0), EnergySample(1.0, 150.0), EnergySample(2.0, 300.0)]
    spans = [
        RequestSpan(id="blip", start=0.5, first_token=math.nextafter(0.5, 1), end=0.75, prompt_tokens=5000),
        RequestSpan(id="slow", start=0.0, first_token=0.1, end=2.0, prompt_tokens=1, completion_tokens=1),
        RequestSpan(
            id="streamed",
            start=0.2,
            first_token=0.3,
            end=1.5,
            completion_tokens=3,
            token_times=(0.3, math.nextafter(0.3, 1), 1.0, 1.5),
        ),
    ]
    result = attribute(samples, spans, weights=EQUAL_WEIGHTS, idle_w=50, placement=placement)
    assert all(math.isfinite(r.total_j) and r.energy_j >= 0 for r in result.requests.values())
    assert result.closure_error < 1e-12
