"""The backend contract: one verb (`send`) that turns an OpenAI request into an OpenAI reply.

Every engine speaks to the gateway through a `Backend`. OpenAI-compatible engines (vLLM,
llama.cpp, SGLang, NIM, TGI, any `/v1` server) pass bytes through; others (Triton's generate
extension) translate both ways, so the gateway only ever sees OpenAI JSON and OpenAI SSE.

    backend = OpenAIBackend(config, session)
    reply = await backend.send(BackendRequest(endpoint="chat/completions", body=body, raw=raw, stream=True))
    try:
        if reply.streaming:
            async for chunk in reply.chunks():   # OpenAI SSE bytes, cut anywhere
                ...
        else:
            body = await reply.read()            # OpenAI JSON (or the engine's error body)
    finally:
        reply.close()                            # aborts the upstream request if not read to the end
    await backend.aclose()                       # at shutdown

`send` returns once the engine answered with a status (its first byte); it raises
`UpstreamError` (502) when the engine cannot be reached or answers garbage and
`UpstreamTimeoutError` (504) for the engine's own socket timeouts. Deadlines (first byte, idle
gap, total) are the caller's: it wraps `send` and the reads in one `asyncio.timeout`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Backend", "BackendReply", "BackendRequest", "Endpoint"]

Endpoint = Literal["chat/completions", "completions", "embeddings"]


@dataclass(kw_only=True, slots=True)
class BackendRequest:
    """One request as the gateway forwards it.

    `body` is the parsed JSON with the served model name already set; `raw` is the exact bytes
    to send when the body was not changed (so the common case is never serialised again).
    """

    endpoint: Endpoint
    body: dict[str, Any]
    raw: bytes
    stream: bool = False
    request_id: str = ""
    energy_id: str = ""  # to a fleet agent: the id it files the request's energy under


class BackendReply(ABC):
    """An engine's answer: status and content type first, the body read or streamed after."""

    status: int
    content_type: str
    streaming: bool  # the body is an SSE stream (text/event-stream)
    retry_after: str | None = None  # the engine's Retry-After header, passed on with its error answers

    @abstractmethod
    async def read(self) -> bytes:
        """The whole body (JSON replies and error bodies)."""

    @abstractmethod
    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in OpenAI SSE framing; chunk borders fall anywhere."""

    @abstractmethod
    def close(self) -> None:
        """Stop reading; an unfinished upstream request is aborted (its connection dropped)."""


class Backend(ABC):
    """One engine behind the gateway. Subclasses: one per API dialect; `FakeBackend` for tests."""

    name: str

    @abstractmethod
    async def send(self, request: BackendRequest) -> BackendReply:
        """Send `request`; return when the engine has answered with a status."""

    async def models(self) -> list[str]:
        """The model names the engine lists (empty when it lists none or cannot say)."""
        return []

    async def aclose(self) -> None:
        """Release what the backend holds. The shared HTTP session is the app's to close."""
        return None
