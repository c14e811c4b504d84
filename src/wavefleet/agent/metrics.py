"""The fleet agent's Prometheus metrics (names and help in `telemetry.names`).

Events are counted as they happen (loads, cold-start phases, evictions, restarts); states,
requests and memory are read from the agent at scrape time:

    wave_engine_state{engine,model,state}                 1 for the state it is in, 0 for the others
    wave_engine_loads_total{model,outcome}                ready | failed | no_memory
    wave_engine_cold_start_seconds{model,phase}           memory, process, load, first_token, total
    wave_engine_evictions_total{model,reason}             memory, idle, keep_alive, unload, drain
    wave_engine_restarts_total{model}
    wave_engine_inflight{model}, wave_engine_waiting{model}
    wave_engine_memory_bytes{model,device,source}         estimate, reserved, buffers, process
    wave_engine_memory_estimate_error_ratio{model}
    wave_device_memory_bytes{device,kind}                 total, budget, reserved, free
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from wavefleet.telemetry import names
from wavefleet.telemetry.names import EngineState
from wavefleet.telemetry.samples import Metric as MetricName

if TYPE_CHECKING:
    from wavefleet.agent.host import Agent

__all__ = ["COLD_START_BUCKETS", "AgentCollector", "AgentMetrics"]

COLD_START_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class AgentMetrics:
    """The event counters, in `registry` (a new one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=False)
        r = self.registry
        self.loads = Counter(
            _base(names.ENGINE_LOADS), names.ENGINE_LOADS.help, ["model", "outcome"], registry=r
        )
        self.cold_start = Histogram(
            names.ENGINE_COLD_START.name,
            names.ENGINE_COLD_START.help,
            ["model", "phase"],
            buckets=COLD_START_BUCKETS,
            registry=r,
        )
        self.evictions = Counter(
            _base(names.ENGINE_EVICTIONS), names.ENGINE_EVICTIONS.help, ["model", "reason"], registry=r
        )
        self.restarts = Counter(
            _base(names.ENGINE_RESTARTS), names.ENGINE_RESTARTS.help, ["model"], registry=r
        )


def _base(metric: MetricName) -> str:
    name: str = metric.name
    return name.removesuffix("_total")  # prometheus_client adds _total to counters itself


class AgentCollector:
    """States, requests and memory, read from the agent at each scrape."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        status = self._agent.status(log_lines=0)
        state = GaugeMetricFamily(
            names.ENGINE_STATE.name, names.ENGINE_STATE.help, labels=["engine", "model", "state"]
        )
        inflight = GaugeMetricFamily(names.ENGINE_INFLIGHT.name, names.ENGINE_INFLIGHT.help, labels=["model"])
        waiting = GaugeMetricFamily(names.ENGINE_WAITING.name, names.ENGINE_WAITING.help, labels=["model"])
        memory = GaugeMetricFamily(
            names.ENGINE_MEMORY.name, names.ENGINE_MEMORY.help, labels=["model", "device", "source"]
        )
        error = GaugeMetricFamily(
            names.ENGINE_MEMORY_ERROR.name, names.ENGINE_MEMORY_ERROR.help, labels=["model"]
        )
        for model in status.models:
            engine = self._agent.engine_name(model.name)
            for each in EngineState:
                state.add_metric([engine, model.name, each.value], 1.0 if model.state is each else 0.0)
            inflight.add_metric([model.name], float(model.inflight))
            waiting.add_metric([model.name], float(model.waiting))
            m = model.memory
            for source, value in (
                ("estimate", m.estimate + m.estimate_host),
                ("reserved", m.reserved),
                ("buffers", m.buffers),
                ("process", m.process),
            ):
                if value is not None and not model.external:
                    memory.add_metric([model.name, m.device, source], float(value))
            if m.error is not None:
                error.add_metric([model.name], m.error)
        devices = GaugeMetricFamily(
            names.DEVICE_MEMORY.name, names.DEVICE_MEMORY.help, labels=["device", "kind"]
        )
        for device in status.devices:
            for kind, value in (
                ("total", device.total),
                ("budget", device.budget),
                ("reserved", device.reserved),
                ("free", device.free),
            ):
                devices.add_metric([device.name, kind], float(value))
        yield from (state, inflight, waiting, memory, error, devices)
