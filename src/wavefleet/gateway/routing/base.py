"""The routing contract: one interface every policy implements, and the values it works on.

A policy ranks the candidates for one request; the gateway tries them in that order (the first,
then the next ones as retries when a backend fails before the first byte reached the client).
Policies learn from what happened through the `observe_*` hooks, which the gateway calls for
every request whichever policy is active.

    policy = build_policy(config)            # from routing.factory, by PolicyName
    decision = policy.choose(request, view)  # no I/O, no awaits: a decision is pure computation
    ...                                      # gateway sends to decision.ranked[0]
    policy.observe_first_token(backend, request, ttft_s)
    policy.observe_finish(backend, request, outcome)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from wavefleet.gateway.config import BackendConfig, PolicyName
from wavefleet.gateway.monitor.snapshot import BackendMonitor

__all__ = ["Candidate", "Decision", "FleetView", "Outcome", "RouteRequest", "RoutingPolicy"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A backend that can serve the request, and the model name to send it."""

    backend: str
    model: str  # the served model name upstream (after alias and group resolution)
    preference: int = 0  # position of `model` in its group; 0 = the group's first choice


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What a policy may know about a request without parsing it again."""

    requested_model: str  # as the client named it: a model, alias or group
    candidates: tuple[Candidate, ...]  # healthy-or-not candidates, in group preference order
    prompt_tokens: int  # an estimate (characters / 4) unless a tokenizer is configured
    max_tokens: int | None
    stream: bool
    prefix_text: str = ""  # the prompt's leading text (system + first turns), for prefix affinity
    session: str | None = None  # `user` field or x-session-id header, for session affinity
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class FleetView:
    """The state a policy decides on: live snapshots plus the gateway's own in-flight counts."""

    monitor: BackendMonitor
    backends: Mapping[str, BackendConfig]
    inflight: Mapping[str, int]  # requests this gateway has open per backend


@dataclass(frozen=True, slots=True)
class Decision:
    """The ranked candidates and why. `scores` is what `x-wave-explain` and debug logs show."""

    ranked: tuple[Candidate, ...]
    reason: str  # short tag counted in /metrics: "least-loaded", "affinity", "overflow", …
    scores: Mapping[str, float] = field(default_factory=dict)  # backend -> score (lower is better)
    retry_after_s: float | None = None  # set when the policy sheds the request (answer 429)

    def explanation(self, top: int = 4) -> str:
        """`gpu=0.84s, cpu=2.10s`: the best candidates with their scores (predicted seconds for wave)."""
        ranked = sorted(self.scores.items(), key=lambda item: item[1])[:top]
        return ", ".join(f"{name}={seconds:.2f}s" for name, seconds in ranked)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a finished request went, for policies that learn."""

    ok: bool
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None
    duration_s: float
    cached_tokens: int | None = None


class RoutingPolicy(Protocol):
    """One routing strategy. Implementations live one per module beside this file."""

    name: PolicyName

    def choose(self, request: RouteRequest, view: FleetView) -> Decision:
        """Rank the available candidates. Empty `ranked` means none can take it now."""
        ...

    def observe_first_token(self, backend: str, request: RouteRequest, ttft_s: float) -> None: ...

    def observe_finish(self, backend: str, request: RouteRequest, outcome: Outcome) -> None: ...
