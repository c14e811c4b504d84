"""GPU-only: never send to a CPU backend (gpu=True, or a GPU engine kind when `gpu` is unset)."""

from __future__ import annotations

from wavefleet.gateway.config import PolicyName
from wavefleet.gateway.routing.base import Decision, FleetView, Outcome, RouteRequest
from wavefleet.gateway.routing.least_loaded import rank_by_load
from wavefleet.gateway.routing.load import healthy, runs_on_gpu

__all__ = ["GpuOnlyPolicy"]


class GpuOnlyPolicy:
    """Least-loaded among the GPU backends only."""

    name = PolicyName.GPU_ONLY

    def choose(self, request: RouteRequest, view: FleetView) -> Decision:
        gpus = [c for c in request.candidates if runs_on_gpu(view.backends[c.backend])]
        if not gpus:
            return Decision((), "no-gpu-backend")
        ready = healthy(gpus, view)
        if not ready:
            return Decision((), "none-healthy")
        ranked, load = rank_by_load(ready, view)
        return Decision(tuple(ranked), "gpu-only", load)

    def observe_first_token(self, backend: str, request: RouteRequest, ttft_s: float) -> None:
        return None

    def observe_finish(self, backend: str, request: RouteRequest, outcome: Outcome) -> None:
        return None
