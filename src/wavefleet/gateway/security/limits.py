"""Per-principal limits: requests per minute, tokens per minute, requests at once.

Both per-minute limits are token buckets (capacity = the per-minute figure, refilled evenly
over the minute), so a key may burst up to its whole minute at once and then runs at the
steady rate; the check is O(1) arithmetic on two floats.

Tokens per minute are reserved at admission and settled at the end. The caller says how many
tokens a request may use (its prompt estimate plus what it may generate, see gate.py); it is
admitted only when the bucket holds that many, which are taken at once, so requests in flight
can never together reserve more than the bucket holds. When the request ends, `finish` charges
what it really used: the unused part of the reservation comes back, usage beyond it is taken
too (the bucket may then go below zero, and later requests wait until the debt is refilled).
`finish(ticket, None)` means the usage is unknown: the reservation stands. A reservation larger
than the whole per-minute figure is cut to it, so no request waits forever (the gate refuses
those with 400 before they get here).

    limiter = LocalLimiter()
    ticket = await limiter.admit("key:3f9a0c1d", KeyLimits(tpm=40000), reserve=600)  # or RateLimitError
    try: ...
    finally: await limiter.finish(ticket, tokens_used)

`LocalLimiter` keeps state in this process. `RedisLimiter` (limits_redis.py) keeps it in Redis so
several gateways share one budget.
"""

from __future__ import annotations

import time
from dataclasses import KW_ONLY, dataclass
from typing import Protocol

from wavefleet.errors import RateLimitError
from wavefleet.gateway.security.keys import KeyLimits

__all__ = ["LocalLimiter", "RateLimiter", "Ticket", "reservation", "settlement"]


@dataclass(slots=True)
class Ticket:
    """An admitted request; hand it back with `finish`. `lease` names its Redis concurrency slot,
    `reserved` the tokens taken from the bucket at admission."""

    ident: str
    limits: KeyLimits
    _: KW_ONLY
    lease: str = ""
    reserved: int = 0
    finished: bool = False


class RateLimiter(Protocol):
    async def admit(self, ident: str, limits: KeyLimits, *, reserve: int = 0) -> Ticket: ...

    async def finish(self, ticket: Ticket, tokens: int | None) -> None: ...

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


def reservation(limits: KeyLimits, reserve: int) -> int:
    """The tokens to take at admission: none without a tpm, and never more than the whole tpm."""
    return min(max(0, reserve), limits.tpm) if limits.tpm is not None else 0


def tokens_short(level: float, need: int) -> float:
    """How many tokens the bucket lacks to admit a request that needs `need` (always above zero:
    a request with no reservation still needs the bucket above zero)."""
    return max(need, 1) - level


def settlement(ticket: Ticket, tokens: int | None) -> int:
    """Tokens to take from the bucket at the end, beyond the reservation (negative: a refund)."""
    if tokens is None:
        return 0
    return max(0, tokens) - ticket.reserved


def too_many(what: str, retry_after: float) -> RateLimitError:
    return RateLimitError(
        f"rate limit reached: {what}; retry after {max(1, round(retry_after + 0.5))} s",
        retry_after=retry_after,
    )


class LocalLimiter:
    """Limits kept in this process. Every call runs on the event loop thread, so each admit is atomic."""

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}

    async def admit(self, ident: str, limits: KeyLimits, *, reserve: int = 0) -> Ticket:
        return self.admit_now(ident, limits, time.monotonic(), reserve=reserve)

    def admit_now(self, ident: str, limits: KeyLimits, now: float, *, reserve: int = 0) -> Ticket:
        if not limits.any:
            return Ticket(ident, limits)
        need = reservation(limits, reserve)
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
            if tok_tokens <= 0.0 or tok_tokens < need:
                short = tokens_short(tok_tokens, need)
                raise too_many(f"{limits.tpm} tokens per minute", short * 60.0 / limits.tpm)
        # every check passed: only now take the request's share of each limit
        if limits.rpm is not None:
            state.req_tokens, state.req_at = req_tokens - 1.0, now
        if limits.tpm is not None:
            state.tok_tokens, state.tok_at = tok_tokens - need, now
        state.inflight += 1
        return Ticket(ident, limits, reserved=need)

    async def finish(self, ticket: Ticket, tokens: int | None) -> None:
        self.finish_now(ticket, tokens, time.monotonic())

    def finish_now(self, ticket: Ticket, tokens: int | None, now: float) -> None:
        """Release the slot and settle: charge `tokens` in place of the reservation (None: keep it)."""
        if ticket.finished or not ticket.limits.any:
            return
        ticket.finished = True
        state = self._states.get(ticket.ident)
        if state is None:
            return
        state.inflight = max(0, state.inflight - 1)
        tpm = ticket.limits.tpm
        extra = settlement(ticket, tokens)
        if tpm is not None and extra != 0:
            # a refund cannot fill the bucket past its capacity
            state.tok_tokens = min(float(tpm), _refill(state.tok_tokens, state.tok_at, tpm, now) - extra)
            state.tok_at = now

    def inflight(self, ident: str) -> int:
        state = self._states.get(ident)
        return state.inflight if state is not None else 0

    async def aclose(self) -> None:
        self._states.clear()
