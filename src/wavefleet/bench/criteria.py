"""Success criteria such as 'p95_ttft_ms<50,output_tps>120,error_rate<0.01', checked per level."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wavefleet.bench.metrics import LATENCY_METRICS, Summary
from wavefleet.errors import UsageError

__all__ = ["Criterion", "CriterionVerdict", "check", "metric_names", "parse_criteria"]

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_EXPRESSION = re.compile(r"^\s*([a-z0-9_.]+)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*$")
_SCALARS = (
    "completed",
    "failed",
    "error_rate",
    "duration_s",
    "request_tps",
    "output_tps",
    "total_tps",
    "input_tokens",
    "output_tokens",
    "window_s",
    "request_tps_window",
    "output_tps_window",
    "total_tps_window",
)
_GOODPUT = ("goodput_rps", "goodput_rps_window", "good_fraction")
_LATENCY = re.compile(r"^(mean|median|std|max|p(\d+(?:\.\d+)?))_(" + "|".join(LATENCY_METRICS) + r")_ms$")


@dataclass(frozen=True)
class Criterion:
    metric: str
    op: str
    threshold: float
    percentile: float | None  # the percentile a pNN_ metric needs computed

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


@dataclass(frozen=True)
class CriterionVerdict:
    """One criterion checked against one load level's summary."""

    level: str
    criterion: Criterion
    value: float
    passed: bool


def metric_names(with_goodput: bool = True) -> list[str]:
    """The names `--criteria` accepts, with pNN standing for any percentile."""
    names = list(_SCALARS) + (list(_GOODPUT) if with_goodput else [])
    for metric in LATENCY_METRICS:
        names += [f"{stat}_{metric}_ms" for stat in ("mean", "median", "std", "max", "pNN")]
    return names


def parse_criteria(text: str, *, with_goodput: bool) -> list[Criterion]:
    """Parse comma-separated `metric<op>number` expressions; UsageError names a bad one."""
    criteria = []
    for expression in (part for part in text.split(",") if part.strip()):
        match = _EXPRESSION.match(expression.lower())
        if not match:
            raise _malformed(
                expression, "write it as metric<op>number, with op one of < <= > >=", with_goodput
            )
        name, op, number = match.groups()
        latency = _LATENCY.match(name)
        if name in _GOODPUT and not with_goodput:
            raise _malformed(
                expression, f"{name} needs SLOs: add --goodput ttft:MS tpot:MS e2el:MS", with_goodput
            )
        if not (latency or name in _SCALARS or name in _GOODPUT):
            raise _malformed(expression, f"unknown metric {name!r}", with_goodput)
        percentile = float(latency.group(2)) if latency and latency.group(2) else None
        if percentile is not None and not 0 <= percentile <= 100:
            raise _malformed(expression, "percentiles run from p0 to p100", with_goodput)
        criteria.append(Criterion(name, op, float(number), percentile))
    if not criteria:
        raise _malformed(text, "no criteria given", with_goodput)
    return criteria


def _malformed(expression: str, why: str, with_goodput: bool) -> UsageError:
    names = ", ".join(metric_names(with_goodput))
    return UsageError(f"bad criterion {expression.strip()!r}: {why}.\nvalid metrics: {names}")


def check(criteria: Sequence[Criterion], level: str, summary: Summary) -> list[CriterionVerdict]:
    """Each criterion against one level's summary; a missing or NaN value fails."""
    values = summary.flat()
    verdicts = []
    for criterion in criteria:
        value = values.get(_canonical(criterion), math.nan)
        passed = not math.isnan(value) and _OPERATORS[criterion.op](value, criterion.threshold)
        verdicts.append(CriterionVerdict(level, criterion, value, passed))
    return verdicts


def _canonical(criterion: Criterion) -> str:
    # Summary.flat() writes percentiles with :g, so p95.0 and p95 name the same value.
    if criterion.percentile is None:
        return criterion.metric
    metric = _LATENCY.match(criterion.metric)
    assert metric is not None
    return f"p{criterion.percentile:g}_{metric.group(3)}_ms"
