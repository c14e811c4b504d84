"""Least-loaded: the backend with the most spare capacity, by live load normalised by slots.

For a group, the preferred model wins while one of its backends has room (load < 1); when all
of them are full the request overflows to the next model in the group.
"""

from __future__ import annotations

from wavefleet.gateway.config import PolicyName
from wavefleet.gateway.routing.base import Candidate, Decision, FleetView, Outcome, RouteRequest
from wavefleet.gateway.routing.load import healthy, scores

__all__ = ["LeastLoadedPolicy", "rank_by_load"]


def rank_by_load(candidates: list[Candidate], view: FleetView) -> tuple[list[Candidate], dict[str, float]]:
    """Candidates with room first (by group preference, then load), full ones after (by load)."""
    load = scores(candidates, view)
    ranked = sorted(candidates, key=lambda c: (load[c.backend] >= 1.0, c.preference, load[c.backend]))
    return ranked, load


class LeastLoadedPolicy:
    name = PolicyName.LEAST_LOADED

    def choose(self, request: RouteRequest, view: FleetView) -> Decision:
        ready = healthy(request.candidates, view)
        if not ready:
            return Decision((), "none-healthy")
        if len(ready) == 1:
            return Decision((ready[0],), "only-choice")
        ranked, load = rank_by_load(ready, view)
        reason = (
            "least-loaded" if ranked[0].preference == min(c.preference for c in ready) else "group-overflow"
        )
        return Decision(tuple(ranked), reason, load)

    def observe_first_token(self, backend: str, request: RouteRequest, ttft_s: float) -> None:
        return None

    def observe_finish(self, backend: str, request: RouteRequest, outcome: Outcome) -> None:
        return None
