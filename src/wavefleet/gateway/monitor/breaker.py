"""A circuit breaker per backend: closed -> open -> half-open -> closed.

Request outcomes (from the gateway) and poll failures both count. After `failure_threshold`
failures in a row it opens: the backend gets no requests for a cool-down. Then it half-opens and
lets one probe request through; success closes it, failure opens it again. The cool-down doubles
(up to `max_cooldown_s`) each time a backend fails again soon after recovering, so a flapping
backend is tried less and less often; it falls back to `base_cooldown_s` once the backend has
stayed closed for `stable_after_s`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BreakerPolicy", "BreakerState", "BreakerStatus", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 3
    base_cooldown_s: float = 5.0
    max_cooldown_s: float = 300.0
    stable_after_s: float = 60.0  # closed this long without failing again: the cool-down resets
    probe_timeout_s: float = 30.0  # a granted probe that never reports back frees its slot after this


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerStatus:
    """What /health shows for one backend's breaker."""

    state: BreakerState
    consecutive_failures: int
    cooldown_s: float
    reopens_in_s: float | None  # seconds until half-open, while open


class CircuitBreaker:
    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float]) -> None:
        self._policy = policy
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._cooldown_s = policy.base_cooldown_s
        self._opened_at = 0.0
        self._closed_at: float | None = None  # when it last recovered (None: never opened)
        self._probe_granted_at: float | None = None
        self._opened_by_poll = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_at + self._cooldown_s:
            self._state = BreakerState.HALF_OPEN
            self._probe_granted_at = None
        return self._state

    def status(self) -> BreakerStatus:
        state = self.state
        reopens = self._opened_at + self._cooldown_s - self._clock() if state is BreakerState.OPEN else None
        return BreakerStatus(
            state=state,
            consecutive_failures=self._failures,
            cooldown_s=self._cooldown_s,
            reopens_in_s=reopens,
        )

    def allow(self) -> bool:
        """May a request go now? In half-open, grants one probe at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        now = self._clock()
        if self._probe_granted_at is not None and now - self._probe_granted_at < self._policy.probe_timeout_s:
            return False
        self._probe_granted_at = now
        return True

    def release(self) -> None:
        """The granted probe ended without an outcome (its client left): grant the next one now."""
        if self._state is BreakerState.HALF_OPEN:
            self._probe_granted_at = None

    def record_poll(self, ok: bool) -> BreakerState:
        """Count one health poll: failures count like failed requests; see the module doc."""
        if not ok:
            return self._fail(by_poll=True)
        if self.state is BreakerState.OPEN and self._opened_by_poll:
            self._state = BreakerState.HALF_OPEN
            self._probe_granted_at = None
        return self._state

    def record(self, ok: bool) -> BreakerState:
        """Count one request outcome; returns the state after it."""
        if not ok:
            return self._fail(by_poll=False)
        self._failures = 0
        if self.state is BreakerState.HALF_OPEN:
            self._state = BreakerState.CLOSED
            self._closed_at = self._clock()
            self._probe_granted_at = None
        return self._state

    def _fail(self, by_poll: bool) -> BreakerState:
        state = self.state
        self._failures += 1
        if state is BreakerState.HALF_OPEN or (
            state is BreakerState.CLOSED and self._failures >= self._policy.failure_threshold
        ):
            self._open(flapping=state is BreakerState.HALF_OPEN or self._recovered_recently())
            self._opened_by_poll = by_poll
        return self._state

    def _recovered_recently(self) -> bool:
        return self._closed_at is not None and self._clock() - self._closed_at < self._policy.stable_after_s

    def _open(self, flapping: bool) -> None:
        if flapping:
            self._cooldown_s = min(self._cooldown_s * 2, self._policy.max_cooldown_s)
        else:
            self._cooldown_s = self._policy.base_cooldown_s
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._probe_granted_at = None
