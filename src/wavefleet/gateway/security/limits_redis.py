"""Limits shared by several gateways through Redis: the same buckets as LocalLimiter, kept in
Redis hashes and changed by Lua scripts, so each admit is atomic.

The admits and finishes a gateway makes in one turn of its event loop, and those made while
the previous batch is out, go to Redis together as one pipeline, in the order they were made,
on one connection: a round trip and a socket write per batch instead of per request (the
limiter alone spends about a sixth of the CPU per request it spends one command at a time). Being in order, a
finish reaches Redis before any later admit of the same gateway. `finish_soon` queues a finish
without waiting for it (the security middleware's way: the client has its answer already).
An admit whose request is cancelled gives back what its script took, once the answer arrives.

Time comes from Redis (`TIME`), not from each gateway, so gateways with skewed clocks still
share one budget. Concurrency is a sorted set of leases scored by when they expire: a gateway
that dies without releasing its leases frees them after `lease_ttl_s` (set it above the
gateway's total timeout). A token bucket's key lives until the bucket would be full again (the
time to refill from its level, plus a minute), so a debt is kept as long as LocalLimiter keeps it.

A batch that fails on a broken connection (Redis restarted, a proxy dropped the socket) is
sent once more on a fresh one; the scripts are loaded again when the server no longer knows
them. Only when that fails too are its requests refused (503: no limit can be kept without
Redis). An error of one command (a key of the wrong type) fails only its own request.

    limiter = RedisLimiter("redis://127.0.0.1:6379/0")
    ticket = await limiter.admit("key:3f9a0c1d", KeyLimits(rpm=60, tpm=40000), reserve=600)
    await limiter.finish(ticket, 420)     # or limiter.finish_soon(ticket, 420): queued, not awaited
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
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


@dataclass(frozen=True, slots=True)
class _Script:
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> _Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())  # what EVALSHA names it by


_ADMIT_SCRIPT = _Script.of(_ADMIT)
_FINISH_SCRIPT = _Script.of(_FINISH)


@dataclass(slots=True, kw_only=True)
class _Command:
    script: _Script
    keys: Sequence[str]
    args: Sequence[str | int]
    answer: asyncio.Future[Any] | None  # None: nobody waits (a finish_soon)


class RedisLimiter:
    def __init__(self, url: str, *, prefix: str = "wave:limit:", lease_ttl_s: float = 660.0) -> None:
        # one more try on a fresh connection; from_url's own default is none
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError, RedisTimeoutError]
        )
        self._prefix = prefix
        self._lease_ttl_ms = int(lease_ttl_s * 1000)
        # lease ids unique across gateways without a random draw (a syscall) per request
        self._lease_prefix = secrets.token_hex(8) + ":"
        self._leases = itertools.count(1)
        self._queue: list[_Command] = []
        self._sender: asyncio.Task[None] | None = None
        # one batch is out at a time, so one connection serves them all (redis-py reconnects it)
        self._connection: AbstractConnection | None = None
        self._closed = False
        self.url = url

    def _keys(self, ident: str) -> list[str]:
        # a hash tag keeps one principal's keys on one Redis Cluster slot
        base = f"{self._prefix}{{{ident}}}"
        return [f"{base}:req", f"{base}:tok", f"{base}:leases"]

    async def admit(self, ident: str, limits: KeyLimits, *, reserve: int = 0) -> Ticket:
        if not limits.any:
            return Ticket(ident, limits)
        lease = f"{self._lease_prefix}{next(self._leases)}" if limits.max_concurrent else ""
        need = reservation(limits, reserve)
        args: list[str | int] = [
            limits.rpm or 0,
            limits.tpm or 0,
            limits.max_concurrent or 0,
            lease,
            self._lease_ttl_ms,
            need,
        ]
        ticket = Ticket(ident, limits, lease=lease, reserved=need)
        answer = self._send(_ADMIT_SCRIPT, self._keys(ident), args, wait=True)
        assert answer is not None
        try:
            result = await asyncio.shield(answer)
        except asyncio.CancelledError:
            # the script may run all the same: once it has, give back what it took
            answer.add_done_callback(lambda done: self._give_back(done, ticket))
            raise
        except RedisError as exc:
            # without the shared state no limit can be kept: refuse rather than admit unchecked
            raise NoHealthyBackendError(
                f"the rate limiter's Redis is unreachable: {exc}", retry_after=1.0
            ) from exc
        admitted, reason, retry_ms = (int(x) for x in result)
        if not admitted:
            what = _REASONS[reason].format(conc=limits.max_concurrent, rpm=limits.rpm, tpm=limits.tpm)
            raise too_many(what, retry_ms / 1000.0)
        return ticket

    def _give_back(self, done: asyncio.Future[Any], ticket: Ticket) -> None:
        if done.cancelled() or done.exception() is not None or not int(done.result()[0]):
            return
        self.finish_soon(ticket, 0)

    async def finish(self, ticket: Ticket, tokens: int | None) -> None:
        """Release the lease and settle: charge `tokens` in place of the reservation (None: keep it).
        Returns once Redis has done it (or failed to: the lease then expires by itself after
        lease_ttl_s, and the reservation stays charged)."""
        answer = self._finish_command(ticket, tokens, wait=True)
        if answer is not None:
            with contextlib.suppress(RedisError):
                await answer

    def finish_soon(self, ticket: Ticket, tokens: int | None) -> None:
        """`finish`, queued: it reaches Redis with this limiter's next batch, before any later admit."""
        self._finish_command(ticket, tokens, wait=False)

    def _finish_command(
        self, ticket: Ticket, tokens: int | None, *, wait: bool
    ) -> asyncio.Future[Any] | None:
        if ticket.finished or not ticket.limits.any:
            return None
        ticket.finished = True
        keys = self._keys(ticket.ident)
        args: list[str | int] = [ticket.limits.tpm or 0, settlement(ticket, tokens), ticket.lease]
        return self._send(_FINISH_SCRIPT, [keys[1], keys[2]], args, wait=wait)

    def _send(
        self, script: _Script, keys: Sequence[str], args: Sequence[str | int], *, wait: bool
    ) -> asyncio.Future[Any] | None:
        """Queue a script call for the next batch; its answer, when `wait`."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future() if wait else None
        if self._closed:  # a request that ends after shutdown: its lease expires by itself
            if answer is not None:
                answer.set_exception(RedisError("the rate limiter is closed"))
            return answer
        self._queue.append(_Command(script=script, keys=keys, args=args, answer=answer))
        if self._sender is None:
            self._sender = loop.create_task(self._send_batches())
        return answer

    async def _send_batches(self) -> None:
        """Send what is queued as one pipeline, and again while more was queued meanwhile. Every
        command waited for gets an answer or an error, whatever happens: a request never hangs."""
        batch: list[_Command] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results: list[Any] = await self._run(batch)
                except Exception as exc:
                    error = exc if isinstance(exc, RedisError) else RedisError(f"{type(exc).__name__}: {exc}")
                    results = [error] * len(batch)
                for command, result in zip(batch, results, strict=True):
                    answer = command.answer
                    if answer is None or answer.done():
                        continue
                    if isinstance(result, Exception):
                        answer.set_exception(result)
                    else:
                        answer.set_result(result)
                batch = []
        finally:
            self._sender = None
            for command in batch:  # cancelled mid-batch (the loop is closing)
                if command.answer is not None and not command.answer.done():
                    command.answer.set_exception(RedisError("the rate limiter stopped"))

    async def _run(self, batch: list[_Command]) -> list[Any]:
        """Each command's answer, or its error; the scripts loaded again if the server lost them."""
        results = await self._pipeline(batch)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:  # a restarted server: load the scripts, send those commands again (they did not run)
            # both scripts, always: with one known and one not, the commands of a batch would
            # run out of order (a finish after the admit it was meant to make room for)
            scripts = (_ADMIT_SCRIPT, _FINISH_SCRIPT)
            loads = b"".join(hiredis.pack_command(("SCRIPT", "LOAD", s.source)) for s in scripts)  # type: ignore[arg-type]
            for answer in await self._roundtrip(loads, len(scripts)):
                if isinstance(answer, Exception):
                    raise answer
            again = await self._pipeline([batch[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, commands: Sequence[_Command]) -> list[Any]:
        """Send `commands` in one write and read their answers (an error answer in its place).
        Packed by hiredis: redis-py's pure-Python packer costs more than the rest of a batch
        (about 1 us an argument, 20 arguments a request)."""
        # hiredis's stub types the argument as a 1-tuple; it takes any number of parts
        packed = b"".join(hiredis.pack_command(_evalsha(c)) for c in commands)  # type: ignore[arg-type]
        return await self._roundtrip(packed, len(commands))

    async def _roundtrip(self, packed: bytes, count: int) -> list[Any]:
        """Write `packed` (`count` commands) and read their answers, on this limiter's connection."""
        connection = self._connection
        if connection is None:
            pool = self._client.connection_pool
            connection = self._connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        answers: list[Any] = await connection.retry.call_with_retry(
            lambda: _exchange(connection, packed, count),
            lambda error: connection.disconnect(),  # then once more, on a fresh connection
        )
        return answers

    async def aclose(self) -> None:
        """Send what is still queued, then close the connections."""
        self._closed = True
        while self._sender is not None:
            await asyncio.shield(self._sender)
        if self._connection is not None:
            await self._client.connection_pool.release(self._connection)
            self._connection = None
        await self._client.aclose()


def _evalsha(command: _Command) -> tuple[str | int, ...]:
    return ("EVALSHA", command.script.sha, len(command.keys), *command.keys, *command.args)


async def _exchange(connection: AbstractConnection, packed: bytes, count: int) -> list[Any]:
    await connection.send_packed_command(packed)
    answers: list[Any] = []
    for _ in range(count):
        try:
            answers.append(await connection.read_response())
        except ResponseError as exc:  # this command's own error (NOSCRIPT, WRONGTYPE): the others stand
            answers.append(exc)
    return answers
