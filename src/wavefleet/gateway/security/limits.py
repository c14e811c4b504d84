"""Per-principal limits: requests per minute, tokens per minute, requests at once.

Both per-minute limits are token buckets (capacity = the per-minute figure, refilled evenly
over the minute), so a key may burst up to its whole minute at once and then runs at the
steady rate; the check is O(1) arithmetic on two floats.

Tokens per minute are charged after the answer, from the usage the engine reported (prompt +
completion), because only then are they known. A request is admitted while the key's token
bucket is above zero; one request can therefore overdraw it by its own size (bounded by the
key's max_tokens cap plus its prompt), and the next requests wait until the debt is refilled.
Nothing is reserved up front, so a client that sends a large max_tokens but uses few tokens is
not punished.

    limiter = LocalLimiter()
    ticket = await limiter.admit("key:3f9a0c1d", KeyLimits(rpm=60, max_concurrent=4))  # or RateLimitError
    try: ...
    finally: await limiter.finish(ticket, tokens_used)

`LocalLimiter` keeps state in this process. `RedisLimiter` (limits_redis.py) keeps it in Redis so
several gateways share one budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from wavefleet.errors import RateLimitError
from wavefleet.gateway.security.keys import KeyLimits

__all__ = ["LocalLimiter", "RateLimiter", "Ticket"]


@dataclass(slots=True)
class Ticket:
    """An admitted request; hand it back with `finish`. `lease` names its Redis concurrency slot."""

    ident: str
    limits: KeyLimits
    lease: str = ""
    finished: bool = False


class RateLimiter(Protocol):
    async def admit(self, ident: str, limits: KeyLimits) -> Ticket: ...

    async def finish(self, ticket: Ticket, tokens: int) -> None: ...

    async def aclose(self) -> None: ...


class _State:
    __slots__ = ("inflight", "req_at", "req_tokens", "tok_at", "tok_tokens")

    def __init__(self, limits: KeyLimits, now: float) -> None:
        self.req_tokens = float(limits.rpm or 0)
        self.req_at = now
        self.tok_tokens = float(limits.tpm or 0)
        self.tok_at = now
        self.inflight = 0


def _refill(tokens: float, at: float, per_minute: int, now: float) -> float:
    return min(float(per_minute), tokens + (now - at) * per_minute / 60.0)


def too_many(what: str, retry_after: float) -> RateLimitError:
    return RateLimitError(
        f"rate limit reached: {what}; retry after {max(1, round(retry_after + 0.5))} s",
        retry_after=retry_after,
    )


class LocalLimiter:
    """Limits kept in this process. Every call runs on the event loop thread, so each admit is atomic."""

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}

    async def admit(self, ident: str, limits: KeyLimits) -> Ticket:
        return self.admit_now(ident, limits, time.monotonic())

    def admit_now(self, ident: str, limits: KeyLimits, now: float) -> Ticket:
        if not limits.any:
            return Ticket(ident, limits)
        state = self._states.get(ident)
        if state is None:
            state = self._states[ident] = _State(limits, now)
        if limits.max_concurrent is not None and state.inflight >= limits.max_concurrent:
            raise too_many(f"{limits.max_concurrent} requests at once for this key", 1.0)
        req_tokens = tok_tokens = 0.0
        if limits.rpm is not None:
            req_tokens = _refill(state.req_tokens, state.req_at, limits.rpm, now)
            if req_tokens < 1.0:
                raise too_many(f"{limits.rpm} requests per minute", (1.0 - req_tokens) * 60.0 / limits.rpm)
        if limits.tpm is not None:
            tok_tokens = _refill(state.tok_tokens, state.tok_at, limits.tpm, now)
            if tok_tokens <= 0.0:
                raise too_many(f"{limits.tpm} tokens per minute", (1.0 - tok_tokens) * 60.0 / limits.tpm)
        # every check passed: only now take the request's share of each limit
        if limits.rpm is not None:
            state.req_tokens, state.req_at = req_tokens - 1.0, now
        if limits.tpm is not None:
            state.tok_tokens, state.tok_at = tok_tokens, now
        state.inflight += 1
        return Ticket(ident, limits)

    async def finish(self, ticket: Ticket, tokens: int) -> None:
        self.finish_now(ticket, tokens, time.monotonic())

    def finish_now(self, ticket: Ticket, tokens: int, now: float) -> None:
        if ticket.finished or not ticket.limits.any:
            return
        ticket.finished = True
        state = self._states.get(ticket.ident)
        if state is None:
            return
        state.inflight = max(0, state.inflight - 1)
        tpm = ticket.limits.tpm
        if tpm is not None and tokens > 0:
            state.tok_tokens = _refill(state.tok_tokens, state.tok_at, tpm, now) - tokens
            state.tok_at = now

    def inflight(self, ident: str) -> int:
        state = self._states.get(ident)
        return state.inflight if state is not None else 0

    async def aclose(self) -> None:
        self._states.clear()
