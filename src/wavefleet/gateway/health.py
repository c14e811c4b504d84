"""How a part of the gateway other than a backend (the audit writer, ...) reports its state on /health.

    checks = {"audit": writer.health}           # name -> a callable returning PartHealth
    GatewayApi(..., health_checks=checks)       # /health: "parts": {"audit": {"ok": true, ...}}

A part that is not ok makes /health answer 503 with status "failing": the gateway still
forwards requests, but something it promised (an audit row per request) is not happening.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["HealthCheck", "PartHealth"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PartHealth:
    """One part's state: ok or not, a one-word state and counters (shown to everyone), and why
    not (may name files: shown to authenticated callers only)."""

    ok: bool
    state: str
    error: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)

    def to_json(self, *, detail: bool) -> dict[str, object]:
        body: dict[str, object] = {"ok": self.ok, "state": self.state, **self.counts}
        if detail and self.error is not None:
            body["error"] = self.error
        return body


HealthCheck = Callable[[], PartHealth]
