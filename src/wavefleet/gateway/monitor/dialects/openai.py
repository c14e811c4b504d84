"""Any other OpenAI-compatible server: its health path (`GET /v1/models`) is the health check and
lists the models; no load gauges.

The router then balances on the gateway's own in-flight counts for it.
"""

from __future__ import annotations

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.dialects.base import EngineLoad, HttpProbe, health_url, models_from_json

__all__ = ["OpenAIDialect"]


class OpenAIDialect:
    async def poll(self, http: HttpProbe, backend: BackendConfig) -> EngineLoad:
        reply = await http.get_ok(health_url(backend))
        return EngineLoad(models=models_from_json(reply.json()))
