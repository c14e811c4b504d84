"""An in-process backend that answers with a handler you give it, like httpx's `MockTransport`.

    def handler(request: BackendRequest) -> FakeReply:
        return FakeReply.chat("hello")        # or .completion("hi"), .stream([...]), FakeReply(503, ...)

    backend = FakeBackend("fake", handler, models=["m"])
    app = create_app(config, monitor, backends={"fake": backend})

`echo` is a ready handler that answers chat with the last message and completions with the prompt.
Bodies are OpenAI's (`wavefleet.wire`), events in Python's default JSON spacing (as
llama-cpp-python's server sends them), so the gateway's relay meets both spacings in tests.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from wavefleet.gateway.backends.base import Backend, BackendReply, BackendRequest
from wavefleet.wire import DONE, Answer, sse_event, token_usage

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
        """A chat completion (`chat.completion`) of `text`, a token per word."""
        answer = Answer(model, chat=True, id="chatcmpl-fake", created=0)
        return cls.json(answer.body(text, usage=token_usage(prompt_tokens, len(text.split()))))

    @classmethod
    def completion(cls, text: str, model: str = "fake", prompt_tokens: int = 1) -> FakeReply:
        """A text completion (`text_completion`) of `text`, a token per word."""
        answer = Answer(model, chat=False, id="cmpl-fake", created=0)
        return cls.json(answer.body(text, usage=token_usage(prompt_tokens, len(text.split()))))

    @classmethod
    def stream(
        cls, pieces: Iterable[str], model: str = "fake", usage: bool = True, *, chat: bool = True
    ) -> FakeReply:
        """A stream: one chunk per piece, a finish chunk, a usage chunk if asked, [DONE]."""
        answer = Answer(model, chat=chat, id="chatcmpl-fake" if chat else "cmpl-fake", created=0)
        words = list(pieces)
        chunks = [answer.chunk(w, role=i == 0) for i, w in enumerate(words)]
        chunks.append(answer.chunk(None, "stop"))
        if usage:
            chunks.append(answer.usage_chunk(token_usage(1, len(words))))
        return cls(200, events=[*(sse_event(c, spaced=True) for c in chunks), DONE])

    def events(self) -> list[bytes]:
        """The SSE events a stream sends, in order."""
        return list(self._events)

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
    chat = request.endpoint != "completions"
    if request.stream:
        return FakeReply.stream(text.split(" "), model=model, chat=chat)
    return FakeReply.chat(text, model=model) if chat else FakeReply.completion(text, model=model)
