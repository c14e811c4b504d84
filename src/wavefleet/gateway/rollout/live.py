"""Live per-version metrics and the criteria a canary step is judged by.

Each version keeps its last requests (outcome, TTFT, TPOT, end-to-end time); a step's verdict
reads green's since the step began and blue's since the rollout began (blue's baseline).
Criteria use `wave bench --criteria` syntax on these live metrics:

    error_rate<0.02,p95_ttft_ms<2000          green's own numbers
    ratio.p95_ttft_ms<1.5                     green's over blue's (1.5: at most half again as slow)

Metrics measured live: completed, failed, error_rate, and mean/median/max/pNN of ttft, tpot and
e2el in ms. TTFT and TPOT come from streamed requests; e2el from all.
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from wavefleet.bench.criteria import Criterion, parse_criteria
from wavefleet.errors import UsageError
from wavefleet.gateway.rollout.state import Check

__all__ = [
    "DEFAULT_CRITERIA",
    "LiveCriterion",
    "Outcome",
    "VersionStats",
    "Window",
    "blue_baseline",
    "decided_failure",
    "default_min_requests",
    "judge",
    "parse_live_criteria",
]

DEFAULT_CRITERIA = "error_rate<0.02,ratio.p95_ttft_ms<2,ratio.mean_tpot_ms<2"
RATIO = "ratio."
_LIVE = ("ttft", "tpot", "e2el")
_SCALARS = ("completed", "failed", "error_rate")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_LATENCY_MIN = 10  # requests for a P95 that is not just the slowest one
_KEEP = 4096  # requests kept per version: enough for a P95 on any step a home fleet runs


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    at: float
    ok: bool
    ttft_s: float | None
    tpot_s: float | None
    e2el_s: float | None  # end to end, named as bench's e2el metric


class VersionStats:
    """One version's last requests."""

    def __init__(self, keep: int = _KEEP) -> None:
        self._samples: deque[Sample] = deque(maxlen=keep)
        self.total = 0
        self.failed = 0

    def widened(self, keep: int = _KEEP) -> VersionStats:
        """The same requests, keeping up to `keep` from now on."""
        wider = VersionStats(keep)
        wider._samples.extend(self._samples)
        wider.total, wider.failed = self.total, self.failed
        return wider

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)
        self.total += 1
        self.failed += 0 if sample.ok else 1

    def count(self, since: float) -> int:
        return sum(1 for s in self._samples if s.at >= since)

    def failures(self, since: float) -> int:
        return sum(1 for s in self._samples if s.at >= since and not s.ok)

    def summary(self, since: float) -> dict[str, float]:
        """completed, failed, error_rate and the latency statistics (ms) of requests since `since`."""
        window = [s for s in self._samples if s.at >= since]
        failed = sum(1 for s in window if not s.ok)
        out: dict[str, float] = {
            "completed": float(len(window) - failed),
            "failed": float(failed),
            "error_rate": failed / len(window) if window else math.nan,
        }
        for metric in _LIVE:
            values = np.array(
                [v * 1000 for s in window if s.ok and (v := getattr(s, f"{metric}_s")) is not None]
            )
            if values.size:
                out[f"mean_{metric}_ms"] = float(values.mean())
                out[f"median_{metric}_ms"] = float(np.median(values))
                out[f"max_{metric}_ms"] = float(values.max())
                for p in (50, 90, 95, 99):
                    out[f"p{p}_{metric}_ms"] = float(np.percentile(values, p))
        return out


@dataclass(frozen=True)
class LiveCriterion:
    criterion: Criterion
    ratio: bool  # green's value over blue's, not green's own

    def __str__(self) -> str:
        return f"{RATIO if self.ratio else ''}{self.criterion}"

    def key(self) -> str:
        c = self.criterion
        if c.percentile is None:
            return c.metric
        return f"p{c.percentile:g}_{c.metric.split('_', 1)[1]}"


def parse_live_criteria(text: str) -> list[LiveCriterion]:
    """`wave bench --criteria` expressions, each optionally `ratio.`-prefixed; UsageError names a
    bad one or a metric not measured live."""
    found: list[LiveCriterion] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        ratio = part.lower().startswith(RATIO)
        expression = part[len(RATIO) :] if ratio else part
        (criterion,) = parse_criteria(expression, with_goodput=False)
        live = criterion.metric in _SCALARS or any(criterion.metric.endswith(f"_{m}_ms") for m in _LIVE)
        if not live or (ratio and criterion.metric in ("completed", "failed")):
            raise UsageError(
                f"bad criterion {part!r}: {criterion.metric} is not measured live during a rollout; "
                f"use {', '.join(_SCALARS)} or mean/median/max/pNN of {', '.join(_LIVE)} (e.g. p95_ttft_ms), "
                "optionally as ratio.METRIC (green over blue)"
            )
        found.append(LiveCriterion(criterion, ratio))
    if not found:
        raise UsageError(f"no criteria given; for example {DEFAULT_CRITERIA}")
    return found


