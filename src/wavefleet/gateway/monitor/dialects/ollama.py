"""Ollama: `GET /api/version` is the health check; no load gauges.

Ollama exports no Prometheus metrics and no queue, running or slot counts. `/api/ps` lists the
models loaded in memory, which unload after keep_alive (5 minutes by default) and load again when
a request names them, so it is not the list of models Ollama serves: the monitor reads that from
`/v1/models` (every pulled model), and the router balances on the gateway's in-flight counts.
"""

from __future__ import annotations

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.dialects.base import EngineLoad, HttpProbe, PollError, health_url

__all__ = ["OllamaDialect"]


class OllamaDialect:
    async def poll(self, http: HttpProbe, backend: BackendConfig) -> EngineLoad:
        url = health_url(backend)
        body = (await http.get_ok(url)).json()
        if not isinstance(body, dict) or not isinstance(body.get("version"), str):
            raise PollError(f"GET {url}: no Ollama version in the answer; is this an Ollama server?")
        return EngineLoad()
