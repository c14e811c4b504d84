"""A host's collectors read together, and served to Prometheus.

`Telemetry.read()` reads every collector once. A collector that raises is reported down
(`wave_telemetry_collector_up 0`) and the others still answer; each read's CPU time is exported
(`wave_telemetry_collect_seconds`) so the collectors' own cost is visible. `PrometheusBridge`
turns the samples into metric families for prometheus_client, and `serve` answers /metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric as PromMetric
from prometheus_client.registry import Collector as PromCollector

from wavefleet.errors import UsageError
from wavefleet.telemetry import names
from wavefleet.telemetry.samples import Metric, MetricKind, Sample

__all__ = ["Collector", "PrometheusBridge", "Reading", "Served", "Telemetry", "serve"]


class Collector(Protocol):
    """What the fleet agent runs: read samples, tell the energy counted, let go of the hardware."""

    name: str

    def collect(self) -> list[Sample]: ...
    def energy(self) -> dict[str, float]: ...
    def close(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Reading:
    collector: str
    samples: list[Sample]
    cpu_s: float
    error: str | None = None


class Telemetry:
    """The collectors of one host."""

    def __init__(
        self, collectors: list[Collector], *, cpu_clock: Callable[[], float] = time.thread_time
    ) -> None:
        self.collectors = collectors
        self.cpu_clock = cpu_clock
        self._lock = threading.Lock()

    def read_each(self) -> list[Reading]:
        """One read of every collector, each with the CPU time it took."""
        out = []
        with self._lock:  # concurrent scrapes would interleave counters' deltas
            for collector in self.collectors:
                begin = self.cpu_clock()
                try:
                    samples, error = collector.collect(), None
                except Exception as exc:  # a collector's fault must not take the others down
                    samples, error = [], f"{type(exc).__name__}: {exc}"
                out.append(
                    Reading(
                        collector=collector.name, samples=samples, cpu_s=self.cpu_clock() - begin, error=error
                    )
                )
        return out

    def read(self) -> list[Sample]:
        samples = []
        for reading in self.read_each():
            labels = {"collector": reading.collector}
            samples += reading.samples
            samples.append(Sample(names.COLLECTOR_UP, 0.0 if reading.error else 1.0, labels))
            samples.append(Sample(names.SCRAPE_SECONDS, reading.cpu_s, labels))
        return samples

    def energy(self) -> dict[str, float]:
        merged: dict[str, float] = {}
        for collector in self.collectors:
            merged |= collector.energy()
        return merged

    def close(self) -> None:
        for collector in self.collectors:
            collector.close()


class PrometheusBridge(PromCollector):
    """Telemetry's samples as prometheus_client metric families, read at each scrape."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def collect(self) -> Iterator[PromMetric]:
        families: dict[str, tuple[Metric, list[Sample]]] = {}
        for sample in self.telemetry.read():
            families.setdefault(sample.metric.name, (sample.metric, []))[1].append(sample)
        for metric, samples in families.values():
            yield _family(metric, samples)


def _family(metric: Metric, samples: list[Sample]) -> PromMetric:
    if metric.kind is MetricKind.COUNTER:
        # prometheus_client names a counter family without _total and its samples with it
        family = PromMetric(metric.name.removesuffix("_total"), metric.help, "counter")
    elif metric.kind is MetricKind.UNTYPED_COUNTER:
        family = PromMetric(metric.name, metric.help, "unknown")
    else:
        family = PromMetric(metric.name, metric.help, "gauge")
    for sample in samples:
        family.add_sample(metric.name, dict(sample.labels), sample.value)
    return family


@dataclass(frozen=True)
class Served:
    host: str
    port: int
    stop: Callable[[], None]


def serve(telemetry: Telemetry, *, host: str, port: int) -> Served:
    """Answer /metrics on host:port (0: any free port) from a background thread."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PrometheusBridge(telemetry))
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port") from exc

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return Served(host, server.server_address[1], stop)
