"""The gateway's Prometheus metrics, in a registry of its own per app (no global registry).

Per-request updates are kept to a few dict lookups and integer additions: counters are
prometheus-client children cached per label set, and latency histograms are `Histogram`s
below, updated without locks since the gateway runs on one event loop. Backend state is read from the monitor at scrape time, not per
request.

    wave_requests_total{model,backend,status}          status "499" = the client went away
                                                       model "(unlisted)" = a name no backend lists
    wave_request_duration_seconds{model,backend}       end to end, as the gateway saw it
    wave_time_to_first_token_seconds{model,backend}    streams: arrival to first data event out
    wave_inter_token_latency_seconds{model,backend}    streams: gaps between data-carrying chunks out
    wave_prompt_tokens_total / wave_completion_tokens_total{model,backend}   from `usage`
    wave_routing_decisions_total{backend,reason}       backend "" = none could take it
    wave_retries_total{backend}                        attempts that failed before the first byte
    wave_backend_{up,breaker_open,running,waiting,kv_usage,slots,load,inflight}{backend}
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.snapshot import BackendMonitor
from wavefleet.gateway.routing.load import capacity, load

__all__ = ["UNLISTED", "GatewayMetrics", "Histogram", "RequestSeries"]

UNLISTED = "(unlisted)"  # the model label of requests for names no backend lists

# vLLM's bucket edges (vllm/v1/metrics/loggers.py), with sub-millisecond edges added because a
# gateway in front of a fast upstream sees them.
TTFT_BUCKETS = (
    0.0005,
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
)
ITL_BUCKETS = (
    0.0005,
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
    80.0,
)
E2E_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
)


class _Buckets:
    __slots__ = ("counts", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.total = 0.0


class Histogram:
    """A labelled histogram updated without locks (the gateway runs on one event loop)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], *, buckets: Sequence[float]
    ) -> None:
        self.name, self.documentation = name, documentation
        self.labelnames = list(labelnames)
        self.bounds = list(buckets)
        self.series: dict[tuple[str, ...], _Buckets] = {}

    def labels(self, *values: str) -> _Buckets:
        series = self.series.get(values)
        if series is None:
            series = self.series[values] = _Buckets(len(self.bounds) + 1)
        return series

    def observe(self, series: _Buckets, value: float, n: int = 1) -> None:
        series.counts[bisect_left(self.bounds, value)] += n
        series.total += value * n

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [repr(b) for b in self.bounds] + ["+Inf"]
        for labels, series in self.series.items():
            running, cumulative = 0, []
            for edge, count in zip(edges, series.counts, strict=True):
                running += count
                cumulative.append((edge, float(running)))
            family.add_metric(list(labels), cumulative, series.total)
        return family


class RequestSeries:
    """Every per-request metric child for one (model, backend), fetched once per request."""

    __slots__ = (
        "completion_tokens",
        "e2e",
        "itl",
        "prompt_tokens",
        "statuses",
        "ttft",
        "_metrics",
        "_labels",
    )

    def __init__(self, metrics: GatewayMetrics, model: str, backend: str) -> None:
        self._metrics, self._labels = metrics, (model, backend)
        self.statuses: dict[str, object] = {}
        self.prompt_tokens = metrics.prompt_tokens.labels(model, backend)
        self.completion_tokens = metrics.completion_tokens.labels(model, backend)
        self.ttft = metrics.ttft.labels(model, backend)
        self.itl = metrics.itl.labels(model, backend)
        self.e2e = metrics.e2e.labels(model, backend)

    def count(self, status: str) -> None:
        child = self.statuses.get(status)
        if child is None:
            child = self.statuses[status] = self._metrics.requests.labels(*self._labels, status)
        child.inc()  # type: ignore[attr-defined]


