"""Hugging Face TGI: `GET /health`, `/metrics` with `tgi_queue_size` and `tgi_batch_current_size`.

TGI reports no KV usage; its batch token budget is not a slot count, so slots stay unknown.
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

__all__ = ["TgiDialect", "parse_tgi_metrics"]


def parse_tgi_metrics(text: str) -> EngineLoad:
    metrics = parse_or_fail(text)
    return EngineLoad(
        running=as_int(metrics.total("tgi_batch_current_size")),
        waiting=as_int(metrics.total("tgi_queue_size")),
    )


class TgiDialect:
    async def poll(self, http: HttpProbe, backend: BackendConfig) -> EngineLoad:
        await http.get_ok(health_url(backend))
        reply = await http.get_ok(metrics_url(backend))
        return parse_tgi_metrics(reply.text)
