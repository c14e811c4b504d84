"""Who a request comes from, once its credentials checked out."""

from __future__ import annotations

from dataclasses import dataclass

from wavefleet.gateway.security.keys import KeyLimits

__all__ = ["ANONYMOUS", "Principal"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """`ident` goes into the audit trail and keys the limits: `key:<id>`, `oidc:<sub>`, `static`."""

    ident: str
    kind: str  # "key", "oidc", "static", "anonymous"
    models: frozenset[str] | None  # None: every model
    limits: KeyLimits

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models or "*" in self.models


ANONYMOUS = Principal(ident="anonymous", kind="anonymous", models=None, limits=KeyLimits())
