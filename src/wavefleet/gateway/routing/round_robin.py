"""Round-robin: take turns among the backends of the most preferred model that has any available."""

from __future__ import annotations

from itertools import count

from wavefleet.gateway.config import PolicyName
from wavefleet.gateway.routing.base import Decision, FleetView, Outcome, RouteRequest
from wavefleet.gateway.routing.load import healthy

__all__ = ["RoundRobinPolicy"]


class RoundRobinPolicy:
    """Each request starts one further along the list; the rest follow as retries."""

    name = PolicyName.ROUND_ROBIN

    def __init__(self) -> None:
        self._turns = count()

    def choose(self, request: RouteRequest, view: FleetView) -> Decision:
        ready = healthy(request.candidates, view)
        if not ready:
            return Decision((), "none-healthy")
        best = min(c.preference for c in ready)
        tier = [c for c in ready if c.preference == best]
        start = next(self._turns) % len(tier)
        ranked = tier[start:] + tier[:start] + [c for c in ready if c.preference != best]
        return Decision(tuple(ranked), "round-robin")

    def observe_first_token(self, backend: str, request: RouteRequest, ttft_s: float) -> None:
        return None

    def observe_finish(self, backend: str, request: RouteRequest, outcome: Outcome) -> None:
        return None
