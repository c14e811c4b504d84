"""OpenAI-compatible engines (vLLM, llama.cpp, SGLang, NIM, TGI, any `/v1` server): bytes pass through."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import aiohttp
from yarl import URL

from wavefleet.errors import UpstreamError, UpstreamTimeoutError
from wavefleet.gateway.backends.base import Backend, BackendReply, BackendRequest
from wavefleet.gateway.config import BackendConfig

__all__ = ["HttpReply", "OpenAIBackend", "translate_client_error"]


class HttpReply(BackendReply):
    """A reply read straight from an aiohttp response."""

    def __init__(self, response: aiohttp.ClientResponse, backend: str) -> None:
        self._response = response
        self._backend = backend
        self.status = response.status
        self.content_type = response.content_type
        self.streaming = self.content_type == "text/event-stream"
        self.retry_after = response.headers.get("Retry-After") if response.status >= 400 else None

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except aiohttp.ClientError as exc:
            raise translate_client_error(exc, self._backend) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise translate_client_error(exc, self._backend) from exc

    def close(self) -> None:
        # close() (not release()) drops the connection, so the engine sees the abort at once.
        if not self._response.content.is_eof():
            self._response.close()
        else:
            self._response.release()


def translate_client_error(exc: BaseException, backend: str) -> UpstreamError | UpstreamTimeoutError:
    """aiohttp's exceptions, as the gateway's 502/504 errors naming the backend."""
    if isinstance(exc, aiohttp.ServerTimeoutError | aiohttp.ConnectionTimeoutError):
        return UpstreamTimeoutError(f"backend {backend!r} timed out: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(f"cannot connect to backend {backend!r}: {exc.os_error or exc}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return UpstreamError(f"backend {backend!r} dropped the connection mid-answer")
    return UpstreamError(f"backend {backend!r} failed: {type(exc).__name__}: {exc}")


class OpenAIBackend(Backend):
    """An engine with OpenAI's `/v1` API. Requests and replies pass through unchanged."""

    def __init__(self, config: BackendConfig, session: aiohttp.ClientSession) -> None:
        self.name = config.name
        self.config = config
        self._session = session
        base = str(config.url).rstrip("/")
        if base.endswith("/v1"):  # accept both http://host:8000 and http://host:8000/v1
            base = base[: -len("/v1")]
        # parsed once: aiohttp would parse a str URL on every request
        self._urls = {
            endpoint: URL(f"{base}/v1/{endpoint}")
            for endpoint in ("chat/completions", "completions", "embeddings")
        }
        self._models_url = f"{base}/v1/models"
        self._headers = {"Content-Type": "application/json"}
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        if key:
            self._headers["Authorization"] = f"Bearer {key}"

    def headers_for(self, request: BackendRequest) -> dict[str, str]:
        """The headers sent with `request`."""
        return self._headers

    async def send(self, request: BackendRequest) -> BackendReply:
        url = self._urls[request.endpoint]
        headers = self.headers_for(request)
        try:
            try:
                response = await self._session.post(url, data=request.raw, headers=headers)
            except aiohttp.ClientConnectorError:
                raise
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # An engine may close a kept-alive connection while it sits in the pool
                # (llama-server's cpp-httplib does), so the request fails before any answer:
                # send it once more, on a fresh connection, before calling the engine broken.
                response = await self._session.post(url, data=request.raw, headers=headers)
        except aiohttp.ClientError as exc:
            raise translate_client_error(exc, self.name) from exc
        return HttpReply(response, self.name)

    async def models(self) -> list[str]:
        try:
            async with self._session.get(
                self._models_url, headers=self._headers, timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                if response.status != 200:
                    return []
                listing = json.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return []
        data = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(data, list):
            return []
        return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]
