"""`Authorization: Bearer <key>` with the scheme in any case (RFC 7235), read by the one
authenticator, and through the running app with the security layer off and on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from wavefleet.errors import AuthenticationError
from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends.fake import FakeBackend, echo
from wavefleet.gateway.config import BackendConfig, GatewayConfig
from wavefleet.gateway.security.authn import Authenticator
from wavefleet.gateway.security.db import connect
from wavefleet.gateway.security.gate import SecurityGate
from wavefleet.gateway.security.keys import KeyCache, KeyStore
from wavefleet.gateway.security.settings import SecurityConfig

KEY = "sk-local-0123456789"
ACCEPTED = [f"Bearer {KEY}", f"bearer {KEY}", f"BEARER {KEY}", f"bEaReR {KEY}", f"Bearer   {KEY}"]
MISSING = [None, "", "Bearer", "Bearer ", f"Basic {KEY}", f"Bearer{KEY}", KEY]


@pytest.mark.parametrize("header", ACCEPTED)
def test_authenticator_accepts_the_scheme_in_any_case(header: str) -> None:
    principal = asyncio.run(Authenticator(static_keys=[KEY]).authenticate(header))
    assert principal.kind == "static"


@pytest.mark.parametrize("header", MISSING)
def test_no_bearer_token_is_a_missing_key(header: str | None) -> None:
    with pytest.raises(AuthenticationError, match="missing API key"):
        asyncio.run(Authenticator(static_keys=[KEY]).authenticate(header))


@pytest.mark.parametrize("header", [f"bearer {KEY}x", f"BEARER sk-{KEY}"])
def test_a_wrong_key_under_a_lowercase_scheme_is_still_refused(header: str) -> None:
    with pytest.raises(AuthenticationError, match="invalid API key"):
        asyncio.run(Authenticator(static_keys=[KEY]).authenticate(header))


@pytest.mark.parametrize("secured", [False, True], ids=["static-key-auth", "security-gate"])
def test_lowercase_bearer_through_the_app(secured: bool) -> None:
    async def main() -> None:
        config = GatewayConfig(
            backends=[BackendConfig(name="fake", url="http://127.0.0.1:9", models=["m"])],
            api_keys=[{"key": KEY}],
        )
        gate = SecurityGate.build(SecurityConfig(), static_keys=[KEY]) if secured else None
        app = create_app(config, backends={"fake": FakeBackend("fake", echo, models=["m"])}, security=gate)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/models"
        try:
            async with aiohttp.ClientSession() as session:
                for scheme, status in [("bearer", 200), ("BEARER", 200), ("Basic", 401)]:
                    async with session.get(url, headers={"Authorization": f"{scheme} {KEY}"}) as reply:
                        assert reply.status == status, (scheme, await reply.text())
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_a_missing_key_is_told_where_keys_come_from(tmp_path: Path) -> None:
    with pytest.raises(AuthenticationError, match="the key `wave serve` was given\\)$"):
        asyncio.run(Authenticator(static_keys=[KEY]).authenticate(None))
    cache = KeyCache(KeyStore(connect(tmp_path / "k.db")))
    with pytest.raises(AuthenticationError, match="was given or a key from `wave keys create`\\)$"):
        asyncio.run(Authenticator(static_keys=[KEY], cache=cache).authenticate(None))
