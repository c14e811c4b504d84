"""Least-loaded: the backend with the most spare capacity, by live load normalised by capacity.

For a group, the preferred model wins while one of its backends has room (load < 1); when all
of them are full the request overflows to the next model in the group. Load is `load.load`:
requests in the backend (the last poll's count plus what this policy sent there since, or the
gateway's in-flight count) over the requests it holds at once. Backends within `NEAR_TIE` of
the least loaded take turns. A backend whose first tokens come far later than every other
candidate's (`SLOW_FACTOR`), or a CPU backend not measured yet beside GPU ones, comes after the
other candidates of its model that have room: it gets work when they are full.
"""

from __future__ import annotations

from collections import deque
from itertools import count

from wavefleet.gateway.config import PolicyName
from wavefleet.gateway.routing.base import Candidate, Decision, FleetView, Outcome, RouteRequest
from wavefleet.gateway.routing.load import healthy, load, runs_on_gpu

__all__ = ["LeastLoadedPolicy", "LoadRanker", "NEAR_TIE", "SLOW_FACTOR"]

# Loads within 50 % of the least (or within 0.1 of it) count as equal and take turns. Twins'
# in-flight counts drift apart by several requests as answers of different lengths end, and a
# KV-derived capacity moves with each poll's mix of sequence lengths; filling the emptier one
# sends it a burst of prompts to prefill, which its next requests' TTFT pays for. Measured on
# fleet (d) of scripts/compare_policies.py at 85 % of capacity (20 s): 25 % and 0.02 gave longest
# runs of 7 and 4 requests to one twin (seeds 1, 2), these 3, 1 and 2 (seeds 1-3).
NEAR_TIE = 0.5
NEAR_TIE_FLOOR = 0.1
# "Far beyond": a backend's best recent first-token time over 8 x the slowest of the other
# candidates' best. Best (minimum) of recent ones, so queueing on a busy twin does not count:
# only an engine slow even at its quickest is set aside (a CPU engine's seconds against a GPU's
# tens of milliseconds; twins' bests differ by 1.2-1.5 x on fleet (d) of scripts/compare_policies.py).
SLOW_FACTOR = 8.0
TTFT_SAMPLES = 16


class LoadRanker:
    """Ranks candidates by load, keeping what it needs between decisions: requests it sent per
    backend since that backend's last poll, recent first-token times, and whose turn it is.

    The policy calls `sent` for the backend it puts first, `first_token` and `finished` as the
    gateway reports them."""

    def __init__(self) -> None:
        self._polled_at: dict[str, float] = {}
        self._since_poll: dict[str, int] = {}  # sent minus finished since the backend's last poll
        self._ttft: dict[str, deque[float]] = {}  # the last TTFT_SAMPLES first-token times
        self._best_ttft: dict[str, float] = {}  # the least of them
        self._last_turn: dict[str, int] = {}
        self._turns = count(1)

    def load_of(self, backend: str, view: FleetView) -> float:
        snapshot = view.monitor.snapshot(backend)
        if self._polled_at.get(backend) != snapshot.updated_at:  # a new poll counts what we sent
            self._polled_at[backend] = snapshot.updated_at
            self._since_poll[backend] = 0
        return load(
            view.backends[backend], snapshot, view.inflight.get(backend, 0), self._since_poll[backend]
        )

    def rank(self, candidates: list[Candidate], view: FleetView) -> tuple[list[Candidate], dict[str, float]]:
        """Candidates with room first, the full ones after; each part by group preference, then
        set-aside ones last, then load. The first place goes in turn among near-equals of the
        first one's preference and standing, with room or just past full."""
        loads = {c.backend: self.load_of(c.backend, view) for c in candidates}
        set_aside = self._set_aside(candidates, view)
        keys = {
            c.backend: (loads[c.backend] >= 1.0, c.preference, c.backend in set_aside, loads[c.backend])
            for c in candidates
        }
        ranked = sorted(candidates, key=lambda c: keys[c.backend])
        best = keys[ranked[0].backend]
        band = best[3] + max(NEAR_TIE * best[3], NEAR_TIE_FLOOR)
        # full or not: twins at 0.99 and 1.01 are equals too (one past 1 must not get none)
        equals = [c for c in ranked if keys[c.backend][1:3] == best[1:3] and keys[c.backend][3] <= band]
        if len(equals) > 1:
            turn = min(equals, key=lambda c: self._last_turn.get(c.backend, 0))
            ranked.remove(turn)
            ranked.insert(0, turn)
        return ranked, loads

    def _set_aside(self, candidates: list[Candidate], view: FleetView) -> set[str]:
        """Backends whose best recent first token is SLOW_FACTOR x beyond every other measured
        candidate's, and, beside GPU candidates, CPU backends not measured yet: a CPU engine
        prefills tens of times slower than a GPU as a rule, so until its own first tokens say
        otherwise it takes what the GPUs have no room for. (The gateway reports a request's
        first-token time when the request ends: a backend is unmeasured until one has ended.)"""
        best = {c.backend: self._best_ttft[c.backend] for c in candidates if c.backend in self._best_ttft}
        gpus = {c.backend for c in candidates if runs_on_gpu(view.backends[c.backend])}
        out = set()
        for c in candidates:
            name = c.backend
            if name not in best:
                if gpus and name not in gpus:
                    out.add(name)
                continue
            others = [t for other, t in best.items() if other != name]
            if others and best[name] > SLOW_FACTOR * max(others):
                out.add(name)
        return out

    def sent(self, backend: str) -> None:
        self._since_poll[backend] = self._since_poll.get(backend, 0) + 1
        self._last_turn[backend] = next(self._turns)

    def first_token(self, backend: str, ttft_s: float) -> None:
        recent = self._ttft.setdefault(backend, deque(maxlen=TTFT_SAMPLES))
        recent.append(ttft_s)
        self._best_ttft[backend] = min(recent)

    def finished(self, backend: str) -> None:
        if backend in self._since_poll:
            self._since_poll[backend] -= 1


class LeastLoadedPolicy:
    name = PolicyName.LEAST_LOADED

    def __init__(self) -> None:
        self._ranker = LoadRanker()

    def choose(self, request: RouteRequest, view: FleetView) -> Decision:
        ready = healthy(request.candidates, view)
        if not ready:
            return Decision((), "none-healthy")
        ranked, loads = self._ranker.rank(ready, view)
        self._ranker.sent(ranked[0].backend)
        if len(ready) == 1:
            return Decision((ready[0],), "only-choice", loads)
        reason = (
            "least-loaded" if ranked[0].preference == min(c.preference for c in ready) else "group-overflow"
        )
        return Decision(tuple(ranked), reason, loads)

    def observe_first_token(self, backend: str, request: RouteRequest, ttft_s: float) -> None:
        self._ranker.first_token(backend, ttft_s)

    def observe_finish(self, backend: str, request: RouteRequest, outcome: Outcome) -> None:
        self._ranker.finished(backend)
