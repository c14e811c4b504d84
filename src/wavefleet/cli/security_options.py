"""`wave serve`'s security flags as one decorator that hands the command one `SecurityFlags`.

@click.command()
@security_options
def serve(..., security: SecurityFlags) -> None: ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from wavefleet.gateway.security.options import SecurityFlags
from wavefleet.gateway.security.screening import RULES, Action

__all__ = ["security_options"]

_PATH = click.Path(path_type=Path, dir_okay=False)

_OPTIONS = [
    click.option(
        "--db",
        type=_PATH,
        envvar="WAVE_DB",
        show_envvar=True,
        default=None,
        help="Accept the keys of `wave keys create` stored in this database.",
    ),
    click.option(
        "--audit",
        is_flag=True,
        help="Write the audit trail (one row per request) to the database `wave audit` reads by default: "
        "--db, else WAVE_DB, else $XDG_DATA_HOME/wavefleet/wave.db.",
    ),
    click.option(
        "--audit-db",
        type=_PATH,
        default=None,
        help="Write the audit trail to this database instead; read it with `wave audit --db PATH`.",
    ),
    click.option(
        "--audit-prompts", is_flag=True, help="Also keep prompt text in the audit trail (off by default)."
    ),
    click.option(
        "--screening",
        type=click.Choice([a.value for a in Action]),
        default=None,
        help="Action of every screening rule: off, log (audit only), flag (x-wave-screening header), block (400).",
    ),
    click.option(
        "--screening-rule",
        "screening_rules",
        multiple=True,
        metavar="RULE=ACTION",
        help=f"One rule's action (repeatable); rules: {', '.join(RULES)}.",
    ),
    click.option(
        "--redis-url",
        default=None,
        metavar="URL",
        help="Keep limits in Redis, shared by every gateway that names it (redis://host:6379/0).",
    ),
    click.option(
        "--api-key-limits",
        default=None,
        metavar="rpm=N,tpm=N,max_concurrent=N,max_tokens=N",
        help="Limits for the --api-key key (stored keys carry their own).",
    ),
    click.option(
        "--oidc-issuer",
        default=None,
        metavar="URL",
        help="Accept OIDC tokens from this issuer (exactly as in `iss`).",
    ),
    click.option("--oidc-audience", default=None, help="The `aud` those tokens must carry."),
    click.option(
        "--tls-cert",
        type=_PATH,
        default=None,
        help="Serve HTTPS with this PEM certificate (needs --tls-key).",
    ),
    click.option("--tls-key", type=_PATH, default=None, help="The certificate's PEM private key."),
]


def _flags(kwargs: dict[str, Any]) -> SecurityFlags:
    """Take the security flags out of a command's keyword arguments (click names them as the fields)."""
    values = {field.name: kwargs.pop(field.name) for field in fields(SecurityFlags)}
    if values["screening"] is not None:
        values["screening"] = Action(values["screening"])
    values["screening_rules"] = tuple(values["screening_rules"])
    return SecurityFlags(**values)


def security_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the security flags to `command`, which receives them as `security: SecurityFlags`."""

    @functools.wraps(command)
    def with_flags(*args: Any, **kwargs: Any) -> None:
        flags = _flags(kwargs)
        command(*args, security=flags, **kwargs)

    decorated: Callable[..., None] = with_flags
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    return decorated
