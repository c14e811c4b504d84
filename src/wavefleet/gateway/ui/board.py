"""What the status page shows, as one JSON-ready dict built from the gateway's own objects.

    board = StatusBoard(config=config, monitor=monitor, table=table, metrics=metrics, inflight=inflight)
    status = await board.status()        # backends, per-model rates and latencies, last errors, devices

Nothing here scrapes text: backend states come from the monitor's snapshots, counts from the
prometheus-client counters' `collect()`, latencies from the gateway's own histograms' buckets.
Rates, error rates and percentiles are over a sliding window (`WINDOW_S`, shorter right after the
page is first opened): the board keeps a sample of the cumulative counts at most every
`SAMPLE_EVERY_S` and compares the counts now with the oldest sample still inside the window
(none after a long pause: the first look then shows no rate rather than one over the pause).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.energy import EnergyMeter, ModelTotals
from wavefleet.gateway.metrics import GatewayMetrics, LabelledHistogram
from wavefleet.gateway.model_table import ModelTable
from wavefleet.gateway.monitor.snapshot import BackendMonitor, LoadSnapshot
from wavefleet.telemetry import names
from wavefleet.telemetry.exporter import Reading, Telemetry
from wavefleet.telemetry.samples import Metric

__all__ = [
    "BEFORE_ROUTING",
    "SAMPLE_EVERY_S",
    "WINDOW_S",
    "DeviceReadings",
    "StatusBoard",
    "backend_state",
    "devices_of",
    "quantile",
]

WINDOW_S = 60.0
SAMPLE_EVERY_S = 1.0
TELEMETRY_EVERY_S = 2.0  # the page polls every 2 s: NVML is read at most that often, whoever asks
BEFORE_ROUTING = (
    "(no backend chosen)"  # requests refused before any backend took them (bad body, no key, none healthy)
)


def backend_state(snapshot: LoadSnapshot) -> str:
    """failed (its polls fail), open (its breaker holds requests off), half-open (one probe
    request may go) or healthy."""
    if not snapshot.healthy:
        return "failed"
    if snapshot.breaker == "open":
        return "open"
    if snapshot.breaker == "half-open":
        return "half-open"
    return "healthy"


def quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The q-quantile of a histogram (per-bucket counts, the last bucket above every bound),
    interpolated linearly inside its bucket as Prometheus' histogram_quantile does; None if empty.
    A quantile in the open top bucket is its lower bound."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index > 0 else 0.0
            return lower + (bounds[index] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]


@dataclass(frozen=True, kw_only=True)
class _Sample:
    at: float
    requests: dict[str, tuple[float, float]]  # model -> (answered, answered with 5xx)
    ttft: dict[str, list[int]]
    tpot: dict[str, list[int]]
    energy: dict[str, ModelTotals] = field(default_factory=dict)


def _by_model(histogram: LabelledHistogram) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for (model, _backend), series in histogram.series.items():
        into = out.setdefault(model, [0] * len(series.counts))
        for index, count in enumerate(series.counts):
            into[index] += count
    return out


def _minus(now: Sequence[int], then: Sequence[int] | None) -> list[int]:
    return [a - b for a, b in zip(now, then, strict=True)] if then is not None else list(now)


@dataclass(kw_only=True)
class DeviceReadings:
    """One device's readings for the page; None where the device does not report it."""

    name: str
    collector: str
    power_w: float | None = None
    power_estimated: bool = False
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    temperature_c: float | None = None
    utilisation_pct: float | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "collector": self.collector,
            "power_w": self.power_w,
            "power_estimated": self.power_estimated,
            "memory_used_mib": self.memory_used_mib,
            "memory_total_mib": self.memory_total_mib,
            "temperature_c": self.temperature_c,
            "utilisation_pct": self.utilisation_pct,
        }


_MIB = 1024.0 * 1024.0
# metric -> (the DeviceReadings field it sets, the factor into the page's unit)
_FIELDS: dict[Metric, tuple[str, float]] = {
    names.DCGM_FB_USED: ("memory_used_mib", 1.0),
    names.DCGM_FB_TOTAL: ("memory_total_mib", 1.0),
    names.DCGM_GPU_TEMP: ("temperature_c", 1.0),
    names.DCGM_GPU_UTIL: ("utilisation_pct", 1.0),
    names.CPU_UTILIZATION: ("utilisation_pct", 100.0),
    names.JETSON_GPU_UTILIZATION: ("utilisation_pct", 100.0),
    names.JETSON_RAM_USED: ("memory_used_mib", 1.0 / _MIB),
    names.JETSON_RAM_TOTAL: ("memory_total_mib", 1.0 / _MIB),
}


