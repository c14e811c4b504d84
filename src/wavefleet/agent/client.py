"""A client of one agent's control API, for gateways and for `wave agent status`.

    async with aiohttp.ClientSession() as session:
        agent = AgentClient("http://desk:9190", secret=secret, session=session)
        status = await agent.status()              # AgentStatus: devices and every model
        await agent.load("llama-8b")               # ModelStatus once it is ready (or failed)
        await agent.drain("llama-8b", timeout=30)  # DrainResult

Failures are `AgentError`s naming the agent and the fix: it cannot be reached, it refused the
secret, or it answered an error (its message is kept).
"""

from __future__ import annotations

import ssl
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from wavefleet.agent.status import CONTROL_PREFIX as PREFIX
from wavefleet.agent.status import AgentStatus, DrainResult, ModelStatus, RequestEnergyReport
from wavefleet.errors import EngineError

__all__ = ["AgentClient", "AgentError"]

Record = TypeVar("Record", bound=BaseModel)


class AgentError(EngineError):
    """The agent could not be reached, refused the secret, or answered with an error."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AgentClient:
    def __init__(
        self,
        url: str,
        *,
        secret: str | None,
        session: aiohttp.ClientSession,
        timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session = session
        self._headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._timeout = timeout_s

    async def status(self, *, log_lines: int = 20) -> AgentStatus:
        return _parse(AgentStatus, await self._call("GET", f"/status?log_lines={log_lines}"))

    async def request_energy(self, energy_id: str, *, wait_s: float = 0.0) -> RequestEnergyReport:
        """The energy the agent attributed to the request sent with `x-wave-energy-id: energy_id`,
        waiting up to `wait_s` for the agent to settle it."""
        wait = max(0.0, wait_s)
        return _parse(
            RequestEnergyReport, await self._call("GET", f"/energy/{energy_id}?wait={wait:.3f}", extra_s=wait)
        )

    async def model(self, name: str) -> ModelStatus:
        return _parse(ModelStatus, await self._call("GET", f"/models/{name}"))

    async def load(self, name: str, *, wait: bool = True, timeout_s: float | None = None) -> ModelStatus:
        body: dict[str, Any] = {"wait": wait}
        if timeout_s is not None:
            body["timeout"] = timeout_s
        extra = timeout_s if timeout_s is not None else 600.0
        return _parse(ModelStatus, await self._call("POST", f"/models/{name}/load", body, extra))

    async def unload(self, name: str) -> ModelStatus:
        return _parse(ModelStatus, await self._call("POST", f"/models/{name}/unload", {}, 60.0))

    async def drain(self, name: str, *, timeout_s: float | None = None) -> DrainResult:
        body: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        extra = (timeout_s if timeout_s is not None else 600.0) + 60.0
        return _parse(DrainResult, await self._call("POST", f"/models/{name}/drain", body, extra))

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, extra_s: float = 0.0
    ) -> Any:
        url = f"{self.url}{PREFIX}{path}"
        try:
            async with self._session.request(
                method,
                url,
                json=body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout + extra_s),
                ssl=self._ssl,
            ) as reply:
                payload = await reply.json(content_type=None)
                status = reply.status
        except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError) as exc:
            raise AgentError(
                f"cannot reach the agent at {self.url} over TLS: {exc}; check the CA, and the client "
                "certificate when the agent requires one (client_ca)"
            ) from exc
        except aiohttp.ServerDisconnectedError as exc:
            if self.url.startswith("https:"):  # TLS 1.3: a refused client certificate ends the connection
                raise AgentError(
                    f"the agent at {self.url} closed the TLS connection: if it requires a client certificate "
                    "(client_ca), give this side's as tls: {cert, key}"
                ) from exc
            raise AgentError(
                f"cannot reach the agent at {self.url}: {exc}; is `wave agent` running there?"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise AgentError(
                f"cannot reach the agent at {self.url}: {exc}; is `wave agent` running there?"
            ) from exc
        except TimeoutError as exc:
            raise AgentError(f"the agent at {self.url} did not answer {method} {path} in time") from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise AgentError(
                f"the agent at {self.url} answered {method} {path} with something unreadable: {exc}"
            ) from exc
        if status == 401:
            raise AgentError(
                f"the agent at {self.url} refused the secret: give the one in its config (--secret-file, or "
                "WAVE_AGENT_SECRET)",
                status=status,
            )
        if status != 200:
            message = payload.get("error", {}).get("message") if isinstance(payload, dict) else None
            raise AgentError(f"the agent at {self.url}: {message or f'HTTP {status}'}", status=status)
        return payload


def _parse(record: type[Record], payload: Any) -> Record:
    try:
        return record.model_validate(payload)
    except ValidationError as exc:
        raise AgentError(f"an answer the agent's control API does not define: {exc}") from exc
