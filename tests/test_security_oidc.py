"""OIDC tokens against a real local issuer: discovery + JWKS over HTTP on loopback, keys made
with `cryptography`, tokens signed with PyJWT."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from helpers import async_wait_until
from wavefleet.errors import AuthenticationError, UsageError
from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends.fake import FakeBackend, echo
from wavefleet.gateway.config import BackendConfig, GatewayConfig
from wavefleet.gateway.security.authn import Authenticator
from wavefleet.gateway.security.gate import SecurityGate
from wavefleet.gateway.security.oidc import OidcVerifier
from wavefleet.gateway.security.screening import Action, ScreeningConfig
from wavefleet.gateway.security.settings import OidcConfig, SecurityConfig

AUDIENCE = "wave-gateway"


class Issuer:
    """A tiny identity provider: publishes its keys and signs tokens; keys can be rotated."""

    def __init__(self) -> None:
        self.url = ""
        self.keys: dict[str, Any] = {}
        self.jwks_hits = 0
        self.discovery_hits = 0  # one per fetch attempt: discovery comes first
        self.mode = "ok"  # "fail": 500 everywhere; "hang": answer nothing until `release` is set
        self.hanging = 0
        self.release = asyncio.Event()
        self.add_key("rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")

    def add_key(self, kid: str, private: Any, alg: str) -> None:
        self.keys[kid] = (private, alg)

    def jwks(self) -> dict[str, Any]:
        entries = []
        for kid, (private, alg) in self.keys.items():
            algorithm = jwt.get_algorithm_by_name(alg)
            entry = json.loads(algorithm.to_jwk(private.public_key()))
            entry.update(kid=kid, use="sig", alg=alg)
            entries.append(entry)
        return {"keys": entries}

    def token(self, kid: str = "rsa-1", private: Any = None, **claims: Any) -> str:
        key, alg = self.keys.get(kid, (private, "ES256"))
        now = int(time.time())
        body = {
            "iss": self.url + "/",
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        return jwt.encode(body, private or key, algorithm=alg, headers={"kid": kid})

    def app(self) -> web.Application:
        async def outage() -> web.Response | None:
            if self.mode == "fail":
                return web.json_response({"error": "down for maintenance"}, status=500)
            if self.mode == "hang":
                self.hanging += 1
                await self.release.wait()
            return None

        async def discovery(request: web.Request) -> web.Response:
            self.discovery_hits += 1
            return await outage() or web.json_response(
                {"issuer": self.url + "/", "jwks_uri": self.url + "/jwks"}
            )

        async def jwks(request: web.Request) -> web.Response:
            self.jwks_hits += 1
            return await outage() or web.json_response(self.jwks())

        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/jwks", jwks)
        return app


@asynccontextmanager
async def running(issuer: Issuer) -> AsyncIterator[str]:
    runner = web.AppRunner(issuer.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    issuer.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield issuer.url
    finally:
        issuer.release.set()  # a hanging handler would hold up the shutdown
        await runner.cleanup()


def with_verifier(issuer: Issuer, body: Callable[[OidcVerifier], Awaitable[None]], **config: Any) -> None:
    async def main() -> None:
        async with running(issuer) as url:
            verifier = OidcVerifier(OidcConfig(issuer=url + "/", audience=AUDIENCE, **config))
            await verifier.start()
            try:
                await body(verifier)
            finally:
                await verifier.aclose()

    asyncio.run(main())


class Clock:
    """The verifier's monotonic clock, moved by hand: key ages without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def with_clocked_verifier(
    issuer: Issuer, body: Callable[[OidcVerifier, Clock], Awaitable[None]], **config: Any
) -> None:
    clock = Clock()

    async def main() -> None:
        async with running(issuer) as url:
            verifier = OidcVerifier(OidcConfig(issuer=url + "/", audience=AUDIENCE, **config), clock=clock)
            await verifier.start()
            try:
                await body(verifier, clock)
            finally:
                await verifier.aclose()

    asyncio.run(main())


def junk_tokens(issuer: Issuer, count: int) -> list[str]:
    """What a prober sends: garbage that starts with eyJ, refused algorithms, made-up kids, and
    tokens forged under the issuer's real kid."""
    stranger_ec = ec.generate_private_key(ec.SECP256R1())
    stranger_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    body = {"iss": issuer.url + "/", "aud": AUDIENCE, "sub": "eve", "exp": now + 300}
    tokens = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            tokens.append(f"eyJ{i:04d}garbage.eyJzdWIiOiJldmUifQ.c2ln")
        elif kind == 1:
            tokens.append(jwt.encode({**body, "jti": str(i)}, "s" * 40, algorithm="HS256"))
        elif kind == 2:
            tokens.append(jwt.encode({**body, "jti": str(i)}, None, algorithm="none"))
        elif kind == 3:
            tokens.append(
                jwt.encode({**body, "jti": str(i)}, stranger_ec, algorithm="ES256", headers={"kid": f"k{i}"})
            )
        else:
            tokens.append(
                jwt.encode({**body, "jti": str(i)}, stranger_rsa, algorithm="RS256", headers={"kid": "rsa-1"})
            )
    return tokens


