"""Limits shared by several gateways through Redis: the same buckets as LocalLimiter, kept in
Redis hashes and changed by Lua scripts, so each admit is one atomic round trip.

Time comes from Redis (`TIME`), not from each gateway, so gateways with skewed clocks still
share one budget. Concurrency is a sorted set of leases scored by when they expire: a gateway
that dies without releasing its leases frees them after `lease_ttl_s` (set it above the
gateway's total timeout). A token bucket's key lives until the bucket would be full again (the
time to refill from its level, plus a minute), so a debt is kept as long as LocalLimiter keeps it.

A command that fails on a broken connection (Redis restarted, a proxy dropped the socket) is
sent once more on a fresh one; the scripts are loaded again when the server no longer knows
them. Only when that fails too is the request refused (503: no limit can be kept without Redis).

    limiter = RedisLimiter("redis://127.0.0.1:6379/0")
    ticket = await limiter.admit("key:3f9a0c1d", KeyLimits(rpm=60, tpm=40000), reserve=600)
    await limiter.finish(ticket, 420)
"""

from __future__ import annotations

import contextlib
import secrets

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wavefleet.errors import NoHealthyBackendError
from wavefleet.gateway.security.keys import KeyLimits
from wavefleet.gateway.security.limits import Ticket, reservation, settlement, too_many

__all__ = ["RedisLimiter"]

# how long a token bucket's key must live: until the bucket is full again, plus a minute; capped
# at a year so that a huge debt still gives PEXPIRE an integer it accepts
_REFILL_TTL = """
local function refill_ttl(level, per_minute)
  return math.min(31536000000, math.ceil((per_minute - level) * 60000 / per_minute) + 60000)
end
"""

# KEYS: 1 request bucket, 2 token bucket, 3 lease set
# ARGV: 1 rpm (0 = none), 2 tpm (0 = none), 3 max concurrent (0 = none), 4 lease id, 5 lease ttl ms,
#       6 tokens to reserve (at most tpm)
# returns {1, 0} admitted, or {0, reason (1 conc, 2 rpm, 3 tpm), retry after in ms}
_ADMIT = (
    _REFILL_TTL
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, need = tonumber(ARGV[5]), tonumber(ARGV[6])
local function level(key, per_minute)
  local v = redis.call('HMGET', key, 'tokens', 'at')
  local tokens, at = tonumber(v[1]), tonumber(v[2])
  if tokens == nil then return per_minute end
  return math.min(per_minute, tokens + (now - at) * per_minute / 60000)
end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= conc then return {0, 1, 1000} end
end
local req, tok = 0, 0
if rpm > 0 then
  req = level(KEYS[1], rpm)
  if req < 1 then return {0, 2, math.ceil((1 - req) * 60000 / rpm)} end
end
if tpm > 0 then
  tok = level(KEYS[2], tpm)
  if tok <= 0 or tok < need then return {0, 3, math.ceil((math.max(need, 1) - tok) * 60000 / tpm)} end
end
if rpm > 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(req - 1), 'at', now)
  redis.call('PEXPIRE', KEYS[1], 120000)
end
if tpm > 0 then
  tok = tok - need
  redis.call('HSET', KEYS[2], 'tokens', tostring(tok), 'at', now)
  redis.call('PEXPIRE', KEYS[2], refill_ttl(tok, tpm))
end
if conc > 0 then
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ttl + 1000)
end
return {1, 0, 0}
"""
)

# KEYS: 1 token bucket, 2 lease set
# ARGV: 1 tpm (0 = none), 2 tokens beyond the reservation (negative: a refund), 3 lease id ('' = none)
_FINISH = (
    _REFILL_TTL
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end
local tpm, extra = tonumber(ARGV[1]), tonumber(ARGV[2])
if tpm > 0 and extra ~= 0 then
  local v = redis.call('HMGET', KEYS[1], 'tokens', 'at')
  local tokens, at = tonumber(v[1]), tonumber(v[2])
  if tokens == nil then tokens, at = tpm, now end
  tokens = math.min(tpm, math.min(tpm, tokens + (now - at) * tpm / 60000) - extra)
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
  redis.call('PEXPIRE', KEYS[1], refill_ttl(tokens, tpm))
end
return 1
"""
)

_REASONS = {
    1: "{conc} requests at once for this key",
    2: "{rpm} requests per minute",
    3: "{tpm} tokens per minute",
}


class RedisLimiter:
    def __init__(self, url: str, *, prefix: str = "wave:limit:", lease_ttl_s: float = 660.0) -> None:
        # one more try on a fresh connection; from_url's own default is none
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError, RedisTimeoutError]
        )
        self._admit = self._client.register_script(_ADMIT)
        self._finish = self._client.register_script(_FINISH)
        self._prefix = prefix
        self._lease_ttl_ms = int(lease_ttl_s * 1000)
        self.url = url

    def _keys(self, ident: str) -> list[str]:
        # a hash tag keeps one principal's keys on one Redis Cluster slot
        base = f"{self._prefix}{{{ident}}}"
        return [f"{base}:req", f"{base}:tok", f"{base}:leases"]

    async def admit(self, ident: str, limits: KeyLimits, *, reserve: int = 0) -> Ticket:
        if not limits.any:
            return Ticket(ident, limits)
        lease = secrets.token_hex(8) if limits.max_concurrent else ""
        need = reservation(limits, reserve)
        args: list[str | int] = [
            limits.rpm or 0,
            limits.tpm or 0,
            limits.max_concurrent or 0,
            lease,
            self._lease_ttl_ms,
            need,
        ]
        try:
            result = await self._admit(keys=self._keys(ident), args=args)
        except RedisError as exc:
            # without the shared state no limit can be kept: refuse rather than admit unchecked
            raise NoHealthyBackendError(
                f"the rate limiter's Redis is unreachable: {exc}", retry_after=1.0
            ) from exc
        admitted, reason, retry_ms = (int(x) for x in result)
        if not admitted:
            what = _REASONS[reason].format(conc=limits.max_concurrent, rpm=limits.rpm, tpm=limits.tpm)
            raise too_many(what, retry_ms / 1000.0)
        return Ticket(ident, limits, lease=lease, reserved=need)

    async def finish(self, ticket: Ticket, tokens: int | None) -> None:
        """Release the lease and settle: charge `tokens` in place of the reservation (None: keep it)."""
        if ticket.finished or not ticket.limits.any:
            return
        ticket.finished = True
        keys = self._keys(ticket.ident)
        # on a Redis error the lease expires by itself after lease_ttl_s; the reservation stays charged
        with contextlib.suppress(RedisError):
            await self._finish(
                keys=[keys[1], keys[2]],
                args=[ticket.limits.tpm or 0, settlement(ticket, tokens), ticket.lease],
            )

    async def aclose(self) -> None:
        await self._client.aclose()
