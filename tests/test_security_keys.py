"""API keys: stored as digests, shown once, refused alike whether unknown, revoked or expired."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from wavefleet.cli.keys import keys, parse_duration
from wavefleet.errors import AuthenticationError, UsageError
from wavefleet.gateway.security.authn import INVALID_KEY, Authenticator
from wavefleet.gateway.security.db import MIGRATIONS, connect, migrate, resolve_db_path
from wavefleet.gateway.security.keys import (
    KEY_PREFIX,
    KeyCache,
    KeyLimits,
    KeyStore,
    digest_of,
    estimated_bits,
    new_key,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "wave.db"


def auth(authenticator: Authenticator, header: str | None) -> object:
    return asyncio.run(authenticator.authenticate(header))


def test_created_key_is_random_prefixed_and_stored_only_as_digest(db_path: Path) -> None:
    store = KeyStore(connect(db_path))
    first = store.create("laptop")
    second = store.create("phone")
    assert first.secret.startswith(f"{KEY_PREFIX}{first.record.key_id}_")
    assert first.secret != second.secret
    assert len(first.secret) > 40
    raw = db_path.read_bytes() + (db_path.parent / "wave.db-wal").read_bytes()
    assert first.secret.encode() not in raw
    assert digest_of(first.secret).hex().encode() in raw


def test_migrations_apply_once_each(db_path: Path) -> None:
    db = connect(db_path)
    assert migrate(db) == []  # connect applied them all
    names = [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == sorted(m.__name__ for m in MIGRATIONS)


def test_db_path_comes_from_option_then_env_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("WAVE_DB", raising=False)
    assert resolve_db_path(None) == tmp_path / "xdg" / "wavefleet" / "wave.db"
    monkeypatch.setenv("WAVE_DB", str(tmp_path / "env.db"))
    assert resolve_db_path(None) == tmp_path / "env.db"
    assert resolve_db_path(tmp_path / "opt.db") == tmp_path / "opt.db"


def test_key_authenticates_with_its_models_and_limits(db_path: Path) -> None:
    store = KeyStore(connect(db_path))
    created = store.create("ci", models=["m1"], limits=KeyLimits(rpm=5, max_tokens=64))
    cache = KeyCache(KeyStore(connect(db_path)))
    cache.refresh()
    principal = auth(Authenticator(cache=cache), f"Bearer {created.secret}")
    assert principal.ident == f"key:{created.record.key_id}"
    assert principal.may_use("m1") and not principal.may_use("m2")
    assert principal.limits == KeyLimits(rpm=5, max_tokens=64)


def test_unknown_revoked_expired_and_wrong_keys_get_one_answer(db_path: Path) -> None:
    store = KeyStore(connect(db_path))
    live = store.create("live")
    revoked = store.create("revoked")
    store.revoke(revoked.record.key_id)
    expired = store.create("expired", expires_at=time.time() - 1)
    cache = KeyCache(KeyStore(connect(db_path)))
    cache.refresh()
    authenticator = Authenticator(cache=cache)
    messages = set()
    for secret in (
        revoked.secret,
        expired.secret,
        live.secret[:-1] + "x",
        "wave-00000000_nothing",
        "sk-other",
    ):
        with pytest.raises(AuthenticationError) as caught:
            auth(authenticator, f"Bearer {secret}")
        messages.add((caught.value.status, caught.value.message, caught.value.code))
    assert messages == {(401, INVALID_KEY, "invalid_api_key")}
    assert auth(authenticator, f"Bearer {live.secret}").kind == "key"


def test_missing_header_is_401_and_open_gateway_lets_anyone_in(db_path: Path) -> None:
    with pytest.raises(AuthenticationError, match="missing API key"):
        auth(Authenticator(static_keys=["sk-local-0123456789"]), None)
    with pytest.raises(AuthenticationError, match="missing API key"):
        auth(Authenticator(static_keys=["sk-local-0123456789"]), "Basic abc")
    assert auth(Authenticator(), None).ident == "anonymous"


def test_static_key_still_works_beside_stored_keys(db_path: Path) -> None:
    store = KeyStore(connect(db_path))
    created = store.create("laptop")
    cache = KeyCache(KeyStore(connect(db_path)))
    cache.refresh()
    authenticator = Authenticator(
        static_keys=["sk-local-0123456789"], cache=cache, static_limits=KeyLimits(rpm=7)
    )
    static = auth(authenticator, "Bearer sk-local-0123456789")
    assert static.ident == "static" and static.limits.rpm == 7
    assert auth(authenticator, f"Bearer {created.secret}").ident.startswith("key:")


def test_cache_sees_a_revocation_from_another_connection(db_path: Path) -> None:
    writer = KeyStore(connect(db_path))
    created = writer.create("laptop")
    cache = KeyCache(KeyStore(connect(db_path)))
    assert cache.refresh() is True
    assert cache.refresh() is False  # nothing changed: no reload
    authenticator = Authenticator(cache=cache)
    assert auth(authenticator, f"Bearer {created.secret}").kind == "key"
    writer.revoke(created.record.key_id)
    assert cache.refresh() is True
    with pytest.raises(AuthenticationError):
        auth(authenticator, f"Bearer {created.secret}")


WEAK_KEYS = [
    "short",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "abcdefghijklmnopqrstuvwxyz",
    "sk-bench-0123456789abcdef",
    "0123456789012345678901234567890123456789",
    "abcabcabcabcabcabcabcabcabcabcabcabcabcabc",
    "Passw0rd!Passw0rd!Passw0rd!Passw0rd!",
    "password1234567890abcd",
    "kqzmvtrpxwhdjgfbnlsc",  # 20 random lower-case letters: about 94 bits
    "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrq",
]


@pytest.mark.parametrize("secret", WEAK_KEYS)
def test_import_refuses_low_entropy_keys(db_path: Path, secret: str) -> None:
    store = KeyStore(connect(db_path))
    with pytest.raises(UsageError, match="128 bits") as caught:
        store.import_secret("vault", secret)
    assert "wave keys create" in str(caught.value) and "openssl rand -base64 32" in str(caught.value)
    assert store.list() == []


def test_import_refuses_keys_that_cannot_travel_in_a_header(db_path: Path) -> None:
    store = KeyStore(connect(db_path))
    for secret in (
        secrets.token_urlsafe(32) + " tail",
        secrets.token_urlsafe(32) + "é",
        "\t" + secrets.token_hex(32),
    ):
        with pytest.raises(UsageError, match="printable ASCII"):
            store.import_secret("vault", secret)


def test_import_accepts_keys_made_by_the_usual_tools(db_path: Path) -> None:
    store = KeyStore(connect(db_path))
    strong = [
        base64.b64encode(secrets.token_bytes(32)).decode(),  # openssl rand -base64 32
        base64.b64encode(secrets.token_bytes(24)).decode(),  # openssl rand -base64 24: 192 bits
        secrets.token_hex(32),  # openssl rand -hex 32
        secrets.token_urlsafe(32),
        "sk-" + secrets.token_urlsafe(36),
        new_key()[1],
        "3f9a0c1d-8e2b-4c7a-9f1e-6d5b4a3c2e1f-" + secrets.token_hex(8),
    ]
    for index, secret in enumerate(strong):
        record = store.import_secret(f"k{index}", secret)
        assert record.digest == digest_of(secret)


def test_random_128_bit_keys_are_never_refused(db_path: Path) -> None:
    # 16 random bytes as hex (32 characters) or base64 (24) are exactly 128 bits: the estimate must
    # not count chance repeats against them
    for _ in range(3000):
        for secret in (secrets.token_hex(16), base64.b64encode(secrets.token_bytes(16)).decode()):
            assert estimated_bits(secret) >= 128, secret


def test_cli_import_explains_a_weak_key(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("WEAK_KEY", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    result = runner.invoke(keys, ["import", "--name", "v", "--from-env", "WEAK_KEY", "--db", str(db_path)])
    assert isinstance(result.exception, UsageError)
    assert "128 bits" in str(result.exception) and "openssl rand -base64 32" in str(result.exception)
    strong = secrets.token_urlsafe(32)
    monkeypatch.setenv("GOOD_KEY", strong)
    result = runner.invoke(keys, ["import", "--name", "v", "--from-env", "GOOD_KEY", "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    listed = json.loads(runner.invoke(keys, ["list", "--format", "json", "--db", str(db_path)]).stdout)
    assert [k["key_id"] for k in listed] == [result.stdout.strip()]


def test_cli_create_list_revoke(db_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        keys,
        ["create", "--name", "ci", "--model", "m1", "--rpm", "30", "--expires", "7d", "--db", str(db_path)],
    )
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[0]
    assert secret.startswith(KEY_PREFIX)
    listed = json.loads(runner.invoke(keys, ["list", "--format", "json", "--db", str(db_path)]).stdout)
    assert [(k["name"], k["models"], k["rpm"]) for k in listed] == [("ci", ["m1"], 30)]
    assert listed[0]["expires_at"] == pytest.approx(time.time() + 7 * 86400, abs=60)
    assert secret not in runner.invoke(keys, ["list", "--db", str(db_path)]).output
    result = runner.invoke(keys, ["revoke", listed[0]["key_id"], "--db", str(db_path)])
    assert result.exit_code == 0 and "revoked" in result.output
    assert json.loads(runner.invoke(keys, ["list", "--format", "json", "--db", str(db_path)]).stdout) == []
    result = runner.invoke(keys, ["revoke", "ci", "--db", str(db_path)])
    assert isinstance(result.exception, UsageError)


def test_cli_refuses_bad_limits_and_durations(db_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(keys, ["create", "--name", "x", "--rpm", "0", "--db", str(db_path)])
    assert isinstance(result.exception, UsageError) and "--rpm" in str(result.exception)
    with pytest.raises(UsageError, match="not a duration"):
        parse_duration("soon")
    assert parse_duration("12h") == 12 * 3600


def test_a_corrupt_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "wave.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match="cannot open the database"):
        connect(bad)