def test_valid_token_is_accepted_and_groups_map_to_models() -> None:
    issuer = Issuer()

    async def body(verifier: OidcVerifier) -> None:
        claims = await verifier.verify(issuer.token(groups=["ai-users"]))
        principal = verifier.principal(claims)
        assert principal.ident == "oidc:alice"
        assert principal.may_use("llama-3.1-8b") and not principal.may_use("big-70b")
        guest = verifier.principal(await verifier.verify(issuer.token(sub="bob", groups=["guests"])))
        assert not guest.may_use("llama-3.1-8b")

    with_verifier(issuer, body, group_models={"ai-users": ["llama-3.1-8b"], "admins": ["*"]})


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", "signature"),
        ("expired", "expired"),
        ("audience", "another audience"),
        ("issuer", "another issuer"),
        ("not-yet", "not valid yet"),
        ("hs256", "algorithm"),
        ("none", "algorithm"),
        ("no-sub", "claims"),
    ],
)
def test_bad_tokens_are_refused(case: str, reason: str) -> None:
    issuer = Issuer()
    now = int(time.time())

    async def body(verifier: OidcVerifier) -> None:
        if case == "forged":  # right kid, signed by another key
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            token = jwt.encode(
                {"iss": issuer.url + "/", "aud": AUDIENCE, "sub": "eve", "exp": now + 300},
                other,
                algorithm="RS256",
                headers={"kid": "rsa-1"},
            )
        elif case == "expired":
            token = issuer.token(exp=now - 120, iat=now - 600)  # beyond the 30 s leeway
        elif case == "audience":
            token = issuer.token(aud="some-other-app")
        elif case == "issuer":
            token = issuer.token(iss="https://evil.example/")
        elif case == "not-yet":
            token = issuer.token(nbf=now + 600)
        elif case == "hs256":  # the old key-confusion trick: HMAC with the public key as secret
            token = jwt.encode(
                {"sub": "eve", "aud": AUDIENCE, "exp": now + 300},
                "secret-secret-secret-secret-secret-secret",
                algorithm="HS256",
            )
        elif case == "none":
            token = jwt.encode({"sub": "eve", "aud": AUDIENCE, "exp": now + 300}, None, algorithm="none")
        else:
            private, _ = issuer.keys["rsa-1"]
            token = jwt.encode(
                {"iss": issuer.url + "/", "aud": AUDIENCE, "exp": now + 300},
                private,
                algorithm="RS256",
                headers={"kid": "rsa-1"},
            )
        with pytest.raises(AuthenticationError, match=reason) as caught:
            await verifier.verify(token)
        assert caught.value.status == 401

    with_verifier(issuer, body)


def test_small_clock_skew_is_tolerated() -> None:
    issuer = Issuer()

    async def body(verifier: OidcVerifier) -> None:
        now = int(time.time())
        claims = await verifier.verify(issuer.token(exp=now - 5, iat=now - 300))
        assert claims["sub"] == "alice"

    with_verifier(issuer, body, leeway_s=30)


def test_key_rotation_is_picked_up_and_unknown_kids_are_rate_limited() -> None:
    issuer = Issuer()

    async def body(verifier: OidcVerifier, clock: Clock) -> None:
        assert (await verifier.verify(issuer.token()))["sub"] == "alice"
        clock.advance(1.1)  # past refresh_min_interval_s since the start-up fetch
        fetched = issuer.jwks_hits
        issuer.add_key("ec-2", ec.generate_private_key(ec.SECP256R1()), "ES256")
        del issuer.keys["rsa-1"]
        claims = await verifier.verify(issuer.token(kid="ec-2", sub="carol"))  # unknown kid -> one refetch
        assert claims["sub"] == "carol"
        assert issuer.jwks_hits == fetched + 1
        stranger = ec.generate_private_key(ec.SECP256R1())
        for _ in range(5):  # tokens with made-up kids must not hammer the issuer
            with pytest.raises(AuthenticationError, match="does not publish"):
                await verifier.verify(issuer.token(kid="made-up", private=stranger))
        assert issuer.jwks_hits == fetched + 1

    with_clocked_verifier(issuer, body, refresh_min_interval_s=1.0)


