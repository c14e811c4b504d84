"""Triton Inference Server: `GET /v2/health/ready`; metrics on their own port (8002 by default).

`nv_inference_pending_request_count` counts requests queued in Triton. With the TensorRT-LLM
backend, `nv_trt_llm_request_metrics{request_type=...}` gives the engine's own view (waiting,
scheduled, max) and `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"}` its KV
usage; those win when present. Series are filtered to `backend.triton_model` when it is set.
"""

from __future__ import annotations

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.dialects.base import (
    EngineLoad,
    HttpProbe,
    as_int,
    health_url,
    metrics_url,
    parse_or_fail,
)

__all__ = ["TritonDialect", "parse_triton_metrics"]


def parse_triton_metrics(text: str, model: str | None = None) -> EngineLoad:
    metrics = parse_or_fail(text)
    only = {"model": model} if model else {}
    pending = metrics.total("nv_inference_pending_request_count", **only)
    trt = "nv_trt_llm_request_metrics"
    if metrics.has(trt):
        waiting = metrics.total(trt, request_type="waiting", **only)
        running = metrics.total(trt, request_type="scheduled", **only)
        if running is None:
            running = metrics.total(trt, request_type="active", **only)
        slots = metrics.total(trt, request_type="max", **only)
        kv = metrics.mean("nv_trt_llm_kv_cache_block_metrics", kv_cache_block_type="fraction", **only)
        return EngineLoad(
            running=as_int(running),
            waiting=as_int(waiting if waiting is not None else pending),
            kv_usage=kv,
            slots_total=as_int(slots),
        )
    return EngineLoad(waiting=as_int(pending))


class TritonDialect:
    async def poll(self, http: HttpProbe, backend: BackendConfig) -> EngineLoad:
        await http.get_ok(health_url(backend))
        reply = await http.get_ok(metrics_url(backend))
        return parse_triton_metrics(reply.text, backend.triton_model)
