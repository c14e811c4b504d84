"""GPU-only: never send to a CPU backend (gpu=True, or a GPU engine kind when `gpu` is unset)."""

from __future__ import annotations

from wavefleet.gateway.config import PolicyName
from wavefleet.gateway.routing.base import Decision, FleetView, Outcome, RouteRequest
from wavefleet.gateway.routing.least_loaded import LoadRanker
from wavefleet.gateway.routing.load import healthy, runs_on_gpu

__all__ = ["GpuOnlyPolicy"]


class GpuOnlyPolicy:
    """Least-loaded among the GPU backends only (the same ranking, `LoadRanker`)."""

    name = PolicyName.GPU_ONLY

    def __init__(self) -> None:
        self._ranker = LoadRanker()

    def choose(self, request: RouteRequest, view: FleetView) -> Decision:
        gpus = [c for c in request.candidates if runs_on_gpu(view.backends[c.backend])]
        if not gpus:
            return Decision((), "no-gpu-backend")
        ready = healthy(gpus, view)
        if not ready:
            return Decision((), "none-healthy")
        ranked, loads = self._ranker.rank(ready, view)
        self._ranker.sent(ranked[0].backend)
        return Decision(tuple(ranked), "gpu-only", loads)

    def observe_first_token(self, backend: str, request: RouteRequest, ttft_s: float) -> None:
        self._ranker.first_token(backend, ttft_s)

    def observe_finish(self, backend: str, request: RouteRequest, outcome: Outcome) -> None:
        self._ranker.finished(backend)
