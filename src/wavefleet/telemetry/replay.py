"""A recorded attribution run, evaluated under each attribution scheme: closure and fairness.

A run is what `scripts/gpu/attribution_check.py` records on a GPU (or `GpuModel` makes up): the
energy counter's raw readings and, per repeat, a long-prompt request alone, a short one alone
and both together, with their timings. `evaluate` attributes the counter to the requests under
each `Scheme` and reports, per scheme, whether the attribution closes on the counter (goal: 2 %)
and how far the long/short energy ratio served together is from the ratio alone (goal: 15 %).

Pure and standard-library only: the check imports it on the GPU machine, where the package's
dependencies are not installed.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wavefleet.telemetry.attribution import (
    Attribution,
    EnergySample,
    PhasePower,
    Placement,
    RequestSpan,
    TokenWeights,
    attribute,
    idle_power,
    smooth_counter,
)
from wavefleet.telemetry.counter import EnergyTotal

__all__ = ["SCHEMES", "RunRequest", "Scheme", "evaluate", "samples_of"]

CLOSURE_GOAL = 0.02
FAIRNESS_GOAL = 0.15


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """One request of a run: `kind` is long-alone, short-alone, long-together or short-together."""

    id: str
    kind: str
    repeat: int
    start: float
    end: float
    first_token: float | None
    prompt_tokens: int
    completion_tokens: int
    prompt_ms: float
    prompt_per_second: float
    predicted_per_second: float
    token_times: tuple[float, ...] = ()

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunRequest:
        fields = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        fields["token_times"] = tuple(raw.get("token_times") or ())
        return cls(**fields)

    def span(self, *, with_tokens: bool = True) -> RequestSpan:
        first = self.first_token
        times = tuple(t for t in self.token_times if self.start <= t <= self.end) if with_tokens else ()
        return RequestSpan(
            id=self.id,
            start=self.start,
            end=self.end,
            first_token=first,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            prefill_s=self.prompt_ms / 1000 if self.prompt_ms > 0 else None,
            token_times=times,
        )


@dataclass(frozen=True, kw_only=True)
class Scheme:
    """How a scheme attributes: where work lies, how tokens are priced, the counter as read or smoothed."""

    name: str
    placement: Placement
    solo_power: bool  # price tokens at the solo power of their phase (else device time per token)
    smooth: bool
    summary: str


SCHEMES = (
    Scheme(
        name="spread",
        placement=Placement.SPREAD,
        solo_power=False,
        smooth=False,
        summary="tokens at an even pace over each phase, priced at the engine's time per token; counter as read",
    ),
    Scheme(
        name="streamed",
        placement=Placement.STREAMED,
        solo_power=True,
        smooth=True,
        summary=(
            "prompt over the engine's prefill time, generated tokens when streamed, priced at the "
            "phase's solo power over the engine's speed; counter smoothed between its updates"
        ),
    ),
    Scheme(
        name="pooled",
        placement=Placement.POOLED,
        solo_power=True,
        smooth=True,
        summary=(
            "each busy stretch's energy above idle split by the solo cost of each request's work in "
            "it (prompt tokens and generated tokens at the phase's solo power over the engine's speed)"
        ),
    ),
)


def samples_of(readings: Sequence[Sequence[float | None]]) -> list[EnergySample]:
    """Cumulative joules from raw (t, mJ, ...) readings, wraps and restarts handled; readings at a
    time not after the previous one are dropped."""
    total = EnergyTotal(scale=1e-3)
    samples: list[EnergySample] = []
    for reading in readings:
        t, raw = reading[0], reading[1]
        if t is None or raw is None:
            continue
        joules = total.update(raw)
        if samples and t <= samples[-1].t:
            continue
        samples.append(EnergySample(float(t), joules))
    return samples


def evaluate(readings: Sequence[Sequence[float | None]], requests: Sequence[RunRequest]) -> dict[str, Any]:
    """Closure and fairness of every scheme in `SCHEMES` on one run (see the module doc)."""
    raw = samples_of(readings)
    spans = [r.span() for r in requests]
    idle_w = idle_power(raw, spans) or 0.0
    repeats = sorted({r.repeat for r in requests if r.repeat >= 0})
    alone = [r for r in requests if r.kind.endswith("alone")]
    speeds = {
        "prompt_per_second": statistics.mean(r.prompt_per_second for r in alone if r.kind == "long-alone"),
        "predicted_per_second": statistics.mean(
            r.predicted_per_second for r in alone if r.kind == "short-alone"
        ),
    }
    out: dict[str, Any] = {"idle_w": idle_w, "counter_total_j": raw[-1].joules - raw[0].joules, "schemes": {}}
    for scheme in SCHEMES:
        samples = smooth_counter(raw) if scheme.smooth else raw
        # a staircase counter read as is moves the last update of each request into the quiet after it
        idle_w = idle_power(samples, spans) or 0.0
        if scheme.solo_power:
            power = PhasePower.observe(samples, [r.span() for r in alone], idle_w=idle_w)
            weights = power.token_weights(**speeds)
            learned: dict[str, float | None] = {"prefill_w": power.prefill_w, "decode_w": power.decode_w}
        else:
            weights = TokenWeights.from_timings(**speeds)
            learned = {}
        result = attribute(samples, spans, weights=weights, idle_w=idle_w, placement=scheme.placement)
        rows = _ratios(result, requests, repeats)
        out["schemes"][scheme.name] = {
            "summary": scheme.summary,
            "idle_w": idle_w,
            "weights": {"prefill": weights.prefill, "decode": weights.decode, "basis": weights.basis},
            "solo_power": learned,
            "closure_error": result.closure_error,
            "attributed_j": result.attributed_j,
            "unattributed_j": result.unattributed_j,
            "repeats": rows,
            "worst_deviation": max((abs(row["deviation"]) for row in rows), default=None),
        }
    out["goals"] = {
        name: {
            "closure_within_2pct": r["closure_error"] <= CLOSURE_GOAL,
            "ratio_within_15pct": r["worst_deviation"] is not None and r["worst_deviation"] <= FAIRNESS_GOAL,
        }
        for name, r in out["schemes"].items()
    }
    return out


def _ratios(
    result: Attribution, requests: Sequence[RunRequest], repeats: list[int]
) -> list[dict[str, float]]:
    rows = []
    for repeat in repeats:
        energy = {r.kind: result.requests[r.id].energy_j for r in requests if r.repeat == repeat}
        if not {"long-alone", "short-alone", "long-together", "short-together"} <= energy.keys():
            continue
        alone = energy["long-alone"] / energy["short-alone"]
        together = energy["long-together"] / energy["short-together"]
        rows.append(
            {
                "repeat": repeat,
                "long_alone_j": energy["long-alone"],
                "short_alone_j": energy["short-alone"],
                "long_together_j": energy["long-together"],
                "short_together_j": energy["short-together"],
                "ratio_alone": alone,
                "ratio_together": together,
                "deviation": together / alone - 1,
            }
        )
    return rows