def _device_name(collector: str, labels: Mapping[str, str]) -> str:
    if "gpu" in labels:
        return f"GPU {labels['gpu']} {labels.get('modelName', '')}".strip()
    return "Jetson board" if collector == "tegrastats" else "CPU"


def devices_of(readings: Sequence[Reading]) -> list[DeviceReadings]:
    """Power, memory, temperature and utilisation per device, from the collectors' samples."""
    devices: dict[tuple[str, str], DeviceReadings] = {}
    for reading in readings:
        for sample in reading.samples:
            metric, value, labels = sample.metric, sample.value, sample.labels
            name = _device_name(reading.collector, labels)
            device = devices.get((reading.collector, name))
            if device is None:
                device = DeviceReadings(name=name, collector=reading.collector)
            if metric in _FIELDS:
                field_name, factor = _FIELDS[metric]
                setattr(device, field_name, value * factor)
            elif metric == names.DCGM_POWER_USAGE:
                device.power_w = value
            elif metric == names.GPU_ENERGY_POWER:  # present only where power usage is not
                device.power_w = value if device.power_w is None else device.power_w
            elif metric == names.CPU_ESTIMATED_POWER:
                device.power_w, device.power_estimated = value, True
            elif metric == names.JETSON_POWER and labels.get("rail") == "total":
                device.power_w = value
            elif metric == names.JETSON_TEMPERATURE:  # the hottest zone
                device.temperature_c = (
                    value if device.temperature_c is None else max(device.temperature_c, value)
                )
            elif metric == names.RAPL_POWER and labels.get("zone", "").startswith("package"):
                # the package zones are the CPUs; core and uncore lie inside them, DRAM beside them
                device.power_w = (device.power_w or 0.0) + value
            else:
                continue  # not shown: no device entry for it
            devices[(reading.collector, name)] = device
    return list(devices.values())


@dataclass(kw_only=True)
class _TelemetryCache:
    telemetry: Telemetry
    read_at: float = float("-inf")
    devices: list[DeviceReadings] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def read(self, now: float) -> None:
        async with self.lock:
            if now - self.read_at < TELEMETRY_EVERY_S:
                return
            readings = await asyncio.to_thread(self.telemetry.read_each)  # NVML calls block
            self.read_at = now
            self.devices = devices_of(readings)
            self.errors = [f"{r.collector}: {r.error}" for r in readings if r.error]


