"""How full a backend is, on one scale for every engine: occupied slots / slots, 0 = idle, 1 = full.

A 128-slot vLLM with 8 requests (0.06) is emptier than a 4-slot llama.cpp with 2 (0.5): raw
request counts would say the opposite. The engine's own numbers (running + waiting, from the
monitor) count requests from every client; the gateway's in-flight count is fresh between
polls. The larger of the two is used, so a burst between polls does not all land on the
backend that looked idle at the last poll.
"""

from __future__ import annotations

from collections.abc import Iterable

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.snapshot import LoadSnapshot
from wavefleet.gateway.routing.base import Candidate, FleetView

__all__ = ["healthy", "capacity", "load", "runs_on_gpu", "scores"]


def runs_on_gpu(config: BackendConfig) -> bool:
    """`gpu` when the config says; otherwise a guess from the engine kind (engines table)."""
    return config.gpu if config.gpu is not None else config.kind.traits.needs_gpu


def capacity(config: BackendConfig, snapshot: LoadSnapshot) -> int:
    """Sequences the backend runs at once: reported, else profiled, else the engine's default
    (the engines table's slots: its default concurrency, an estimate, not a measurement)."""
    if snapshot.slots_total:
        return snapshot.slots_total
    if config.profile is not None:
        return config.profile.max_num_seqs
    return config.kind.traits.slots.count


def load(config: BackendConfig, snapshot: LoadSnapshot, inflight: int) -> float:
    """Occupancy in slots (running + waiting, or the gateway's in-flight count) over capacity,
    raised to the KV cache usage when the engine reports it (a full cache queues new work too)."""
    reported = (snapshot.running or 0) + (snapshot.waiting or 0)
    occupancy = max(reported, inflight) / capacity(config, snapshot)
    if snapshot.kv_usage is not None and snapshot.kv_usage > occupancy:
        return snapshot.kv_usage
    return occupancy


def healthy(candidates: Iterable[Candidate], view: FleetView) -> list[Candidate]:
    """The candidates whose backend was healthy at its last poll and whose breaker is not open.

    Policies do not ask `monitor.available()`: in half-open state that grants the breaker's one
    probe request, so the gateway asks it right before it sends (and skips a backend it refuses).
    """
    out = []
    for candidate in candidates:
        snapshot = view.monitor.snapshot(candidate.backend)
        if snapshot.healthy and snapshot.breaker != "open":
            out.append(candidate)
    return out


def scores(candidates: Iterable[Candidate], view: FleetView) -> dict[str, float]:
    """Load of each candidate's backend."""
    return {
        c.backend: load(
            view.backends[c.backend], view.monitor.snapshot(c.backend), view.inflight.get(c.backend, 0)
        )
        for c in candidates
    }
