"""Live state of the backends: health, load in each engine's metrics dialect, circuit breakers."""

from wavefleet.gateway.monitor.breaker import BreakerPolicy, BreakerState, BreakerStatus, CircuitBreaker
from wavefleet.gateway.monitor.polling import PollingMonitor
from wavefleet.gateway.monitor.snapshot import BackendMonitor, LoadSnapshot, StaticMonitor

__all__ = [
    "BackendMonitor",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStatus",
    "CircuitBreaker",
    "LoadSnapshot",
    "PollingMonitor",
    "StaticMonitor",
]
