"""Which version answers a request for a model under rollout, and what each version measured.

The gateway asks `route(model)` before its routing policy: for a model with a split it answers
the ranked versions for this request, for a model pinned by an ended rollout its one version,
else None (the policy routes as usual). The split is exact, not random: of every 100 requests,
`weight` go to green, spread evenly (a running credit, like smooth weighted round robin).
A request sent to green is ranked (green, blue) when retries are on, so one that fails on green
before its first byte is answered by blue and the client never sees green's failure.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from wavefleet.gateway.rollout.live import Sample, VersionStats
from wavefleet.gateway.rollout.state import Version
from wavefleet.gateway.routing.base import Candidate

__all__ = ["Split", "VersionRouter"]

# Every version's last requests, before any rollout, so a swap has blue's baseline; bounded,
# as wildcard backends serve whatever names clients send.
_BASELINE_VERSIONS = 64
_BASELINE_KEEP = 256


@dataclass(kw_only=True)
class Split:
    blue: Version
    green: Version
    weight: int  # green's share, percent
    retry_on_blue: bool
    credit: int = 0


class VersionRouter:
    def __init__(self) -> None:
        self._splits: dict[str, Split] = {}
        self._pinned: dict[str, Candidate] = {}
        self._stats: dict[tuple[str, str], VersionStats] = {}
        self._seen: OrderedDict[tuple[str, str], VersionStats] = OrderedDict()

    # --- the controller's side ----------------------------------------------------------------

    def set_split(self, model: str, split: Split) -> None:
        for version in (split.blue, split.green):
            key = (version.backend, version.model)
            if key not in self._stats:
                before = self._seen.pop(key, None)
                self._stats[key] = before.widened() if before is not None else VersionStats()
        self._splits[model] = split

    def set_weight(self, model: str, weight: int) -> None:
        self._splits[model].weight = weight

    def end_split(self, model: str, served: Version) -> None:
        """The model is served by `served` alone from now on."""
        self.pin(model, served)
        split = self._splits.pop(model, None)
        if split is not None:
            for version in (split.blue, split.green):
                key = (version.backend, version.model)
                stats = self._stats.pop(key, None)
                if stats is not None:  # the next rollout's baseline
                    self._seen[key] = stats.widened(_BASELINE_KEEP)

    def pin(self, model: str, served: Version) -> None:
        self._pinned[model] = Candidate(served.backend, served.model)

    def split(self, model: str) -> Split | None:
        return self._splits.get(model)

    def pinned(self, model: str) -> Version | None:
        found = self._pinned.get(model)
        return Version(backend=found.backend, model=found.model) if found is not None else None

    def stats(self, version: Version) -> VersionStats:
        return self._stats.setdefault((version.backend, version.model), VersionStats())

    # --- the request path ------------------------------------------------------------------------

    def route(self, model: str) -> tuple[Candidate, ...] | None:
        split = self._splits.get(model)
        if split is None:
            pinned = self._pinned.get(model)
            return (pinned,) if pinned is not None else None
        blue = Candidate(split.blue.backend, split.blue.model)
        split.credit += split.weight
        if split.credit >= 100:
            split.credit -= 100
            green = Candidate(split.green.backend, split.green.model)
            return (green, blue) if split.retry_on_blue else (green,)
        return (blue,)

    def observe(
        self,
        candidate: Candidate,
        *,
        at: float,
        ok: bool,
        ttft_s: float | None = None,
        tpot_s: float | None = None,
        e2e_s: float | None = None,
    ) -> None:
        """One attempt's outcome: for a version under rollout, in its live numbers; for any
        other, in its last requests (a baseline for a later rollout)."""
        key = (candidate.backend, candidate.model)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._seen.pop(key, None) or VersionStats(_BASELINE_KEEP)
            self._seen[key] = stats  # most recent last
            if len(self._seen) > _BASELINE_VERSIONS:
                self._seen.popitem(last=False)
        stats.add(Sample(at=at, ok=ok, ttft_s=ttft_s, tpot_s=tpot_s, e2el_s=e2e_s))
