"""`wave keys`: create, import, list and revoke the gateway's API keys."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console

from wavefleet.errors import UsageError
from wavefleet.gateway.security.db import connect, resolve_db_path
from wavefleet.gateway.security.keys import KeyLimits, KeyRecord, KeyStore
from wavefleet.terminal import fit, folding_table

__all__ = ["keys", "parse_duration"]

DB = click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="WAVE_DB",
    default=None,
    help="The gateway's database [env WAVE_DB; default $XDG_DATA_HOME/wavefleet/wave.db].",
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """`30d`, `12h`, `90m`, `3600s` or `2w` in seconds."""
    value, unit = text[:-1], text[-1:].lower()
    try:
        seconds = float(value) * _UNITS[unit]
    except (KeyError, ValueError):
        raise UsageError(f"{text!r} is not a duration: use a number and a unit, e.g. 30d, 12h, 90m") from None
    if seconds <= 0:
        raise UsageError(f"{text!r}: a duration must be positive")
    return seconds


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC") if ts is not None else "-"


def _limits(limits: KeyLimits) -> str:
    named = (
        ("rpm", limits.rpm),
        ("tpm", limits.tpm),
        ("at once", limits.max_concurrent),
        ("max_tokens", limits.max_tokens),
    )
    return ", ".join(f"{name} {value}" for name, value in named if value is not None) or "none"


def _as_json(record: KeyRecord) -> dict[str, object]:
    return {
        "key_id": record.key_id,
        "name": record.name,
        "models": sorted(record.models) if record.models is not None else None,
        "expires_at": record.expires_at,
        "rpm": record.limits.rpm,
        "tpm": record.limits.tpm,
        "max_concurrent": record.limits.max_concurrent,
        "max_tokens": record.limits.max_tokens,
        "created_at": record.created_at,
        "revoked_at": record.revoked_at,
    }


def _limit_options(command: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(
        [
            click.option(
                "--model", "models", multiple=True, help="A model it may use (repeatable) [default: all]."
            ),
            click.option("--expires", default=None, help="Lifetime, e.g. 30d, 12h [default: never]."),
            click.option("--rpm", type=int, default=None, help="Requests per minute [default: no limit]."),
            click.option("--tpm", type=int, default=None, help="Tokens (prompt + completion) per minute."),
            click.option("--max-concurrent", type=int, default=None, help="Requests at once."),
            click.option(
                "--max-tokens", type=int, default=None, help="Largest max_tokens × n a request may ask."
            ),
        ]
    ):
        command = option(command)
    return command


@click.group()
def keys() -> None:
    """Create, list and revoke the gateway's API keys.

    Keys are stored only as SHA-256 digests; a new key is shown once, when it is made.
    `wave serve --db` (or WAVE_DB) makes the gateway accept them; a revoked key stops
    working within a second.

    \b
    Examples:
      wave keys create --name laptop --model llama-3.1-8b --rpm 60 --expires 30d
      wave keys list
      wave keys revoke 3f9a0c1d
      curl -H "Authorization: Bearer wave-3f9a0c1d_..." localhost:8080/v1/models
    """


@keys.command()
@click.option("--name", required=True, help="Who or what the key is for.")
@_limit_options
@DB
def create(
    name: str,
    models: tuple[str, ...],
    expires: str | None,
    rpm: int | None,
    tpm: int | None,
    max_concurrent: int | None,
    max_tokens: int | None,
    db: Path | None,
) -> None:
    """Make a new key and print it (once: only its digest is stored).

    \b
    Examples:
      wave keys create --name laptop
      wave keys create --name ci --model llama-3.2-3b --rpm 30 --tpm 20000 --max-concurrent 2 --expires 7d
    """
    store = KeyStore(connect(resolve_db_path(db)))
    expires_at = time.time() + parse_duration(expires) if expires else None
    created = store.create(
        name,
        models=list(models) or None,
        expires_at=expires_at,
        limits=KeyLimits(rpm=rpm, tpm=tpm, max_concurrent=max_concurrent, max_tokens=max_tokens),
    )
    click.echo(created.secret)
    Console(stderr=True, highlight=False).print(
        f"key {created.record.key_id} ({name}) made; copy it now, it is not shown again"
    )


@keys.command(name="import")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option(
    "--from-env",
    "env",
    required=True,
    metavar="VAR",
    help="Environment variable holding the key (never a flag).",
)
@_limit_options
@DB
def import_key(
    name: str,
    env: str,
    models: tuple[str, ...],
    expires: str | None,
    rpm: int | None,
    tpm: int | None,
    max_concurrent: int | None,
    max_tokens: int | None,
    db: Path | None,
) -> None:
    """Store the digest of a key made elsewhere (kept in Vault, say), read from an environment variable.

    The key must be printable ASCII without spaces and carry at least 128 bits by estimate
    (each character counts by the character classes the key uses; runs and repeats such as
    aaaa, abcd or abcdabcd count nothing). `openssl rand -base64 32` makes one of 256 bits.

    \b
    Examples:
      VAULT_KEY=$(vault kv get -field=key secret/wave) wave keys import --name vault --from-env VAULT_KEY
      KEY=$(openssl rand -base64 32) wave keys import --name laptop --from-env KEY
    """
    import os

    secret = os.environ.get(env)
    if not secret:
        raise UsageError(f"${env} is empty or unset: export the key in it first")
    store = KeyStore(connect(resolve_db_path(db)))
    expires_at = time.time() + parse_duration(expires) if expires else None
    record = store.import_secret(
        name,
        secret,
        models=list(models) or None,
        expires_at=expires_at,
        limits=KeyLimits(rpm=rpm, tpm=tpm, max_concurrent=max_concurrent, max_tokens=max_tokens),
    )
    click.echo(record.key_id)


@keys.command(name="list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@DB
def list_keys(include_revoked: bool, output_format: str, db: Path | None) -> None:
    """List keys: id, name, models, limits, expiry (never the keys themselves).

    \b
    Examples:
      wave keys list
      wave keys list --all --format json
    """
    records = KeyStore(connect(resolve_db_path(db))).list(include_revoked=include_revoked)
    if output_format == "json":
        click.echo(json.dumps([_as_json(r) for r in records], indent=2))
        return
    table = folding_table(
        "id",
        "name",
        "models",
        "limits",
        "expires",
        "created",
        "revoked",
        title="API keys",
    )
    now = time.time()
    for r in records:
        expires = _when(r.expires_at) + (
            " (expired)" if r.expires_at is not None and r.expires_at <= now else ""
        )
        table.add_row(
            r.key_id,
            r.name,
            ", ".join(sorted(r.models)) if r.models is not None else "all",
            _limits(r.limits),
            expires,
            _when(r.created_at),
            _when(r.revoked_at),
        )
    console = Console(highlight=False)
    console.print(
        fit(table, console) if records else "no keys (make one with `wave keys create --name NAME`)"
    )


@keys.command()
@click.argument("key")
@DB
def revoke(key: str, db: Path | None) -> None:
    """Revoke a key by its id (or its name, if only one live key has it).

    \b
    Example:
      wave keys revoke 3f9a0c1d
    """
    record = KeyStore(connect(resolve_db_path(db))).revoke(key)
    click.echo(f"revoked {record.key_id} ({record.name})")
