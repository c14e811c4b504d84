"""Live state of the backends: health, load in each engine's metrics dialect, circuit breakers."""

from wavefleet.gateway.monitor.snapshot import BackendMonitor, LoadSnapshot, StaticMonitor

__all__ = ["BackendMonitor", "LoadSnapshot", "StaticMonitor"]
