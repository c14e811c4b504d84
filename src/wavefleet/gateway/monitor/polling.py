"""PollingMonitor: one asyncio task per backend polls its health and load in its own dialect.

    monitor = PollingMonitor(config.backends, session, interval_s=config.poll_interval_s)
    await monitor.start()                 # first poll of every backend runs before this returns
    monitor.snapshot("desktop-vllm")      # latest LoadSnapshot, replaced whole after each poll
    monitor.available("desktop-vllm")     # healthy and its breaker lets a request through
    monitor.record_outcome("desktop-vllm", ok=False)   # the gateway reports each request
    await monitor.aclose()

A backend turns unhealthy after `down_after` failed polls in a row and healthy again on the next
good poll. Each backend polls on its own task with its own time budget, so a slow engine never
delays another's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import replace
from typing import Any

import aiohttp

from wavefleet.engines import Api
from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.breaker import BreakerPolicy, BreakerStatus, CircuitBreaker
from wavefleet.gateway.monitor.dialects import EngineLoad, HttpProbe, PollError, dialect_for
from wavefleet.gateway.monitor.dialects.base import base_url, models_from_json
from wavefleet.gateway.monitor.snapshot import LoadSnapshot

__all__ = ["PollingMonitor", "cancel_polls", "start_polls"]


async def start_polls(
    names: Sequence[str],
    poll: Callable[[str], Awaitable[object]],
    poll_forever: Callable[[str], Coroutine[Any, Any, None]],
    *,
    label: str,
) -> list[asyncio.Task[None]]:
    """Poll every name once (concurrently, so the first answer is known at start), then keep
    polling each on a task of its own (one slow target never delays another)."""
    await asyncio.gather(*(poll(name) for name in names))
    return [asyncio.create_task(poll_forever(name), name=f"{label}-{name}") for name in names]


async def cancel_polls(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class PollingMonitor:
    """Keeps every backend's LoadSnapshot fresh and its circuit breaker up to date."""

    def __init__(
        self,
        backends: Iterable[BackendConfig],
        session: aiohttp.ClientSession,
        interval_s: float,
        *,
        timeout_s: float = 2.0,
        down_after: int = 3,
        breaker: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backends = {b.name: b for b in backends}
        self._session = session
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._down_after = down_after
        self._clock = clock
        policy = breaker or BreakerPolicy()
        self._breakers = {name: CircuitBreaker(policy, clock) for name in self._backends}
        self._snapshots = {
            name: LoadSnapshot(backend=name, models=tuple(b.models), updated_at=clock())
            for name, b in self._backends.items()
        }
        self._polls = dict.fromkeys(self._backends, 0)
        self._tasks: list[asyncio.Task[None]] = []

    # -- what the router reads (no I/O) ------------------------------------------------------

    def snapshot(self, backend: str) -> LoadSnapshot:
        snapshot = self._snapshots.get(backend)
        if snapshot is None:
            return LoadSnapshot(backend=backend)
        if snapshot.breaker == "open":
            # An open breaker turns half-open when its cool-down ends, not at the next poll:
            # routers filter on this field, and with a long poll interval a stale "open" would
            # keep the backend from ever getting its probe request.
            self._sync_breaker(backend)
            snapshot = self._snapshots[backend]
        return snapshot

    def available(self, backend: str) -> bool:
        """Healthy and its breaker not open; in half-open this grants the one probe request."""
        snapshot = self.snapshot(backend)
        breaker = self._breakers.get(backend)
        if not snapshot.healthy:
            return False
        if breaker is None:
            return True
        allowed = breaker.allow()
        self._sync_breaker(backend)
        return allowed

    def record_outcome(self, backend: str, ok: bool) -> None:
        breaker = self._breakers.get(backend)
        if breaker is not None:
            breaker.record(ok)
            self._sync_breaker(backend)

    def release(self, backend: str) -> None:
        breaker = self._breakers.get(backend)
        if breaker is not None:
            breaker.release()

    def breaker_status(self, backend: str) -> BreakerStatus | None:
        """State, failure count and cool-down of `backend`'s breaker, for /health."""
        breaker = self._breakers.get(backend)
        return breaker.status() if breaker is not None else None

    def polls_done(self, backend: str) -> int:
        """How many polls of `backend` have finished (tests and startup wait on this)."""
        return self._polls.get(backend, 0)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Poll every backend once (concurrently), then keep polling each on its own task."""
        if not self._tasks:
            self._tasks = await start_polls(
                list(self._backends), self.poll, self._poll_forever, label="wave-monitor"
            )

    async def aclose(self) -> None:
        await cancel_polls(self._tasks)
        self._tasks = []

    # -- polling -----------------------------------------------------------------------------

    async def _poll_forever(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self._interval_s
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = loop.time() + self._interval_s  # the interval runs from poll start to poll start
            await self.poll(name)

    async def poll(self, name: str) -> LoadSnapshot:
        """Poll one backend now and replace its snapshot; never raises for engine trouble."""
        backend = self._backends[name]
        previous = self.snapshot(name)
        breaker = self._breakers[name]
        api_key = os.environ.get(backend.api_key_env) if backend.api_key_env else None
        http = HttpProbe(self._session, self._timeout_s, api_key)
        try:
            async with asyncio.timeout(self._timeout_s):
                load = await dialect_for(backend.kind).poll(http, backend)
                models = await self._models(http, backend, load, previous.models)
        except (PollError, TimeoutError) as exc:
            reason = str(exc) or f"poll took longer than {self._timeout_s:g} s"
            failures = previous.poll_failures + 1
            breaker.record_poll(False)
            snapshot = replace(
                previous,
                healthy=previous.healthy and failures < self._down_after,
                error=reason,
                poll_failures=failures,
                breaker=breaker.state.value,
                updated_at=self._clock(),
            )
        else:
            breaker.record_poll(True)
            snapshot = LoadSnapshot(
                backend=name,
                healthy=True,
                running=load.running,
                waiting=load.waiting,
                kv_usage=load.kv_usage,
                slots_total=load.slots_total or _configured_slots(backend),
                models=models,
                kv_capacity_tokens=load.kv_capacity_tokens,
                timings=load.timings,
                updated_at=self._clock(),
                breaker=breaker.state.value,
            )
        self._snapshots[name] = snapshot
        self._polls[name] += 1
        return snapshot

    async def _models(
        self, http: HttpProbe, backend: BackendConfig, load: EngineLoad, previous: tuple[str, ...]
    ) -> tuple[str, ...]:
        if backend.models:
            return tuple(backend.models)
        if load.models is not None:
            return load.models
        if backend.kind.traits.api is not Api.OPENAI:  # KServe v2 (Triton) has no /v1/models
            return (backend.triton_model,) if backend.triton_model else ()
        try:
            reply = await http.get_ok(f"{base_url(backend)}/v1/models")
            return models_from_json(reply.json())
        except PollError:
            return previous  # health passed; a missing model list is not an outage

    def _sync_breaker(self, name: str) -> None:
        state = self._breakers[name].state.value
        current = self._snapshots.get(name)
        if current is not None and current.breaker != state:
            self._snapshots[name] = replace(current, breaker=state)


def _configured_slots(backend: BackendConfig) -> int | None:
    return backend.profile.max_num_seqs if backend.profile is not None else None
