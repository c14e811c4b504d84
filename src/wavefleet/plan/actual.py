"""What the fleet drew, beside the plan's estimate: `wave plan --actual FILE`.

FILE is Prometheus' answer to a range query (`/api/v1/query_range`, result type `matrix`) of the
hosts' energy counters, as the fleet agents (`telemetry: {}`), `wave telemetry --serve` and
node_exporter export them, each series labelled `node` with its host (as `wave render`'s scrape
configuration labels them):

| metric | unit | counts as |
|---|---|---|
| `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` | mJ | a GPU, measured |
| `node_rapl_package_joules_total`, `node_rapl_dram_joules_total` | J | the CPU, measured |
| `wave_jetson_energy_joules_total` | J | a Jetson module, measured |
| `wave_cpu_estimated_energy_joules_total` | J | the CPU, a TDP estimate (flagged) |

Other series are ignored (RAPL's `core` and `uncore` zones are parts of the package). A series
scraped twice (by the agent and by node_exporter) counts once. A counter that goes down
restarted from zero (a driver reload): what it counted after the restart is added. Each host's
period runs from its first sample to its last; the plan's estimate (its devices' TDPs at full
load) is taken over the same hours.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wavefleet.errors import UsageError

__all__ = ["ENERGY_METRICS", "ActualDraw", "HostDraw", "MeasuredHost", "compare", "load_actual"]

# metric -> (joules per unit, a TDP estimate rather than a measurement)
ENERGY_METRICS: dict[str, tuple[float, bool]] = {
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": (1e-3, False),
    "node_rapl_package_joules_total": (1.0, False),
    "node_rapl_dram_joules_total": (1.0, False),
    "wave_jetson_energy_joules_total": (1.0, False),
    "wave_cpu_estimated_energy_joules_total": (1.0, True),
}
_SCRAPE_LABELS = frozenset({"job", "instance", "service"})  # where it was scraped from, not what
_QUERY_HINT = (
    "save Prometheus' answer to a range query of the energy counters, e.g. "
    "curl -sG http://prometheus:9090/api/v1/query_range --data-urlencode "
    "'query={__name__=~\"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION|node_rapl_(package|dram)_joules_total|"
    "wave_jetson_energy_joules_total|wave_cpu_estimated_energy_joules_total\"}' "
    "--data-urlencode start=2026-11-26T00:00:00Z --data-urlencode end=2026-12-03T00:00:00Z "
    "--data-urlencode step=5m"
)


class _Series(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metric: dict[str, str]
    values: list[tuple[float, str]]


@dataclass
class MeasuredHost:
    """One host's counters over the file's range."""

    host: str
    joules: float = 0.0
    start: float = math.inf
    end: float = -math.inf
    includes_estimate: bool = False
    by_metric: dict[str, list[float]] = field(default_factory=dict)  # metric -> [series, J, resets]


class HostDraw(BaseModel):
    """One host: the plan's estimate (device TDPs at full load) and what its counters counted,
    over the same period."""

    model_config = ConfigDict(extra="forbid")

    host: str
    start: str | None = Field(description="first sample, UTC (ISO 8601); None when not measured")
    end: str | None = Field(description="last sample, UTC")
    hours: float | None
    devices_tdp_w: float
    estimate_kwh: float | None = Field(description="devices' TDPs x the period's hours")
    estimate_cost: float | None
    measured_kwh: float | None = Field(description="what the counters counted over the period")
    measured_cost: float | None
    measured_mean_w: float | None
    measured_share_of_estimate: float | None
    currency: str
    includes_estimate: bool = Field(description="part of `measured` is a CPU's TDP estimate")
    sources: list[str] = Field(description="each metric counted: series, kWh, counter restarts")


class ActualDraw(BaseModel):
    """The plan's per-host estimate against the fleet's energy counters (`wave plan --actual`)."""

    model_config = ConfigDict(extra="forbid")

    file: str
    basis: str = Field(description="how both sides were computed")
    hosts: list[HostDraw]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


def _refuse(path: Path, problem: str) -> UsageError:
    return UsageError(f"--actual {path}: {problem}")


def load_actual(path: Path, *, hosts: Sequence[str]) -> dict[str, MeasuredHost]:
    """Each inventory host's counters in a Prometheus range-query answer (see the module doc);
    UsageError naming the file and the fix for anything else, or for hosts not in `hosts`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _refuse(path, f"cannot be read ({exc.strerror or exc}); {_QUERY_HINT}") from exc
    except UnicodeDecodeError as exc:
        raise _refuse(path, f"is not text: {exc}") from exc
    try:
        answer: Any = json.loads(text)
    except ValueError as exc:
        raise _refuse(path, f"is not JSON ({exc}); {_QUERY_HINT}") from exc
    if not isinstance(answer, dict) or "status" not in answer:
        raise _refuse(path, f"is not an answer of Prometheus' HTTP API; {_QUERY_HINT}")
    if answer.get("status") != "success":
        raise _refuse(
            path, f"Prometheus answered {answer.get('status')!r}: {answer.get('error', 'no error given')}"
        )
    data = answer.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    if kind != "matrix" or not isinstance(data, dict):
        raise _refuse(
            path,
            f"holds a {kind or 'missing'} result: give a range query's answer (/api/v1/query_range, a "
            "matrix of samples over time), not an instant query's",
        )
    try:
        result = [_Series.model_validate(item) for item in data.get("result") or []]
    except ValidationError as exc:
        problem = exc.errors()[0]
        if problem["type"].startswith("float"):
            raise _refuse(path, f"a sample's time is not a number: {problem['input']!r}") from exc
        raise _refuse(path, f"a series is not [{{metric, values}}]: {problem['msg']}") from exc
    return _measure(path, result, hosts)