def judge(criteria: Sequence[LiveCriterion], green: dict[str, float], blue: dict[str, float]) -> list[Check]:
    """Each criterion on green's (or green over blue's) numbers. A value not measured (no
    streamed request, no blue baseline) is no evidence against green: it passes, saying so."""
    checks = []
    for live in criteria:
        key, c = live.key(), live.criterion
        value = green.get(key, math.nan)
        if live.ratio:
            base = blue.get(key, math.nan)
            value = value / base if base and not math.isnan(base) else math.nan
        if live.ratio and not blue:
            detail = "not evaluated: blue has no requests to compare with"
            checks.append(Check(name=str(live), passed=True, detail=detail))
            continue
        if math.isnan(value):
            checks.append(Check(name=str(live), passed=True, detail="not measured in this window"))
            continue
        passed = _OPERATORS[c.op](value, c.threshold)
        checks.append(Check(name=str(live), passed=passed, value=round(value, 4)))
    return checks


def blue_baseline(blue: VersionStats, since: float) -> tuple[dict[str, float], str]:
    """What green is compared with, and its basis: blue's requests since the rollout began when
    it had some (green beside blue), else blue's last requests before the rollout (a swap: blue
    took none beside green), else nothing, and ratio criteria are not evaluated."""
    during = blue.count(since)
    if during:
        return blue.summary(since), f"blue's {during} requests since the rollout began"
    before = blue.count(-math.inf)
    if before:
        return blue.summary(-math.inf), f"blue's last {before} requests before the rollout"
    return {}, "no blue requests: ratio criteria not evaluated"


def decided_failure(criteria: Sequence[LiveCriterion], *, failed: int, count: int, min_requests: int) -> bool:
    """Whether green's failures so far break an error-rate criterion however the step's remaining
    requests end: the rate over the `min_requests` the verdict waits for is already too high even
    if every request still to come succeeds. A step can then end at once, not after its window."""
    if failed == 0:
        return False
    best_case = failed / max(count, min_requests, 1)
    return any(
        live.criterion.metric == "error_rate"
        and not live.ratio
        and not _OPERATORS[live.criterion.op](best_case, live.criterion.threshold)
        for live in criteria
    )


def default_min_requests(criteria: Sequence[LiveCriterion]) -> int:
    """Green's requests a step waits for when the user gives none: the fewest in which a green
    failing at ten times the tightest error-rate budget shows a failure with 99 % probability
    (error_rate<0.02: 21, as 0.8**21 < 0.01, and one failure in 21 breaks the budget); at least
    10, so a percentile is not just the slowest request."""
    budgets = [
        live.criterion.threshold
        for live in criteria
        if live.criterion.metric == "error_rate" and not live.ratio and live.criterion.op in ("<", "<=")
    ]
    budget = min(budgets, default=0.0)
    if budget <= 0:
        return _LATENCY_MIN
    bad = min(0.5, 10 * budget)
    return max(_LATENCY_MIN, math.ceil(math.log(0.01) / math.log1p(-bad)))


class Outcome(StrEnum):
    """Where a baking window stands."""

    WAIT = "wait"  # neither its time nor its requests are in, and nothing is decided
    JUDGE = "judge"  # both are in: judge the criteria
    FAILED = "failed"  # green's failures already break an error-rate criterion
    NOT_ENOUGH_TRAFFIC = "not enough traffic"  # its maximum passed without its requests


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """One canary step's baking window: it ends on evidence, not on time alone. It lasts until
    both `bake_s` have passed and green has answered `min_requests`, at most `max_bake_s` (never
    less than `bake_s`); it ends at once when green's failures decide the step."""

    began: float
    bake_s: float
    max_bake_s: float
    min_requests: int

    @property
    def longest(self) -> float:
        return max(self.bake_s, self.max_bake_s)

    def decide(self, criteria: Sequence[LiveCriterion], green: VersionStats, now: float) -> Outcome:
        count = green.count(self.began)
        failed = green.failures(self.began)
        if decided_failure(criteria, failed=failed, count=count, min_requests=self.min_requests):
            return Outcome.FAILED
        elapsed = now - self.began
        if elapsed >= self.bake_s and count >= self.min_requests:
            return Outcome.JUDGE
        if elapsed >= self.longest:
            return Outcome.NOT_ENOUGH_TRAFFIC
        return Outcome.WAIT
