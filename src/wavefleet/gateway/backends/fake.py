"""An in-process backend that answers with a handler you give it, like httpx's `MockTransport`.

    def handler(request: BackendRequest) -> FakeReply:
        return FakeReply.chat("hello")                     # or FakeReply.stream([...]), FakeReply(503, ...)

    backend = FakeBackend("fake", handler, models=["m"])
    app = create_app(config, monitor, backends={"fake": backend})

`echo` is a ready handler that answers every chat request with its last user message.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from wavefleet.gateway.backends.base import Backend, BackendReply, BackendRequest
from wavefleet.gateway.backends.fake_wire import chat_completion, sse_chunk, token_usage

__all__ = ["FakeBackend", "FakeReply", "echo"]


class FakeReply(BackendReply):
    """A reply built in memory: a JSON body, or a list of SSE events sent one chunk each."""

    def __init__(
        self, status: int = 200, body: bytes = b"", *, events: Iterable[bytes] | None = None
    ) -> None:
        self.status = status
        self.streaming = events is not None
        self.content_type = "text/event-stream" if self.streaming else "application/json"
        self._body = body
        self._events = list(events or [])
        self.closed = False
        self.read_to_end = False

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> FakeReply:
        return cls(status, json.dumps(payload).encode())

    @classmethod
    def chat(cls, text: str, model: str = "fake", prompt_tokens: int = 1) -> FakeReply:
        tokens = token_usage(prompt_tokens, len(text.split()))
        return cls.json(chat_completion(model, text, tokens, created=0))

    @classmethod
    def stream(cls, pieces: Iterable[str], model: str = "fake", usage: bool = True) -> FakeReply:
        """A chat stream: one chunk per piece, a finish chunk, a usage chunk if asked, [DONE]."""
        words = list(pieces)
        events = [
            sse_chunk(model, {"role": "assistant", "content": w} if i == 0 else {"content": w}, created=0)
            for i, w in enumerate(words)
        ]
        events.append(sse_chunk(model, {}, "stop", created=0))
        if usage:
            events.append(sse_chunk(model, None, created=0, usage=token_usage(1, len(words))))
        events.append(b"data: [DONE]\n\n")
        return cls(200, events=events)

    async def read(self) -> bytes:
        self.read_to_end = True
        return self._body if not self.streaming else b"".join(self._events)

    async def chunks(self) -> AsyncIterator[bytes]:
        for event in self._events:
            if self.closed:
                return
            yield event
        self.read_to_end = True

    def close(self) -> None:
        self.closed = True


Handler = Callable[[BackendRequest], FakeReply | Awaitable[FakeReply]]


class FakeBackend(Backend):
    """A backend whose answers come from `handler`; every request it got is kept in `requests`."""

    def __init__(self, name: str, handler: Handler, models: Iterable[str] = ()) -> None:
        self.name = name
        self._handler = handler
        self._models = list(models)
        self.requests: list[BackendRequest] = []
        self.replies: list[FakeReply] = []
        self.closed = False

    async def send(self, request: BackendRequest) -> BackendReply:
        self.requests.append(request)
        result = self._handler(request)
        reply = await result if inspect.isawaitable(result) else result
        self.replies.append(reply)
        return reply

    async def models(self) -> list[str]:
        return list(self._models)

    async def aclose(self) -> None:
        self.closed = True


def echo(request: BackendRequest) -> FakeReply:
    """Answer with the last message's text (chat) or the prompt (completions)."""
    messages = request.body.get("messages") or [{}]
    text = str(messages[-1].get("content", "")) if isinstance(messages[-1], dict) else ""
    if request.endpoint == "completions":
        text = str(request.body.get("prompt", ""))
    model = str(request.body.get("model", "fake"))
    if request.stream:
        return FakeReply.stream(text.split(" "), model=model)
    return FakeReply.chat(text, model=model)