class StatusBoard:
    """Builds the status page's JSON from the gateway's monitor, model table, metrics and telemetry."""

    def __init__(
        self,
        *,
        config: GatewayConfig,
        monitor: BackendMonitor,
        table: ModelTable,
        metrics: GatewayMetrics,
        inflight: Mapping[str, int],
        telemetry: Telemetry | None = None,
        meter: EnergyMeter | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._monitor = monitor
        self._table = table
        self._metrics = metrics
        self._inflight = inflight
        self._telemetry = _TelemetryCache(telemetry=telemetry) if telemetry is not None else None
        self._meter = meter
        self._clock, self._wall = clock, wall_clock
        self._started = clock()
        self._samples: deque[_Sample] = deque()

    async def status(self) -> dict[str, object]:
        now = self._clock()
        if self._telemetry is not None:
            await self._telemetry.read(now)
        backends = [self._backend(b.name, b.kind.value) for b in self._config.backends]
        models, window = self._models(now)
        healthy = sum(1 for b in backends if b["state"] == "healthy")
        return {
            "generated_at": self._wall(),
            "uptime_s": now - self._started,
            "policy": self._config.policy.value,
            "window_s": window,
            "summary": {"backends": len(backends), "healthy": healthy},
            "backends": backends,
            "models": models,
            "errors": [
                {"at": e.at, "model": e.model, "backend": e.backend, "status": e.status, "message": e.message}
                for e in reversed(self._metrics.errors.entries())
            ],
            "errors_total": self._metrics.errors.total,
            "telemetry": self._telemetry_json(),
            "energy": {
                "metered": self._meter is not None,
                "currency": self._meter.currency if self._meter is not None else None,
            },
        }

    def _backend(self, name: str, kind: str) -> dict[str, object]:
        snap = self._monitor.snapshot(name)
        return {
            "name": name,
            "kind": kind,
            "state": backend_state(snap),
            "models": list(self._table.models_of(name)),
            "inflight": self._inflight.get(name, 0),
            "running": snap.running,
            "waiting": snap.waiting,
            "kv_usage": snap.kv_usage,
            "poll_failures": snap.poll_failures,
            "error": snap.error if snap.poll_failures or not snap.healthy else "",
        }

    def _take_sample(self, now: float) -> _Sample:
        totals: dict[str, list[float]] = {}
        for family in self._metrics.requests.collect():
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                model = sample.labels["model"] or BEFORE_ROUTING
                counts = totals.setdefault(model, [0.0, 0.0])
                counts[0] += sample.value
                if sample.labels["status"].isdigit() and int(sample.labels["status"]) >= 500:
                    counts[1] += sample.value
        return _Sample(
            at=now,
            requests={m: (c[0], c[1]) for m, c in totals.items()},
            ttft=_by_model(self._metrics.ttft),
            tpot=_by_model(self._metrics.itl),
            energy=self._meter.by_model() if self._meter is not None else {},
        )

    def _models(self, now: float) -> tuple[list[dict[str, object]], float]:
        current = self._take_sample(now)
        if not self._samples or now - self._samples[-1].at >= SAMPLE_EVERY_S:
            self._samples.append(current)
        while len(self._samples) > 1 and now - self._samples[0].at > WINDOW_S:
            self._samples.popleft()
        base = self._samples[0]
        window = now - base.at
        served: dict[str, list[str]] = {}
        for backend in self._config.backends:
            for model in self._table.models_of(backend.name):
                served.setdefault(model, []).append(backend.name)
        rows = []
        for model in sorted(set(served) | set(current.requests)):
            answered, failed = current.requests.get(model, (0.0, 0.0))
            then_answered, then_failed = base.requests.get(model, (0.0, 0.0))
            recent, recent_failed = answered - then_answered, failed - then_failed
            ttft = _minus(current.ttft.get(model, []), base.ttft.get(model)) if model in current.ttft else []
            tpot = _minus(current.tpot.get(model, []), base.tpot.get(model)) if model in current.tpot else []
            ttft_bounds, tpot_bounds = self._metrics.ttft.bounds, self._metrics.itl.bounds
            rows.append(
                {
                    "model": model,
                    "backends": served.get(model, []),
                    "requests": int(answered),
                    "errors": int(failed),
                    "requests_per_s": recent / window if window > 0 else None,
                    "error_rate": recent_failed / recent if recent > 0 else None,
                    "ttft_p50_s": quantile(0.5, ttft_bounds, ttft) if ttft else None,
                    "ttft_p95_s": quantile(0.95, ttft_bounds, ttft) if ttft else None,
                    "tpot_p50_s": quantile(0.5, tpot_bounds, tpot) if tpot else None,
                    "tpot_p95_s": quantile(0.95, tpot_bounds, tpot) if tpot else None,
                    **self._energy(model, current, base, window),
                }
            )
        return rows, window

    def _energy(self, model: str, current: _Sample, base: _Sample, window: float) -> dict[str, float | None]:
        """Energy (the requests' own and their idle shares) and cost per hour and per 1,000
        generated tokens over the window; None where nothing was measured in it."""
        now = current.energy.get(model)
        then = base.energy.get(model) or ModelTotals()
        if now is None or window <= 0 or now.requests == then.requests:
            return {
                "wh_per_h": None,
                "cost_per_h": None,
                "wh_per_1k_tokens": None,
                "cost_per_1k_tokens": None,
            }
        wh = (now.energy_j + now.idle_j - then.energy_j - then.idle_j) / 3600.0
        cost = now.cost - then.cost
        tokens = now.completion_tokens - then.completion_tokens
        priced = self._meter is not None and self._meter.tariff is not None
        per_hour = 3600.0 / window
        return {
            "wh_per_h": wh * per_hour,
            "cost_per_h": cost * per_hour if priced else None,
            "wh_per_1k_tokens": wh * 1000 / tokens if tokens > 0 else None,
            "cost_per_1k_tokens": cost * 1000 / tokens if tokens > 0 and priced else None,
        }

    def _telemetry_json(self) -> dict[str, object]:
        if self._telemetry is None:
            return {
                "available": False,
                "note": "no telemetry: start wave serve with --telemetry",
                "devices": [],
            }
        devices = [d.to_json() for d in self._telemetry.devices]
        note = "; ".join(self._telemetry.errors) or (
            "" if devices else "no telemetry: no device found on the gateway's host"
        )
        return {"available": bool(devices), "note": note, "devices": devices}
