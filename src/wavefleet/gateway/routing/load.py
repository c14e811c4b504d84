"""How full a backend is, on one scale for every engine: requests in it / requests it holds at
once, 0 = idle, 1 = full.

A 128-slot vLLM with 8 requests (0.06) is emptier than a 4-slot llama.cpp with 2 (0.5): raw
request counts would say the opposite. Requests in it: the engine's own count (running +
waiting, from the last poll, every client's) plus what this gateway sent there since that
poll, or the gateway's in-flight count, whichever is larger, so the score moves with every
dispatch, not once a poll. Requests it holds at once: its slots (reported, else profiled,
else assumed), and, when the engine reports KV-cache usage, no more than its KV cache holds
at the running mix (running / usage): an assumed 256 slots says nothing about a GPU whose
cache fills at 60 sequences. Both figures are from the same poll, so a KV gauge that moves
once a poll scales the fresh count instead of standing in for it.
"""

from __future__ import annotations

from collections.abc import Iterable

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.snapshot import LoadSnapshot
from wavefleet.gateway.routing.base import Candidate, FleetView

__all__ = ["capacity", "healthy", "kv_holds", "load", "runs_on_gpu", "scores"]


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


def kv_holds(snapshot: LoadSnapshot) -> float | None:
    """Sequences the engine's KV cache holds at the running mix (running / KV usage), when the
    engine reports both; None otherwise."""
    kv, running = snapshot.kv_usage, snapshot.running
    return running / kv if kv and running else None


def load(config: BackendConfig, snapshot: LoadSnapshot, inflight: int, sent_since_poll: int = 0) -> float:
    """Requests in the backend over the requests it holds at once.

    Requests in it: the engine's running + waiting at the last poll plus `sent_since_poll` (sent
    minus finished since that poll), or the gateway's `inflight`, whichever is larger. Requests
    it holds at once: `capacity`, or fewer when the KV cache fills first: running / KV usage,
    the sequences the cache holds at the running mix."""
    reported = (snapshot.running or 0) + (snapshot.waiting or 0)
    occupancy = max(reported + sent_since_poll, inflight)
    slots = capacity(config, snapshot)
    kv, running = snapshot.kv_usage, snapshot.running
    if kv and running and running / kv < slots:
        return occupancy * kv / running  # occupancy / kv_holds(snapshot), without the rounding
    return occupancy / slots


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
