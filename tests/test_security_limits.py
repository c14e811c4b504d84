"""Limits hold under concurrent load: exactly K of N admitted, in one process and through a real
redis-server shared by two limiter instances (two gateways)."""

from __future__ import annotations

import asyncio

import pytest

from wavefleet.errors import RateLimitError
from wavefleet.gateway.security.keys import KeyLimits
from wavefleet.gateway.security.limits import LocalLimiter, RateLimiter, Ticket
from wavefleet.gateway.security.limits_redis import RedisLimiter


async def fire(limiters: list[RateLimiter], n: int, limits: KeyLimits) -> tuple[list[Ticket], int]:
    """n admits at once, spread over the limiters; (admitted tickets, refused count)."""

    async def one(i: int) -> Ticket | None:
        try:
            return await limiters[i % len(limiters)].admit("key:k1", limits)
        except RateLimitError as exc:
            assert exc.status == 429 and exc.retry_after is not None and exc.retry_after > 0
            return None

    results = await asyncio.gather(*(one(i) for i in range(n)))
    tickets = [t for t in results if t is not None]
    return tickets, n - len(tickets)


def test_local_rpm_admits_exactly_k_of_n() -> None:
    async def main() -> None:
        tickets, refused = await fire([LocalLimiter()], 50, KeyLimits(rpm=7))
        assert (len(tickets), refused) == (7, 43)

    asyncio.run(main())


def test_local_concurrency_admits_k_then_frees_slots() -> None:
    async def main() -> None:
        limiter = LocalLimiter()
        limits = KeyLimits(max_concurrent=3)
        tickets, refused = await fire([limiter], 20, limits)
        assert (len(tickets), refused) == (3, 17)
        await limiter.finish(tickets[0], 0)
        await limiter.finish(tickets[0], 0)  # twice is once
        assert limiter.inflight("key:k1") == 2
        again, _ = await fire([limiter], 5, limits)
        assert len(again) == 1

    asyncio.run(main())


def test_local_buckets_refill_at_the_steady_rate() -> None:
    limiter = LocalLimiter()
    limits = KeyLimits(rpm=60)  # one a second after the burst
    for _ in range(60):
        limiter.admit_now("k", limits, 100.0)
    with pytest.raises(RateLimitError) as caught:
        limiter.admit_now("k", limits, 100.0)
    assert caught.value.retry_after == pytest.approx(1.0)
    limiter.admit_now("k", limits, 101.01)
    with pytest.raises(RateLimitError):
        limiter.admit_now("k", limits, 101.5)


def test_local_tokens_are_charged_after_the_answer() -> None:
    limiter = LocalLimiter()
    limits = KeyLimits(tpm=600)  # 10 tokens a second
    ticket = limiter.admit_now("k", limits, 0.0)
    limiter.finish_now(ticket, 900, 0.0)  # one answer overdraws the bucket by 300
    with pytest.raises(RateLimitError, match="tokens per minute") as caught:
        limiter.admit_now("k", limits, 10.0)  # 100 refilled: still 200 in debt
    assert caught.value.retry_after == pytest.approx(20.1, abs=0.01)
    limiter.admit_now("k", limits, 30.1)


def test_refused_requests_cost_no_quota() -> None:
    limiter = LocalLimiter()
    limits = KeyLimits(rpm=5, max_concurrent=1)
    first = limiter.admit_now("k", limits, 0.0)
    for _ in range(10):
        with pytest.raises(RateLimitError, match="at once"):
            limiter.admit_now("k", limits, 0.0)
    limiter.finish_now(first, 0, 0.0)
    for _ in range(4):  # 5 per minute, 1 used: 4 left despite the 10 refusals
        limiter.finish_now(limiter.admit_now("k", limits, 0.0), 0, 0.0)
    with pytest.raises(RateLimitError, match="per minute"):
        limiter.admit_now("k", limits, 0.0)


def test_redis_rpm_shared_by_two_gateways_admits_exactly_k(redis_url: str) -> None:
    async def main() -> None:
        a, b = RedisLimiter(redis_url), RedisLimiter(redis_url)
        try:
            tickets, refused = await fire([a, b], 60, KeyLimits(rpm=11))
            assert (len(tickets), refused) == (11, 49)
            other, _ = await fire([a, b], 3, KeyLimits(rpm=11, max_tokens=5))
            assert other == []  # the same principal's bucket, whatever gateway
        finally:
            await a.aclose()
            await b.aclose()

    asyncio.run(main())


def test_redis_concurrency_and_tokens_shared_by_two_gateways(redis_url: str) -> None:
    async def main() -> None:
        a, b = RedisLimiter(redis_url), RedisLimiter(redis_url)
        try:
            limits = KeyLimits(max_concurrent=4)
            tickets, refused = await fire([a, b], 40, limits)
            assert (len(tickets), refused) == (4, 36)
            await b.finish(tickets[0], 0)  # released by the other gateway than the one that admitted
            again, _ = await fire([a, b], 10, limits)
            assert len(again) == 1
            tpm = KeyLimits(tpm=1000)
            ticket = await a.admit("key:t", tpm)
            await a.finish(ticket, 5000)
            with pytest.raises(RateLimitError, match="tokens per minute") as caught:
                await b.admit("key:t", tpm)
            assert caught.value.retry_after is not None and caught.value.retry_after > 200
        finally:
            await a.aclose()
            await b.aclose()

    asyncio.run(main())


def test_redis_leases_of_a_dead_gateway_expire(redis_url: str) -> None:
    async def main() -> None:
        dead = RedisLimiter(redis_url, lease_ttl_s=0.3)
        live = RedisLimiter(redis_url, lease_ttl_s=0.3)
        try:
            limits = KeyLimits(max_concurrent=2)
            await dead.admit("key:d", limits)
            await dead.admit("key:d", limits)  # never finished: the gateway "died"
            with pytest.raises(RateLimitError):
                await live.admit("key:d", limits)
            await asyncio.sleep(0.5)
            assert (await live.admit("key:d", limits)).lease
        finally:
            await dead.aclose()
            await live.aclose()

    asyncio.run(main())
