"""What a collector reads: samples of named metrics, one value and one label set each.

A collector returns a list of `Sample`s per scrape. The Prometheus exporter groups them into
families by `Metric`; `wave telemetry` prints them as a table. A value the hardware does not
report is simply not among the samples: absent, never zero. Why it is absent is a sample of its
own (`wave_telemetry_unsupported`), so a table or a dashboard can say "not supported" instead of
leaving a blank.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from enum import StrEnum

__all__ = ["Metric", "MetricKind", "Sample"]


class MetricKind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"  # the name ends in _total (Prometheus' convention)
    # A counter under a name without _total (DCGM's field names): typed "untyped" in the text
    # format, as prometheus_client can only declare counters whose name ends in _total.
    UNTYPED_COUNTER = "untyped"


@dataclass(frozen=True)
class Metric:
    """One metric family: its name, help text, type and the unit a table shows its values in."""

    name: str
    help: str
    _: KW_ONLY
    kind: MetricKind = MetricKind.GAUGE
    unit: str = ""

    def __post_init__(self) -> None:
        if (self.kind is MetricKind.COUNTER) != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counters, and only counters, end in _total")


@dataclass(frozen=True)
class Sample:
    metric: Metric
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)

    def label_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
