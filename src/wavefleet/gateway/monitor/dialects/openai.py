"""Any other OpenAI-compatible server: `GET /v1/models` is the health check; no load gauges.

The router then balances on the gateway's own in-flight counts for it.
"""

from __future__ import annotations

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.dialects.base import EngineLoad, HttpProbe, base_url, models_from_json

__all__ = ["OpenAIDialect"]


class OpenAIDialect:
    async def poll(self, http: HttpProbe, backend: BackendConfig) -> EngineLoad:
        reply = await http.get_ok(f"{base_url(backend)}/v1/models")
        return EngineLoad(models=models_from_json(reply.json()))