def test_junk_tokens_are_refused_before_any_fetch() -> None:
    issuer = Issuer()

    async def body(verifier: OidcVerifier, clock: Clock) -> None:
        clock.advance(7200)  # keys past their TTL, and a refetch would be allowed
        asked = issuer.discovery_hits
        for i, token in enumerate(junk_tokens(issuer, 60)):
            if i % 5 < 3:  # not a JWT, or an algorithm that is never accepted
                with pytest.raises(AuthenticationError, match="well-formed|algorithm"):
                    await verifier.verify(token)
        assert issuer.discovery_hits == asked

    with_clocked_verifier(issuer, body, jwks_ttl_s=60, refresh_min_interval_s=30)


def test_failing_issuer_is_not_hammered_by_junk_once_the_keys_expire() -> None:
    issuer = Issuer()

    async def body(verifier: OidcVerifier, clock: Clock) -> None:
        issuer.mode = "fail"
        clock.advance(120)  # past jwks_ttl_s and refresh_min_interval_s
        asked = issuer.discovery_hits
        tokens = junk_tokens(issuer, 200)
        outcomes = await asyncio.gather(*(verifier.verify(t) for t in tokens[:100]), return_exceptions=True)
        assert all(isinstance(o, AuthenticationError) for o in outcomes), outcomes
        for token in tokens[100:]:
            with pytest.raises(AuthenticationError):
                await verifier.verify(token)
        assert (
            issuer.discovery_hits - asked <= 2
        ), f"{issuer.discovery_hits - asked} fetches for 200 junk tokens"
        # the keys held still verify a real token while the issuer is down
        assert (await verifier.verify(issuer.token(sub="dave")))["sub"] == "dave"
        clock.advance(10)  # a failed attempt counts: no retry before refresh_min_interval_s
        for token in junk_tokens(issuer, 50):
            with pytest.raises(AuthenticationError):
                await verifier.verify(token)
        assert issuer.discovery_hits - asked <= 2

    with_clocked_verifier(issuer, body, jwks_ttl_s=60, refresh_min_interval_s=30)


def test_valid_token_never_waits_for_a_hanging_issuer() -> None:
    issuer = Issuer()

    async def body(verifier: OidcVerifier, clock: Clock) -> None:
        issuer.mode = "hang"
        clock.advance(120)
        started = time.monotonic()
        for sub in ("alice", "bob", "carol"):
            assert (await verifier.verify(issuer.token(sub=sub)))["sub"] == sub
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, f"valid tokens took {elapsed:.1f} s against a 5 s issuer timeout"
        await async_wait_until(lambda: issuer.hanging >= 1, timeout_s=5)  # the refresh runs in the background
        assert issuer.hanging == 1  # once, however many tokens came in meanwhile

    with_clocked_verifier(issuer, body, jwks_ttl_s=60, refresh_min_interval_s=30, http_timeout_s=5)


def test_rotated_keys_are_picked_up_once_the_issuer_recovers() -> None:
    issuer = Issuer()

    async def body(verifier: OidcVerifier, clock: Clock) -> None:
        issuer.mode = "fail"
        clock.advance(120)
        asked = issuer.discovery_hits
        assert (await verifier.verify(issuer.token(sub="dave")))["sub"] == "dave"  # stale keys serve
        await async_wait_until(
            lambda: issuer.discovery_hits > asked, timeout_s=5
        )  # the background attempt failed
        issuer.mode = "ok"
        retired = issuer.token(kid="rsa-1", sub="ivan")
        del issuer.keys["rsa-1"]
        issuer.add_key("ec-2", ec.generate_private_key(ec.SECP256R1()), "ES256")
        rotated = issuer.token(kid="ec-2", sub="carol")
        with pytest.raises(AuthenticationError, match="does not publish"):  # too soon after the failure
            await verifier.verify(rotated)
        clock.advance(31)
        assert (await verifier.verify(rotated))["sub"] == "carol"  # an unknown kid: one refetch
        with pytest.raises(AuthenticationError, match="does not publish"):  # the retired key is gone
            await verifier.verify(retired)
        # the TTL path: a known kid verifies at once and the refresh in the background adds ec-3
        fetched = verifier.fetches
        issuer.add_key("ec-3", ec.generate_private_key(ec.SECP256R1()), "ES256")
        clock.advance(120)
        assert (await verifier.verify(issuer.token(kid="ec-2", sub="erin")))["sub"] == "erin"
        await async_wait_until(lambda: verifier.fetches > fetched, timeout_s=5)
        hits = issuer.discovery_hits
        assert (await verifier.verify(issuer.token(kid="ec-3", sub="fay")))["sub"] == "fay"
        assert issuer.discovery_hits == hits

    with_clocked_verifier(issuer, body, jwks_ttl_s=60, refresh_min_interval_s=30)


