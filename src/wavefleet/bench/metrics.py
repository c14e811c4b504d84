"""vLLM `bench serve` metrics over request records (vllm/benchmarks/serve.py `calculate_metrics`).

    TTFT_i   = first chunk with non-empty choices - start
    ITL      = gaps between consecutive choices chunks, pooled over all requests
    TPOT_i   = (E2EL_i - TTFT_i) / (out_i - 1), only for out_i > 1
    E2EL_i   = last choices chunk - start (the usage trailer is excluded)
    request_throughput     = completed / duration
    output_throughput      = sum(out) / duration
    total_token_throughput = (sum(in) + sum(out)) / duration
    request_goodput        = good / duration; good meets every SLO (<=); TPOT counts as 0
                             when out <= 1, as vLLM does
    good_fraction          = good / (completed + failed)   (failures count against it)

These are vLLM's, over successful requests and the full run (first scheduled send to the last
answer's end). Two additions do not let a drain or failures hide the truth:

- `*_window` figures divide by the load's window instead of the full run (see `Window`), so one
  slow answer after the last arrival does not shrink them;
- `ttft_all`, `tpot_all` and `e2el_all` are over every request, a failed one counting as
  infinitely late, so a high percentile is infinite once more requests than its tail failed.

Statistics are numpy's mean, median, std and `np.percentile` (linear interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from wavefleet.bench.records import RequestRecord

__all__ = ["ALL_REQUESTS_METRICS", "LATENCY_METRICS", "Slo", "Stats", "Summary", "Window", "summarize"]

ALL_REQUESTS_METRICS = ("ttft_all", "tpot_all", "e2el_all")
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el", "dispatch_lag", *ALL_REQUESTS_METRICS)
# Stands in for infinity inside np.percentile, whose interpolation between two infinities is NaN.
_FAR = 1e300


@dataclass(frozen=True)
class Slo:
    """Service-level objectives in milliseconds; None leaves a metric unchecked."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    @property
    def empty(self) -> bool:
        return self.ttft_ms is None and self.tpot_ms is None and self.e2el_ms is None


@dataclass(frozen=True)
class Window:
    """The stretch of a run that holds the offered load, for the `*_window` figures.

    - `arrivals` (open loop): from the start to when the next arrival after the last one sent
      was due (or the end of `--duration`), so N arrivals at rate r span N/r seconds on
      average. Every request sent arrived in it, and counts however late it finished.
    - `full concurrency` (closed loop): from the start until the first worker had no more
      request to send, so every worker was busy throughout. Only requests that ended inside it
      count: completions per second while the load was whole.

    `end` is on the records' clock (`time.perf_counter()`).
    """

    kind: Literal["arrivals", "full concurrency"]
    seconds: float
    end: float

    def holds(self, record: RequestRecord) -> bool:
        return self.kind == "arrivals" or record.done <= self.end


@dataclass(frozen=True)
class Stats:
    """Distribution of one latency metric, in milliseconds; infinities stand for failures."""

    count: int
    mean: float
    median: float
    std: float
    max: float
    percentiles: dict[float, float]

    @classmethod
    def of(cls, seconds: Sequence[float], percentiles: Sequence[float]) -> Stats:
        if not seconds:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, {p: nan for p in percentiles})
        ms = np.asarray(seconds, dtype=float) * 1000.0
        finite = np.isfinite(ms)
        if finite.all():
            return cls(
                count=len(ms),
                mean=float(np.mean(ms)),
                median=float(np.median(ms)),
                std=float(np.std(ms)),
                max=float(np.max(ms)),
                percentiles={p: float(np.percentile(ms, p)) for p in percentiles},
            )
        # Linear interpolation towards an infinite neighbour gives infinity, towards a finite
        # one the finite value: computed with a far stand-in, anything past the largest finite
        # value is infinite.
        top = float(np.max(ms[finite])) if finite.any() else -math.inf
        far = np.where(finite, ms, _FAR)

        def percentile(p: float) -> float:
            value = float(np.percentile(far, p))
            return math.inf if value > top else value

        return cls(
            count=len(ms),
            mean=math.inf,
            median=percentile(50),
            std=math.nan,
            max=math.inf,
            percentiles={p: percentile(p) for p in percentiles},
        )


@dataclass(frozen=True)
class Summary:
    """Everything `wave bench` reports for one load level.

    Throughputs and goodput without a suffix are vLLM's, over `duration_s` (the full run);
    `*_window` ones are over `window` (None when no window was given).
    """

    completed: int
    failed: int
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    request_goodput: float | None
    good_fraction: float | None
    token_counts: str  # "usage", "chunks" (fallback), "mixed" or "none"
    stats: dict[str, Stats] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # one-word reason -> count
    window: Window | None = None
    request_throughput_window: float | None = None
    output_throughput_window: float | None = None
    total_token_throughput_window: float | None = None
    request_goodput_window: float | None = None

    @property
    def error_rate(self) -> float:
        total = self.completed + self.failed
        return self.failed / total if total else 0.0

    def flat(self) -> dict[str, float]:
        """Scalar metrics by name, the names `--criteria` accepts."""
        values: dict[str, float] = {
            "completed": float(self.completed),
            "failed": float(self.failed),
            "error_rate": self.error_rate,
            "duration_s": self.duration_s,
            "request_tps": self.request_throughput,
            "output_tps": self.output_throughput,
            "total_tps": self.total_token_throughput,
            "input_tokens": float(self.total_input_tokens),
            "output_tokens": float(self.total_output_tokens),
        }
        if self.window is not None:
            values["window_s"] = self.window.seconds
            for name, value in (
                ("request_tps_window", self.request_throughput_window),
                ("output_tps_window", self.output_throughput_window),
                ("total_tps_window", self.total_token_throughput_window),
            ):
                if value is not None:
                    values[name] = value
        if self.request_goodput is not None and self.good_fraction is not None:
            values["goodput_rps"] = self.request_goodput
            values["good_fraction"] = self.good_fraction
            if self.request_goodput_window is not None:
                values["goodput_rps_window"] = self.request_goodput_window
        for metric, stats in self.stats.items():
            values[f"mean_{metric}_ms"] = stats.mean
            values[f"median_{metric}_ms"] = stats.median
            values[f"std_{metric}_ms"] = stats.std
            values[f"max_{metric}_ms"] = stats.max
            for p, value in stats.percentiles.items():
                values[f"p{p:g}_{metric}_ms"] = value
        return values


