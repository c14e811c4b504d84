"""The contract between the monitor (which polls engines) and the router (which reads their state).

The router never polls: it reads the latest `LoadSnapshot` of each backend, which the monitor
replaces whole after every poll, so a decision costs a dict lookup and no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Protocol

__all__ = ["BackendMonitor", "EngineTimings", "LoadSnapshot", "StaticMonitor"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineTimings:
    """What the engine has timed itself, summed since it started (its histograms' sums and counts).

    `prefill_s / prefill_tokens` is its prefill time per prompt token, `decode_s / decode_tokens`
    its time between two tokens of one stream. vLLM: prefill from scheduling to first token once
    requests have finished (its TTFT, queue included, until then); llama.cpp: its prompt and
    generation timers. `requests` is how many requests the prefill figure covers, if known.
    """

    requests: int | None
    prefill_tokens: float
    prefill_s: float
    decode_tokens: float
    decode_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadSnapshot:
    """One backend's state as last seen. `None` means the engine does not report that number."""

    backend: str
    healthy: bool = True
    running: int | None = None  # sequences the engine is running (its own metric)
    waiting: int | None = None  # requests queued inside the engine
    kv_usage: float | None = None  # KV cache in use, 0..1
    slots_total: int | None = None  # llama.cpp total_slots, or vLLM max_num_seqs when known
    models: tuple[str, ...] = ()  # what its /v1/models lists
    model_states: tuple[tuple[str, str], ...] = ()  # a fleet agent's models and their states
    no_room: tuple[str, ...] = ()  # a fleet agent's models that could not load there now
    kv_capacity_tokens: int | None = None  # vLLM: KV cache blocks x block size (tells GPUs apart)
    timings: EngineTimings | None = None  # the engine's own timing counters, when it reports them
    updated_at: float = field(default_factory=time.monotonic)
    error: str = ""  # why it is unhealthy, for /health and logs
    breaker: str = "closed"  # circuit breaker: closed | open | half-open (PollingMonitor)
    poll_failures: int = 0  # polls failed in a row; `healthy` turns False at the monitor's threshold


class BackendMonitor(Protocol):
    """What the router needs from whatever keeps backend state."""

    def snapshot(self, backend: str) -> LoadSnapshot:
        """The latest state of `backend` (a healthy empty snapshot if never polled)."""
        ...

    def available(self, backend: str) -> bool:
        """Healthy and not held open by its circuit breaker: may receive a request now."""
        ...

    def record_outcome(self, backend: str, ok: bool) -> None:
        """Tell the circuit breaker how a request to `backend` went."""
        ...

    def release(self, backend: str) -> None:
        """A request `available()` let through ended with no outcome (its client left): a
        half-open breaker may grant its probe to the next request at once."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class StaticMonitor:
    """A monitor that polls nothing: state is set by hand. For tests and for `--no-poll` runs."""

    def __init__(self, snapshots: dict[str, LoadSnapshot] | None = None) -> None:
        self._snapshots: dict[str, LoadSnapshot] = dict(snapshots or {})
        self.outcomes: list[tuple[str, bool]] = []

    def set(self, backend: str, **changes: object) -> None:
        current = self._snapshots.get(backend, LoadSnapshot(backend=backend))
        self._snapshots[backend] = replace(current, **changes)  # type: ignore[arg-type]

    def snapshot(self, backend: str) -> LoadSnapshot:
        return self._snapshots.get(backend) or LoadSnapshot(backend=backend)

    def available(self, backend: str) -> bool:
        return self.snapshot(backend).healthy

    def record_outcome(self, backend: str, ok: bool) -> None:
        self.outcomes.append((backend, ok))

    def release(self, backend: str) -> None:
        return None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