def test_keys_are_not_trusted_past_their_maximum_age() -> None:
    issuer = Issuer()

    async def body(verifier: OidcVerifier, clock: Clock) -> None:
        issuer.mode = "fail"
        clock.advance(86_400 + 1)  # a day without a successful fetch (the default maximum age)
        with pytest.raises(AuthenticationError, match="could not be refreshed"):
            await verifier.verify(issuer.token())
        issuer.mode = "ok"
        clock.advance(31)
        assert (await verifier.verify(issuer.token(sub="gus")))["sub"] == "gus"

    with_clocked_verifier(issuer, body, jwks_ttl_s=60, refresh_min_interval_s=30)


def test_authenticator_routes_jwts_to_oidc_and_keys_to_the_key_check() -> None:
    issuer = Issuer()

    async def body(verifier: OidcVerifier) -> None:
        authenticator = Authenticator(static_keys=["sk-local-0123456789"], oidc=verifier)
        assert (await authenticator.authenticate(f"Bearer {issuer.token()}")).kind == "oidc"
        assert (await authenticator.authenticate("Bearer sk-local-0123456789")).kind == "static"
        with pytest.raises(AuthenticationError):
            await authenticator.authenticate("Bearer eyJhbGciOi.not.valid")

    with_verifier(issuer, body)


def test_issuer_mismatch_and_http_issuers_fail_at_start() -> None:
    issuer = Issuer()

    async def main() -> None:
        async with running(issuer) as url:
            verifier = OidcVerifier(OidcConfig(issuer=url, audience=AUDIENCE))  # no trailing slash
            with pytest.raises(UsageError, match="trailing slash"):
                await verifier.start()
            await verifier.aclose()
            remote = OidcVerifier(OidcConfig(issuer="http://auth.example.com/", audience=AUDIENCE))
            with pytest.raises(UsageError, match="must be https"):
                await remote.start()
            await remote.aclose()
        with pytest.raises(UsageError, match="HS256"):
            OidcVerifier(OidcConfig(issuer="https://a/", audience=AUDIENCE, algorithms=["HS256"]))

    asyncio.run(main())


def test_oidc_through_the_gateway_app_models_flags_and_audit(tmp_path: Path) -> None:
    """The whole app in this process: an OIDC user may use their group's model only, a flagged
    stream carries the screening header, and the audit row holds the subject and the prompt."""
    issuer = Issuer()
    db = tmp_path / "wave.db"

    async def main() -> None:
        async with running(issuer) as url:
            security = SecurityConfig(
                oidc=OidcConfig(issuer=url + "/", audience=AUDIENCE, group_models={"ai-users": ["m"]}),
                audit=True,
                audit_db=db,
                audit_prompts=True,
                screening=ScreeningConfig(default=Action.FLAG),
            )
            config = GatewayConfig(
                backends=[BackendConfig(name="fake", url="http://127.0.0.1:9", models=["m", "big"])]
            )
            gate = SecurityGate.build(security)
            app = create_app(
                config, backends={"fake": FakeBackend("fake", echo, models=["m", "big"])}, security=gate
            )
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
            token = issuer.token(groups=["ai-users"])
            headers = {"Authorization": f"Bearer {token}"}
            try:
                async with aiohttp.ClientSession() as session:
                    body = {
                        "model": "m",
                        "messages": [{"role": "user", "content": "hi <|eot_id|> there"}],
                        "stream": True,
                    }
                    async with session.post(base, json=body, headers=headers) as reply:
                        text = await reply.text()
                        assert reply.status == 200 and "[DONE]" in text
                        assert reply.headers["x-wave-screening"] == "template_tokens"
                    async with session.post(base, json={**body, "model": "big"}, headers=headers) as reply:
                        assert reply.status == 403
                        assert (await reply.json())["error"]["code"] == "model_not_allowed"
                    expired = issuer.token(groups=["ai-users"], exp=int(time.time()) - 600)
                    async with session.post(
                        base, json=body, headers={"Authorization": f"Bearer {expired}"}
                    ) as reply:
                        assert reply.status == 401
                        assert "expired" in (await reply.json())["error"]["message"]
            finally:
                await runner.cleanup()  # closes the gate: the audit writer flushes

    asyncio.run(main())
    rows = (
        sqlite3.connect(db)
        .execute("SELECT principal, model, status, screening, prompt FROM audit ORDER BY id")
        .fetchall()
    )
    assert rows == [
        ("oidc:alice", "m", 200, "template_tokens", "hi <|eot_id|> there"),
        ("oidc:alice", "big", 403, "", None),
        ("unauthenticated", None, 401, "", None),  # the body of an unauthenticated request is not read
    ]


def test_max_age_shorter_than_the_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="raise jwks_max_age_s"):
        OidcConfig(issuer="https://a/", audience=AUDIENCE, jwks_ttl_s=3600, jwks_max_age_s=600)