class _Collector:
    """Hands the lock-free histograms and the backend gauges to the registry at scrape time."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        yield from (m.ttft.collect(), m.itl.collect(), m.e2e.collect())
        yield from m.backend_gauges()


class GatewayMetrics:
    """The counters and histograms the forwarder updates, and the backend gauges read at scrape time
    from the monitor and the in-flight counts."""

    def __init__(
        self,
        *,
        monitor: BackendMonitor,
        backends: Sequence[BackendConfig],
        inflight: Mapping[str, int],
        listed: Callable[[str], bool] = lambda model: True,
    ) -> None:
        self._monitor, self._backends, self._inflight = monitor, list(backends), inflight
        self._listed = listed  # model names a backend lists; others share UNLISTED
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter(
            "wave_requests", "Requests answered, by status", ["model", "backend", "status"], registry=r
        )
        self.prompt_tokens = Counter(
            "wave_prompt_tokens", "Prompt tokens (from usage)", ["model", "backend"], registry=r
        )
        self.completion_tokens = Counter(
            "wave_completion_tokens", "Completion tokens (from usage)", ["model", "backend"], registry=r
        )
        self.decisions = Counter(
            "wave_routing_decisions", "Routing decisions", ["backend", "reason"], registry=r
        )
        self.retries = Counter(
            "wave_retries", "Attempts that failed before the first byte", ["backend"], registry=r
        )
        self.ttft = Histogram(
            "wave_time_to_first_token_seconds",
            "Streams: arrival to first data event sent",
            ["model", "backend"],
            buckets=TTFT_BUCKETS,
        )
        self.itl = Histogram(
            "wave_inter_token_latency_seconds",
            "Streams: gaps between chunks of data events sent (vllm bench's ITL)",
            ["model", "backend"],
            buckets=ITL_BUCKETS,
        )
        self.e2e = Histogram(
            "wave_request_duration_seconds",
            "End-to-end request time at the gateway",
            ["model", "backend"],
            buckets=E2E_BUCKETS,
        )
        r.register(_Collector(self))
        self._series: dict[tuple[str, str], RequestSeries] = {}
        self._decisions: dict[tuple[str, str], object] = {}

    def series(self, model: str, backend: str) -> RequestSeries:
        """The metric children of (model, backend); a model name no backend lists (a client may send
        any to a backend that lists none) is labelled UNLISTED, so clients cannot add series."""
        if model and not self._listed(model):
            model = UNLISTED
        key = (model, backend)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = RequestSeries(self, model, backend)
        return series

    def decision(self, backend: str, reason: str) -> None:
        key = (backend, reason)
        child = self._decisions.get(key)
        if child is None:
            child = self._decisions[key] = self.decisions.labels(backend, reason)
        child.inc()  # type: ignore[attr-defined]

    def backend_gauges(self) -> Iterator[Metric]:
        names = ("up", "breaker_open", "running", "waiting", "kv_usage", "slots", "load", "inflight")
        helps = {
            "up": "Backend healthy at the last poll (1/0)",
            "breaker_open": "Circuit breaker open: no requests for a cool-down (1/0; half-open counts 0)",
            "running": "Sequences the engine runs (its own metric)",
            "waiting": "Requests queued in the engine",
            "kv_usage": "KV cache in use, 0..1",
            "slots": "Sequences the backend runs at once (reported, profiled or assumed)",
            "load": "Requests in the backend over what it holds at once (slots, capped by KV usage), as least-loaded sees it",
            "inflight": "Requests this gateway has open to the backend",
        }
        families = {n: GaugeMetricFamily(f"wave_backend_{n}", helps[n], labels=["backend"]) for n in names}
        for config in self._backends:
            name = config.name
            snap = self._monitor.snapshot(name)
            inflight = self._inflight.get(name, 0)
            families["up"].add_metric([name], 1.0 if snap.healthy else 0.0)
            families["breaker_open"].add_metric([name], 1.0 if snap.breaker == "open" else 0.0)
            if snap.running is not None:
                families["running"].add_metric([name], float(snap.running))
            if snap.waiting is not None:
                families["waiting"].add_metric([name], float(snap.waiting))
            if snap.kv_usage is not None:
                families["kv_usage"].add_metric([name], snap.kv_usage)
            families["slots"].add_metric([name], float(capacity(config, snap)))
            families["load"].add_metric([name], load(config, snap, inflight))
            families["inflight"].add_metric([name], float(inflight))
        yield from families.values()

    def render(self) -> bytes:
        return generate_latest(self.registry)
