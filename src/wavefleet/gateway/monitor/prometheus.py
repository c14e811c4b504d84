"""Prometheus text exposition, read with prometheus_client's own parser.

Engines differ in names and labels, not in format, so every dialect parses through here and then
picks its gauges out by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["MetricsText", "parse_metrics"]


@dataclass(frozen=True, slots=True)
class MetricsText:
    """Samples by sample name (counters keep their `_total`), each as (labels, value)."""

    samples: Mapping[str, tuple[tuple[Mapping[str, str], float], ...]]

    def has(self, name: str) -> bool:
        return name in self.samples

    def total(self, name: str, **label_filter: str) -> float | None:
        """Sum of `name` over its label sets (e.g. vLLM's `engine` under data parallelism)."""
        values = self.values(name, **label_filter)
        return sum(values) if values else None

    def mean(self, name: str, **label_filter: str) -> float | None:
        values = self.values(name, **label_filter)
        return sum(values) / len(values) if values else None

    def values(self, name: str, **label_filter: str) -> list[float]:
        return [
            value
            for labels, value in self.samples.get(name, ())
            if all(labels.get(k) == v for k, v in label_filter.items())
        ]

    def labels(self, name: str) -> list[Mapping[str, str]]:
        return [labels for labels, _ in self.samples.get(name, ())]


def parse_metrics(text: str) -> MetricsText:
    """Parse exposition text; raises ValueError on text that is not Prometheus format."""
    samples: dict[str, list[tuple[Mapping[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return MetricsText({name: tuple(rows) for name, rows in samples.items()})
