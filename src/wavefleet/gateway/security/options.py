"""The `wave serve` flags of the security layer, as one decorator, and how they fill the config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from wavefleet.errors import UsageError
from wavefleet.gateway.security.oidc import OidcConfig
from wavefleet.gateway.security.screening import RULES, Action
from wavefleet.gateway.security.settings import LimitsConfig, SecurityConfig

__all__ = ["SECURITY_FLAGS", "apply_security_flags", "security_options"]

F = TypeVar("F", bound=Callable[..., Any])
_PATH = click.Path(path_type=Path, dir_okay=False)
_ACTIONS = [a.value for a in Action]

SECURITY_FLAGS = (
    "db",
    "audit",
    "audit_db",
    "audit_prompts",
    "screening",
    "screening_rules",
    "redis_url",
    "api_key_limits",
    "oidc_issuer",
    "oidc_audience",
    "tls_cert",
    "tls_key",
)


def security_options(command: F) -> F:
    options = [
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
            type=click.Choice(_ACTIONS),
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
    for option in reversed(options):
        command = option(command)
    return command


def _parse_limits(text: str) -> LimitsConfig:
    fields: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise UsageError(
                f"--api-key-limits {text!r}: {part!r} is not NAME=VALUE (e.g. rpm=600,max_concurrent=8)"
            )
        fields[name.strip().replace("-", "_")] = value.strip()
    try:
        return LimitsConfig.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise UsageError(
            f"--api-key-limits {text!r}: {problems} (names: rpm, tpm, max_concurrent, max_tokens)"
        ) from exc


def apply_security_flags(config: SecurityConfig, flags: dict[str, Any]) -> SecurityConfig:
    """The config's security section with the flags laid over it."""
    data = config.model_dump()
    if flags.get("db") is not None:
        data["db"] = flags["db"]
    if flags.get("audit"):
        data["audit"] = True
    if flags.get("audit_db") is not None:
        data["audit"], data["audit_db"] = True, flags["audit_db"]
    if flags.get("audit_prompts"):
        data["audit_prompts"] = True
        if not data["audit"]:
            raise UsageError("--audit-prompts needs the audit trail: add --audit (or --audit-db PATH)")
    if flags.get("screening") is not None:
        data["screening"]["default"] = flags["screening"]
    for spec in flags.get("screening_rules") or ():
        rule, sep, action = spec.partition("=")
        if not sep or rule not in RULES or action not in _ACTIONS:
            raise UsageError(
                f"--screening-rule {spec!r}: expected RULE=ACTION with RULE one of {', '.join(RULES)} "
                f"and ACTION one of {', '.join(_ACTIONS)}"
            )
        data["screening"]["rules"][rule] = action
    if flags.get("redis_url"):
        data["redis_url"] = flags["redis_url"]
    if flags.get("api_key_limits"):
        data["static_limits"] = _parse_limits(flags["api_key_limits"]).model_dump()
    issuer, audience = flags.get("oidc_issuer"), flags.get("oidc_audience")
    if (issuer is None) != (audience is None):
        raise UsageError("give --oidc-issuer and --oidc-audience together")
    if issuer is not None:
        base = data.get("oidc") or {}
        data["oidc"] = OidcConfig.model_validate(
            {**base, "issuer": issuer, "audience": audience}
        ).model_dump()
    return SecurityConfig.model_validate(data)
