"""Triton Inference Server: `GET /v2/health/ready`; metrics on their own port (8002 by default).

`nv_inference_pending_request_count` counts requests queued in Triton. With the TensorRT-LLM
backend, `nv_trt_llm_request_metrics{request_type=...}` gives the engine's own view (waiting,
scheduled, max) and `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"}` its KV
usage; those win when present. Series are filtered to `backend.triton_model` when it is set.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.dialects.base import EngineLoad, HttpProbe, as_int, base_url, parse_or_fail

__all__ = ["TRITON_METRICS_PORT", "TritonDialect", "parse_triton_metrics", "triton_metrics_url"]

TRITON_METRICS_PORT = 8002


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


def triton_metrics_url(backend: BackendConfig) -> str:
    """`metrics_url` if configured, else the backend's host on Triton's default metrics port."""
    if backend.metrics_url is not None:
        return str(backend.metrics_url)
    parts = urlsplit(base_url(backend))
    host = parts.hostname or "localhost"
    netloc = f"[{host}]:{TRITON_METRICS_PORT}" if ":" in host else f"{host}:{TRITON_METRICS_PORT}"
    return urlunsplit((parts.scheme, netloc, "/metrics", "", ""))


class TritonDialect:
    async def poll(self, http: HttpProbe, backend: BackendConfig) -> EngineLoad:
        await http.get_ok(f"{base_url(backend)}/v2/health/ready")
        reply = await http.get_ok(triton_metrics_url(backend))
        return parse_triton_metrics(reply.text, backend.triton_model)
