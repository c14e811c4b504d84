"""The `security:` section of the gateway config (wave.yaml): pydantic models only, so the config
schema loads without the security layer's running parts (aiohttp, jwt, sqlite).

security:
  db: ~/.local/share/wavefleet/wave.db   # API keys (wave keys create) and the audit trail
  audit: true                            # to audit_db, else db, else the default wave.db
  audit_prompts: false
  screening: {default: flag, rules: {template_tokens: block}}
  oidc: {issuer: "https://auth.home/application/o/wave/", audience: wave,
         group_models: {ai-users: ["*"]}}
  redis_url: redis://127.0.0.1:6379/0    # share limits between gateways
  static_limits: {rpm: 600}              # limits for the --api-key key
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wavefleet.gateway.security.screening import ScreeningConfig

__all__ = ["DEFAULT_MAX_PENDING", "LimitsConfig", "OidcConfig", "SecurityConfig"]

DEFAULT_MAX_PENDING = 100_000  # audit rows: ~30 MB; at 1,000 requests/s, 100 s of a stuck disk


class OidcConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(description="the issuer URL exactly as tokens carry it in `iss`")
    audience: str = Field(
        description="the `aud` tokens must carry (the client id of the gateway's application)"
    )
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    leeway_s: float = Field(default=30.0, ge=0, le=300, description="clock skew allowed on exp/nbf/iat")
    models_claim: str = Field(default="groups", description="claim whose values map to allowed models")
    group_models: dict[str, list[str]] = Field(
        default_factory=dict,
        description="claim value -> models it may use ('*' = all); empty: every valid token may use every model",
    )
    limits: dict[str, int] = Field(
        default_factory=dict, description="rpm, tpm, max_concurrent, max_tokens per subject"
    )
    refresh_min_interval_s: float = Field(
        default=30.0, ge=0, description="least time between two fetch attempts, failed or not"
    )
    jwks_ttl_s: float = Field(
        default=3600.0, gt=0, description="keys older than this are refreshed in the background"
    )
    jwks_max_age_s: float = Field(
        default=86400.0,
        gt=0,
        description="keys older than this (the issuer unreachable all along) are no longer trusted",
    )
    http_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _max_age_covers_ttl(self) -> OidcConfig:
        if self.jwks_max_age_s < self.jwks_ttl_s:
            raise ValueError(
                f"jwks_max_age_s ({self.jwks_max_age_s:g}) is shorter than jwks_ttl_s ({self.jwks_ttl_s:g}): "
                "keys are refreshed after jwks_ttl_s and dropped after jwks_max_age_s, so raise jwks_max_age_s"
            )
        return self


class LimitsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)


class SecurityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    db: Path | None = Field(default=None, description="keys database; None: no stored keys")
    audit: bool = Field(
        default=False,
        description="write the audit trail (to audit_db, else db, else the default database `wave audit` reads)",
    )
    audit_db: Path | None = None
    audit_prompts: bool = False
    audit_interval_s: float = Field(default=0.2, gt=0, le=10)
    audit_max_pending: int = Field(
        default=DEFAULT_MAX_PENDING, ge=1, description="rows that may wait for the writer; more are dropped"
    )
    keys_refresh_s: float = Field(
        default=1.0, gt=0, description="how often the key cache checks the database"
    )
    screening: ScreeningConfig = Field(default_factory=ScreeningConfig)
    oidc: OidcConfig | None = None
    redis_url: str | None = None
    static_limits: LimitsConfig = Field(default_factory=LimitsConfig)

    def active(self) -> bool:
        """True when any part needs the security layer on the request path."""
        limits = self.static_limits
        return (
            self.db is not None
            or self.audit
            or self.oidc is not None
            or self.redis_url is not None
            or self.screening.default != "off"
            or any(action != "off" for action in self.screening.rules.values())
            or any(v is not None for v in (limits.rpm, limits.tpm, limits.max_concurrent, limits.max_tokens))
        )
