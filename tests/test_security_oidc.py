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

from wavefleet.errors import AuthenticationError, UsageError
from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends.fake import FakeBackend, echo
from wavefleet.gateway.config import BackendConfig, GatewayConfig
from wavefleet.gateway.security.authn import Authenticator
from wavefleet.gateway.security.gate import SecurityGate
from wavefleet.gateway.security.oidc import OidcConfig, OidcVerifier
from wavefleet.gateway.security.screening import Action, ScreeningConfig
from wavefleet.gateway.security.settings import SecurityConfig

AUDIENCE = "wave-gateway"


class Issuer:
    """A tiny identity provider: publishes its keys and signs tokens; keys can be rotated."""

    def __init__(self) -> None:
        self.url = ""
        self.keys: dict[str, Any] = {}
        self.jwks_hits = 0
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
        async def discovery(request: web.Request) -> web.Response:
            return web.json_response({"issuer": self.url + "/", "jwks_uri": self.url + "/jwks"})

        async def jwks(request: web.Request) -> web.Response:
            self.jwks_hits += 1
            return web.json_response(self.jwks())

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

    async def body(verifier: OidcVerifier) -> None:
        assert (await verifier.verify(issuer.token()))["sub"] == "alice"
        await asyncio.sleep(1.1)  # past refresh_min_interval_s since the start-up fetch
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

    with_verifier(issuer, body, refresh_min_interval_s=1.0)


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
