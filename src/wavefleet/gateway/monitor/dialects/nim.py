"""NVIDIA NIM for LLMs: `GET /v1/health/ready`, metrics at `/v1/metrics`.

NIM runs vLLM inside and exposes its gauges unprefixed (`num_requests_running`,
`num_requests_waiting`, `gpu_cache_usage_perc`, `num_request_max`); builds that keep the `vllm:`
prefix are read as well.
"""

from __future__ import annotations

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.dialects.base import (
    EngineLoad,
    HttpProbe,
    health_url,
    metrics_url,
    parse_or_fail,
)
from wavefleet.gateway.monitor.dialects.vllm import load_from_vllm_metrics

__all__ = ["NimDialect", "parse_nim_metrics"]


def parse_nim_metrics(text: str) -> EngineLoad:
    metrics = parse_or_fail(text)
    if metrics.has("num_requests_running") or metrics.has("gpu_cache_usage_perc"):
        return load_from_vllm_metrics(metrics, prefix="")
    return load_from_vllm_metrics(metrics, prefix="vllm:")


class NimDialect:
    async def poll(self, http: HttpProbe, backend: BackendConfig) -> EngineLoad:
        await http.get_ok(health_url(backend))
        reply = await http.get_ok(metrics_url(backend))
        return parse_nim_metrics(reply.text)
