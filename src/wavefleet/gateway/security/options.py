"""The `wave serve` security flags as one typed value, and how they fill the config's `security:` section.

    flags = SecurityFlags(db=Path("wave.db"), screening=Action.FLAG)   # built by the CLI from its flags
    config = apply_security_flags(config, flags)                       # UsageError names the flag to fix

The flags keep the text the user typed where it has a syntax of its own (`RULE=ACTION`,
`rpm=N,...`): errors then quote it and name the flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from wavefleet.errors import UsageError
from wavefleet.gateway.security.screening import RULES, Action
from wavefleet.gateway.security.settings import LimitsConfig, OidcConfig, SecurityConfig

__all__ = ["SecurityFlags", "apply_security_flags"]

_ACTIONS = [a.value for a in Action]


@dataclass(frozen=True, kw_only=True, slots=True)
class SecurityFlags:
    """What `wave serve` was told about the security layer; None and empty mean "as the config says"."""

    db: Path | None = None
    audit: bool = False
    audit_db: Path | None = None
    audit_prompts: bool = False
    screening: Action | None = None
    screening_rules: tuple[str, ...] = ()  # RULE=ACTION each
    redis_url: str | None = None
    api_key_limits: str | None = None  # rpm=N,tpm=N,max_concurrent=N,max_tokens=N
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def tls_files(self) -> tuple[Path, Path] | None:
        """(certificate, key) when HTTPS was asked for; UsageError when only one was given."""
        if self.tls_cert is None and self.tls_key is None:
            return None
        if self.tls_cert is None or self.tls_key is None:
            raise UsageError("give --tls-cert and --tls-key together")
        return self.tls_cert, self.tls_key


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


def apply_security_flags(config: SecurityConfig, flags: SecurityFlags) -> SecurityConfig:
    """The config's security section with the flags laid over it."""
    data = config.model_dump()
    if flags.db is not None:
        data["db"] = flags.db
    if flags.audit:
        data["audit"] = True
    if flags.audit_db is not None:
        data["audit"], data["audit_db"] = True, flags.audit_db
    if flags.audit_prompts:
        data["audit_prompts"] = True
        if not data["audit"]:
            raise UsageError("--audit-prompts needs the audit trail: add --audit (or --audit-db PATH)")
    if flags.screening is not None:
        data["screening"]["default"] = flags.screening
    for spec in flags.screening_rules:
        rule, sep, action = spec.partition("=")
        if not sep or rule not in RULES or action not in _ACTIONS:
            raise UsageError(
                f"--screening-rule {spec!r}: expected RULE=ACTION with RULE one of {', '.join(RULES)} "
                f"and ACTION one of {', '.join(_ACTIONS)}"
            )
        data["screening"]["rules"][rule] = action
    if flags.redis_url:
        data["redis_url"] = flags.redis_url
    if flags.api_key_limits:
        data["static_limits"] = _parse_limits(flags.api_key_limits).model_dump()
    issuer, audience = flags.oidc_issuer, flags.oidc_audience
    if (issuer is None) != (audience is None):
        raise UsageError("give --oidc-issuer and --oidc-audience together")
    if issuer is not None:
        base = data.get("oidc") or {}
        data["oidc"] = OidcConfig.model_validate(
            {**base, "issuer": issuer, "audience": audience}
        ).model_dump()
    return SecurityConfig.model_validate(data)
