"""The gateway's security layer: API keys, OIDC identity, limits, prompt screening, audit, TLS.

Each part is a small object built from arguments; `SecurityGate` puts them together and
`install(app, gate)` wires it into the gateway's aiohttp app (middleware.py).
"""

from wavefleet.gateway.security.audit import AuditQuery, AuditRecord, AuditWriter, query_audit
from wavefleet.gateway.security.authn import Authenticator
from wavefleet.gateway.security.db import connect, resolve_db_path
from wavefleet.gateway.security.gate import Admission, SecurityGate
from wavefleet.gateway.security.keys import KeyCache, KeyLimits, KeyRecord, KeyStore
from wavefleet.gateway.security.limits import LocalLimiter, RateLimiter, Ticket
from wavefleet.gateway.security.middleware import OUTCOME, Outcome, install
from wavefleet.gateway.security.oidc import OidcConfig, OidcVerifier
from wavefleet.gateway.security.principal import Principal
from wavefleet.gateway.security.screening import Screener, ScreeningConfig, Verdict
from wavefleet.gateway.security.settings import LimitsConfig, SecurityConfig
from wavefleet.gateway.security.tls import server_tls_context

__all__ = [
    "OUTCOME",
    "Admission",
    "AuditQuery",
    "AuditRecord",
    "AuditWriter",
    "Authenticator",
    "KeyCache",
    "KeyLimits",
    "KeyRecord",
    "KeyStore",
    "LimitsConfig",
    "LocalLimiter",
    "OidcConfig",
    "OidcVerifier",
    "Outcome",
    "Principal",
    "RateLimiter",
    "Screener",
    "ScreeningConfig",
    "SecurityConfig",
    "SecurityGate",
    "Ticket",
    "Verdict",
    "connect",
    "install",
    "query_audit",
    "resolve_db_path",
    "server_tls_context",
]