def summarize(
    records: Sequence[RequestRecord],
    duration_s: float,
    slo: Slo | None = None,
    percentiles: Sequence[float] = (50, 90, 95, 99),
    window: Window | None = None,
) -> Summary:
    """The metrics of one level's records over `duration_s` seconds (and over `window`)."""
    ok = [r for r in records if r.ok and r.chunk_times]
    failed = [r for r in records if not (r.ok and r.chunk_times)]
    ttfts: list[float] = []
    e2els: list[float] = []
    tpots: list[float] = []
    tpots_for_goodput: list[float] = []
    itls: list[float] = []
    for record in ok:
        ttft, e2el = record.chunk_times[0] - record.scheduled, record.chunk_times[-1] - record.scheduled
        ttfts.append(ttft)
        e2els.append(e2el)
        tpot = 0.0
        if record.output_tokens > 1:
            tpot = (e2el - ttft) / (record.output_tokens - 1)
            tpots.append(tpot)
        tpots_for_goodput.append(tpot)
        times = record.chunk_times
        itls.extend(later - earlier for earlier, later in zip(times, times[1:], strict=False))
    lags = [r.dispatch_lag for r in records if r.sent]
    input_tokens = sum(r.prompt_tokens for r in ok)
    output_tokens = sum(r.output_tokens for r in ok)
    per_second = 1.0 / duration_s if duration_s > 0 else 0.0
    good_records: list[RequestRecord] | None = None
    goodput = fraction = None
    if slo is not None and not slo.empty:
        good_records = [
            record
            for record, ttft, tpot, e2el in zip(ok, ttfts, tpots_for_goodput, e2els, strict=True)
            if _meets(ttft, slo.ttft_ms) and _meets(tpot, slo.tpot_ms) and _meets(e2el, slo.e2el_ms)
        ]
        goodput = len(good_records) * per_second
        fraction = len(good_records) / len(records) if records else 0.0
    sources = {r.tokens_from_usage for r in ok}
    errors: dict[str, int] = {}
    failures: dict[str, int] = {}
    for record in failed:
        key = record.error or "no choices chunk in the answer"
        errors[key] = errors.get(key, 0) + 1
        reason = record.failure or ("other" if record.error else "no_choices")
        failures[reason] = failures.get(reason, 0) + 1
    failed_times = [math.inf] * len(failed)
    summary = Summary(
        completed=len(ok),
        failed=len(failed),
        duration_s=duration_s,
        total_input_tokens=input_tokens,
        total_output_tokens=output_tokens,
        request_throughput=len(ok) * per_second,
        output_throughput=output_tokens * per_second,
        total_token_throughput=(input_tokens + output_tokens) * per_second,
        request_goodput=goodput,
        good_fraction=fraction,
        token_counts=_token_source(sources),
        stats={
            "ttft": Stats.of(ttfts, percentiles),
            "tpot": Stats.of(tpots, percentiles),
            "itl": Stats.of(itls, percentiles),
            "e2el": Stats.of(e2els, percentiles),
            "dispatch_lag": Stats.of(lags, percentiles),
            "ttft_all": Stats.of(ttfts + failed_times, percentiles),
            "tpot_all": Stats.of(tpots + failed_times, percentiles),
            "e2el_all": Stats.of(e2els + failed_times, percentiles),
        },
        errors=errors,
        failures=failures,
    )
    if window is None:
        return summary
    return _with_window(summary, window, ok, good_records)


def _with_window(
    summary: Summary, window: Window, ok: Sequence[RequestRecord], good: Sequence[RequestRecord] | None
) -> Summary:
    per_second = 1.0 / window.seconds if window.seconds > 0 else 0.0
    inside = [r for r in ok if window.holds(r)]
    input_tokens = sum(r.prompt_tokens for r in inside)
    output_tokens = sum(r.output_tokens for r in inside)
    return replace(
        summary,
        window=window,
        request_throughput_window=len(inside) * per_second,
        output_throughput_window=output_tokens * per_second,
        total_token_throughput_window=(input_tokens + output_tokens) * per_second,
        request_goodput_window=(
            None if good is None else sum(1 for r in good if window.holds(r)) * per_second
        ),
    )


def _token_source(sources: set[bool]) -> str:
    if not sources:
        return "none"
    return "usage" if sources == {True} else "chunks" if sources == {False} else "mixed"


def _meets(seconds: float, limit_ms: float | None) -> bool:
    return limit_ms is None or seconds * 1000.0 <= limit_ms
