"""SGLang: `GET /health`, gauges at `/metrics` (only with `--enable-metrics`).

`sglang:num_running_reqs`, `sglang:num_queue_reqs`, `sglang:token_usage` (KV in use, 0..1).
Series per rank are summed (counts) or averaged (usage).
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

__all__ = ["SglangDialect", "parse_sglang_metrics"]


def parse_sglang_metrics(text: str) -> EngineLoad:
    metrics = parse_or_fail(text)
    return EngineLoad(
        running=as_int(metrics.total("sglang:num_running_reqs")),
        waiting=as_int(metrics.total("sglang:num_queue_reqs")),
        kv_usage=metrics.mean("sglang:token_usage"),
    )


class SglangDialect:
    async def poll(self, http: HttpProbe, backend: BackendConfig) -> EngineLoad:
        await http.get_ok(health_url(backend))
        reply = await http.get_ok(metrics_url(backend))
        return parse_sglang_metrics(reply.text)