def _measure(path: Path, result: list[_Series], hosts: Sequence[str]) -> dict[str, MeasuredHost]:
    by_slug = {_slug(h): h for h in hosts}
    measured: dict[str, MeasuredHost] = {}
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    strangers: set[str] = set()
    for item in result:
        name = item.metric.get("__name__", "")
        if name not in ENERGY_METRICS:
            continue
        node = item.metric.get("node")
        if not node:
            raise _refuse(
                path,
                f"a {name} series has no `node` label, so its host is unknown: scrape each host with "
                "`labels: {node: HOST}` (as `wave render`'s Prometheus configuration does)",
            )
        host = by_slug.get(_slug(node))
        if host is None:
            strangers.add(node)
            continue
        key = (name, frozenset((k, v) for k, v in item.metric.items() if k not in _SCRAPE_LABELS))
        if key in seen:
            continue
        seen.add(key)
        if len(item.values) < 2:
            raise _refuse(
                path,
                f"the {name} series of {node} has {len(item.values)} sample(s); an increase needs at least "
                "two: widen the query's range or shorten its step",
            )
        joules, resets = _increase(path, name, node, item.values)
        scale, estimate = ENERGY_METRICS[name]
        entry = measured.setdefault(host, MeasuredHost(host=host))
        entry.joules += joules * scale
        entry.start = min(entry.start, item.values[0][0])
        entry.end = max(entry.end, item.values[-1][0])
        entry.includes_estimate |= estimate
        counts = entry.by_metric.setdefault(name, [0.0, 0.0, 0.0])
        counts[0] += 1
        counts[1] += joules * scale
        counts[2] += resets
    if strangers:
        raise _refuse(
            path,
            f"its `node` labels name hosts the inventory does not have: {', '.join(sorted(strangers))} "
            f"(inventory hosts: {', '.join(hosts)}); give the inventory of that fleet, or query only its hosts",
        )
    if not measured:
        raise _refuse(
            path, f"holds no series of an energy counter ({', '.join(ENERGY_METRICS)}); {_QUERY_HINT}"
        )
    return measured


def _increase(path: Path, name: str, node: str, values: list[tuple[float, str]]) -> tuple[float, int]:
    """(what the counter counted over its samples, how many times it restarted)."""
    total, resets, previous = 0.0, 0, None
    for t, text in values:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise _refuse(
                path, f"the {name} series of {node} has a value that is not a number at {t:g}: {text!r}"
            )
        if previous is not None:
            if value >= previous:
                total += value - previous
            else:  # the counter started over from zero
                total += value
                resets += 1
        previous = value
    return total, resets


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compare(
    path: Path,
    measured: dict[str, MeasuredHost],
    *,
    tdp_w: dict[str, float],
    price_per_kwh: float,
    currency: str,
) -> ActualDraw:
    """Each inventory host (`tdp_w`: its devices' TDPs) with its estimate and measurement over
    the measured period."""
    rows = []
    for host, watts in tdp_w.items():
        m = measured.get(host)
        if m is None:
            rows.append(
                HostDraw(
                    host=host,
                    start=None,
                    end=None,
                    hours=None,
                    devices_tdp_w=watts,
                    estimate_kwh=None,
                    estimate_cost=None,
                    measured_kwh=None,
                    measured_cost=None,
                    measured_mean_w=None,
                    measured_share_of_estimate=None,
                    currency=currency,
                    includes_estimate=False,
                    sources=[f"no series for this host in {path.name}"],
                )
            )
            continue
        hours = (m.end - m.start) / 3600
        estimate = watts * hours / 1000
        kwh = m.joules / 3.6e6
        sources = []
        for name, (count, joules, resets) in sorted(m.by_metric.items()):
            restarts = (
                f", {int(resets)} reset{'s' if resets != 1 else ''} (counter restarted)" if resets else ""
            )
            flagged = ", a TDP estimate, not a measurement" if ENERGY_METRICS[name][1] else ""
            sources.append(f"{name}: {int(count)} series, {joules / 3.6e6:.3f} kWh{restarts}{flagged}")
        rows.append(
            HostDraw(
                host=host,
                start=_iso(m.start),
                end=_iso(m.end),
                hours=round(hours, 4),
                devices_tdp_w=watts,
                estimate_kwh=round(estimate, 6),
                estimate_cost=round(estimate * price_per_kwh, 6),
                measured_kwh=round(kwh, 6),
                measured_cost=round(kwh * price_per_kwh, 6),
                measured_mean_w=round(m.joules / (m.end - m.start), 3) if m.end > m.start else None,
                measured_share_of_estimate=round(kwh / estimate, 4) if estimate > 0 else None,
                currency=currency,
                includes_estimate=m.includes_estimate,
                sources=sources,
            )
        )
    return ActualDraw(
        file=str(path),
        basis=(
            "estimate: the host's device TDPs at full load over the measured period; measured: the "
            f"increase of its energy counters in {path.name} (Prometheus range query) from its first "
            f"sample to its last; both at the inventory's {price_per_kwh:g} {currency}/kWh"
        ),
        hosts=rows,
    )
