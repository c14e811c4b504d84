"""Limits hold under concurrent load: exactly K of N admitted, in one process and through a real
redis-server shared by two limiter instances (two gateways). Tokens per minute are reserved at
admission and settled when the request ends, by the limiters and by the middleware."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from conftest import RedisServer  # tests/ is on pytest's pythonpath
from wavefleet.errors import BadRequestError, ModelNotFoundError, RateLimitError
from wavefleet.gateway.security.authn import Authenticator
from wavefleet.gateway.security.gate import Admission, SecurityGate
from wavefleet.gateway.security.keys import KeyLimits
from wavefleet.gateway.security.limits import LocalLimiter, RateLimiter, Ticket
from wavefleet.gateway.security.limits_redis import RedisLimiter
from wavefleet.gateway.security.middleware import OUTCOME, Outcome, install
from wavefleet.gateway.security.principal import Principal
from wavefleet.gateway.security.screening import Screener, ScreeningConfig


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
            deadline = time.monotonic() + 10
            while True:  # the leases expire in Redis after lease_ttl_s: poll until they have
                try:
                    ticket = await live.admit("key:d", limits)
                    break
                except RateLimitError:
                    assert time.monotonic() < deadline, "the dead gateway's leases never expired"
                    await asyncio.sleep(0.05)
            assert ticket.lease
        finally:
            await dead.aclose()
            await live.aclose()

    asyncio.run(main())


# ---- tokens per minute: reserved at admission, settled at the end --------------------------------

STATIC_KEY = "sk-limits-0123456789abcdef"
TEN_TOKENS = "x" * 40  # 40 characters: 10 tokens at the gateway's 4 characters a token


def gate_with(limiter: RateLimiter, limits: KeyLimits) -> SecurityGate:
    return SecurityGate(
        authenticator=Authenticator(static_keys=[STATIC_KEY], static_limits=limits),
        limiter=limiter,
        screener=Screener(ScreeningConfig()),
    )


def principal(limits: KeyLimits) -> Principal:
    return Principal(ident="static", kind="static", models=None, limits=limits)


def ask(max_tokens: int | None = None, content: str = TEN_TOKENS, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": content}], **extra}
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    return payload


async def burst(gate: SecurityGate, who: Principal, n: int, payload: dict[str, Any]) -> list[Admission]:
    async def one() -> Admission | None:
        try:
            return await gate.admit(who, "chat/completions", payload)
        except RateLimitError as exc:
            assert exc.retry_after is not None and exc.retry_after > 0
            return None

    return [a for a in await asyncio.gather(*(one() for _ in range(n))) if a is not None]


@pytest.mark.parametrize("store", ["local", "redis"])
def test_tpm_reserves_at_admission_under_concurrency(store: str, request: pytest.FixtureRequest) -> None:
    """50 requests of 500 tokens at once (10 prompt + max_tokens 490) under tpm 1000: two fit."""

    async def main() -> None:
        limiter: RateLimiter = (
            LocalLimiter() if store == "local" else RedisLimiter(request.getfixturevalue("redis_url"))
        )
        limits = KeyLimits(tpm=1000)
        gate, who = gate_with(limiter, limits), principal(limits)
        try:
            admitted = await burst(gate, who, 50, ask(490))
            assert len(admitted) == 2
            # the answers used 50 tokens each: 450 of each reservation comes back
            for admission in admitted:
                await gate.finish(admission, 50)
            assert len(await burst(gate, who, 10, ask(490))) == 1
        finally:
            await limiter.aclose()

    asyncio.run(main())


def test_a_request_larger_than_the_whole_tpm_is_refused_with_400() -> None:
    async def main() -> None:
        limits = KeyLimits(tpm=1000)
        gate, who = gate_with(LocalLimiter(), limits), principal(limits)
        with pytest.raises(BadRequestError, match="1000 tokens per minute") as caught:
            await gate.admit(who, "chat/completions", ask(2000))
        assert caught.value.status == 400 and caught.value.param == "max_tokens"
        assert "2010" in str(caught.value)  # what it reserves: the prompt estimate plus max_tokens
        with pytest.raises(BadRequestError, match="tokens per minute") as caught:
            await gate.admit(who, "chat/completions", ask(content="y" * 8000))  # 2000 prompt tokens
        assert caught.value.param == "messages"
        # no max_tokens: the default reservation is a guess, cut to what the key's tpm allows
        small = KeyLimits(tpm=300)
        admission = await gate_with(LocalLimiter(), small).admit(principal(small), "chat/completions", ask())
        assert admission.ticket is not None and admission.ticket.reserved == 300

    asyncio.run(main())


def test_the_default_reservation_is_the_key_cap_or_512_per_choice() -> None:
    async def main() -> None:
        for limits, payload, reserved in (
            (KeyLimits(tpm=100_000), ask(), 10 + 512),
            (KeyLimits(tpm=100_000, max_tokens=64), ask(), 10 + 64),
            (KeyLimits(tpm=100_000), ask(n=3), 10 + 3 * 512),
            (KeyLimits(tpm=100_000), ask(100, n=3), 10 + 300),
            (KeyLimits(tpm=100_000), ask(max_completion_tokens=7), 10 + 7),
        ):
            admission = await gate_with(LocalLimiter(), limits).admit(
                principal(limits), "chat/completions", payload
            )
            assert admission.ticket is not None and admission.ticket.reserved == reserved, payload
        embed = KeyLimits(tpm=100_000)
        admission = await gate_with(LocalLimiter(), embed).admit(
            principal(embed), "embeddings", {"model": "m", "input": TEN_TOKENS}
        )
        assert admission.ticket is not None and admission.ticket.reserved == 10

    asyncio.run(main())


def test_n_counts_against_the_max_tokens_cap() -> None:
    async def main() -> None:
        limits = KeyLimits(max_tokens=200)
        gate, who = gate_with(LocalLimiter(), limits), principal(limits)
        with pytest.raises(BadRequestError, match="500") as caught:
            await gate.admit(who, "chat/completions", ask(100, n=5))
        assert caught.value.param == "max_tokens" and "200" in str(caught.value)
        await gate.admit(who, "chat/completions", ask(100, n=2))
        await gate.admit(who, "chat/completions", ask(200))

    asyncio.run(main())


def test_settlement_refunds_the_unused_reservation_and_charges_the_excess() -> None:
    limiter = LocalLimiter()
    limits = KeyLimits(tpm=600)  # 10 tokens a second
    first = limiter.admit_now("k", limits, 0.0, reserve=400)
    with pytest.raises(RateLimitError, match="tokens per minute") as caught:
        limiter.admit_now("k", limits, 0.0, reserve=400)  # 200 left, 400 asked
    assert caught.value.retry_after == pytest.approx(20.0)
    limiter.finish_now(first, 100, 0.0)  # 300 of the 400 come back: 500 left
    second = limiter.admit_now("k", limits, 0.0, reserve=400)  # 100 left
    limiter.finish_now(second, 1000, 0.0)  # 600 more than reserved: 500 in debt
    with pytest.raises(RateLimitError) as caught:
        limiter.admit_now("k", limits, 0.0, reserve=100)
    assert caught.value.retry_after == pytest.approx(60.0)
    third = limiter.admit_now("k", limits, 60.0, reserve=100)
    limiter.finish_now(third, None, 60.0)  # usage unknown: the reservation stands
    with pytest.raises(RateLimitError):
        limiter.admit_now("k", limits, 60.0, reserve=1)


async def _advance(client: Any, keys: list[str], seconds: float) -> None:
    """Move Redis's view of these buckets `seconds` into the future: a key whose ttl runs out by then
    is gone (as it would be), the others have their refill clock moved back and their ttl shortened."""
    ms = int(seconds * 1000)
    for key in keys:
        ttl = await client.pttl(key)
        if ttl == -2:
            continue
        if 0 <= ttl <= ms:
            await client.delete(key)
            continue
        await client.hincrby(key, "at", -ms)
        if ttl > 0:
            await client.pexpire(key, ttl - ms)


def test_local_and_redis_limiters_agree_on_a_sequence_with_debt(redis_url: str) -> None:
    """The same admits and finishes, with minutes passing, give the same answers in both limiters
    (Redis's time is moved by shifting the buckets' clocks and ttls, see _advance)."""

    async def main() -> None:
        local, shared = LocalLimiter(), RedisLimiter(redis_url)
        client = aioredis.Redis.from_url(redis_url)
        limits = KeyLimits(rpm=100, tpm=1000)
        clock = 0.0
        tickets: dict[str, tuple[Ticket, Ticket]] = {}
        answers: list[tuple[str, object, object]] = []

        async def admit(name: str, reserve: int) -> None:
            got: list[object] = []
            pair: list[Ticket] = []
            for limiter in (local, shared):
                try:
                    if isinstance(limiter, LocalLimiter):
                        pair.append(limiter.admit_now("key:agree", limits, clock, reserve=reserve))
                    else:
                        pair.append(await limiter.admit("key:agree", limits, reserve=reserve))
                    got.append("admitted")
                except RateLimitError as exc:
                    assert exc.retry_after is not None
                    got.append(round(exc.retry_after))
            answers.append((name, *got))
            if len(pair) == 2:
                tickets[name] = (pair[0], pair[1])

        async def finish(name: str, tokens: int | None) -> None:
            mine, theirs = tickets[name]
            local.finish_now(mine, tokens, clock)
            await shared.finish(theirs, tokens)

        async def advance(seconds: float) -> None:
            nonlocal clock
            clock += seconds
            await _advance(client, shared._keys("key:agree")[:2], seconds)

        try:
            await admit("a", 400)
            await admit("b", 400)
            await admit("c", 400)  # 200 left: refused, 12 s
            await finish("a", 100)
            await admit("d", 400)
            await finish("b", 5000)  # 4600 beyond its reservation: 4500 in debt
            await finish("d", None)
            await advance(150)  # 2500 refilled: still 2000 in debt
            await admit("e", 100)  # refused for 126 s
            await advance(130)
            await admit("f", 100)
            await advance(3600)
            await admit("g", 1000)  # a full bucket again
            for name, mine, theirs in answers:
                assert mine == theirs, (name, mine, theirs)
            assert [a[1] for a in answers] == [
                "admitted",
                "admitted",
                12,
                "admitted",
                126,
                "admitted",
                "admitted",
            ]
        finally:
            await local.aclose()
            await shared.aclose()
            await client.aclose()

    asyncio.run(main())


def test_redis_keeps_token_debt_until_it_is_refilled(redis_url: str) -> None:
    """A bucket 9000 tokens in debt at tpm 1000 needs 10 minutes to refill: its key must live that long."""

    async def main() -> None:
        limiter = RedisLimiter(redis_url)
        client = aioredis.Redis.from_url(redis_url)
        try:
            limits = KeyLimits(tpm=1000)
            ticket = await limiter.admit("key:debt", limits)
            await limiter.finish(ticket, 10_000)
            ttl_ms = await client.pttl(limiter._keys("key:debt")[1])
            assert ttl_ms > 10 * 60_000, ttl_ms
            # a debt of centuries still gets a ttl Redis accepts (at most a year), and a clear 429
            tiny = KeyLimits(tpm=1)
            await limiter.finish(await limiter.admit("key:huge", tiny), 10**15)
            assert 0 < await client.pttl(limiter._keys("key:huge")[1]) <= 366 * 86_400_000
            with pytest.raises(RateLimitError, match="1 tokens per minute"):
                await limiter.admit("key:huge", tiny)
        finally:
            await limiter.aclose()
            await client.aclose()

    asyncio.run(main())


def test_redis_limiter_survives_a_redis_restart(redis_server: RedisServer) -> None:
    """The first admit after the server restarted (same socket, empty, no scripts loaded) succeeds."""

    async def main() -> None:
        limiter = RedisLimiter(redis_server.url)
        try:
            limits = KeyLimits(rpm=10, tpm=1000, max_concurrent=2)
            await limiter.finish(await limiter.admit("key:r", limits, reserve=10), 10)
            redis_server.restart()
            ticket = await limiter.admit("key:r", limits, reserve=10)
            await limiter.finish(ticket, 10)
            redis_server.restart()
            await limiter.finish(await limiter.admit("key:r", limits), 1)
        finally:
            await limiter.aclose()

    asyncio.run(main())


# ---- the middleware charges what a request ended with --------------------------------------------


@pytest.mark.parametrize(
    ("ending", "probe_admitted", "probe_refused"),
    [
        # a client close the forwarder did not report: the whole 900-token reservation stays charged
        ("silent close", None, 200),
        # a client close reported with the usage streamed so far (300): that is charged, 600 come back
        ("close with usage", 600, 800),
        # an answer whose usage the engine did not send: the reservation stands
        ("200 without usage", None, 200),
        # the gateway refused before any engine saw the request: nothing is charged
        ("refused before forwarding", 900, None),
    ],
)
def test_the_middleware_settles_the_reservation(
    ending: str, probe_admitted: int | None, probe_refused: int | None
) -> None:
    async def main() -> None:
        limits = KeyLimits(tpm=1000)
        limiter = LocalLimiter()
        gate = gate_with(limiter, limits)
        entered = asyncio.Event()

        async def handler(request: web.Request) -> web.StreamResponse:
            entered.set()
            if ending == "refused before forwarding":
                raise ModelNotFoundError("no model 'm' here")
            if ending == "200 without usage":
                request[OUTCOME] = Outcome(
                    status=200, prompt_tokens=None, completion_tokens=None, backend="a"
                )
                return web.json_response({"choices": []})
            try:
                await asyncio.Event().wait()  # a stream that the client ends
            except asyncio.CancelledError:
                if ending == "close with usage":
                    request[OUTCOME] = Outcome(
                        status=499, prompt_tokens=10, completion_tokens=290, backend="a"
                    )
                raise
            raise AssertionError("unreachable")

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        install(app, gate)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                call = asyncio.ensure_future(
                    session.post(
                        f"http://127.0.0.1:{port}/v1/chat/completions",
                        json=ask(890),  # 10 + 890 = 900 reserved
                        headers={"Authorization": f"Bearer {STATIC_KEY}"},
                    )
                )
                await asyncio.wait_for(entered.wait(), 10)
                if ending in ("silent close", "close with usage"):
                    call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    (await call).close()
            deadline = time.monotonic() + 10
            while limiter.inflight("static"):
                assert time.monotonic() < deadline, "the middleware never finished the request"
                await asyncio.sleep(0.01)
            who = principal(limits)
            if probe_refused is not None:
                with pytest.raises(RateLimitError):
                    await gate.admit(who, "chat/completions", ask(probe_refused - 10))
            if probe_admitted is not None:
                await gate.admit(who, "chat/completions", ask(probe_admitted - 10))
        finally:
            await runner.cleanup()

    asyncio.run(main())
