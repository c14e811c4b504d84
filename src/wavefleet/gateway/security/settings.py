"""The `security:` section of the gateway config (wave.yaml), and the flags that fill it.

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

from pydantic import BaseModel, ConfigDict, Field

from wavefleet.gateway.security.audit import DEFAULT_MAX_PENDING
from wavefleet.gateway.security.oidc import OidcConfig
from wavefleet.gateway.security.screening import ScreeningConfig

__all__ = ["LimitsConfig", "SecurityConfig"]


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
