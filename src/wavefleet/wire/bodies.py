"""The JSON bodies of OpenAI's API, as an OpenAI-compatible server sends them.

    answer = Answer("m", chat=True)                       # one answer: its id, created time, model
    answer.body("Hello!", "stop", usage=token_usage(9, 2))  # the whole answer: `chat.completion`
    answer.chunk("Hel", role=True)                        # a stream chunk: `chat.completion.chunk`
    answer.usage_chunk(token_usage(9, 2))                 # the choiceless chunk of include_usage
    error_body("no such model", status=404)               # {"error": {...}}, any status

With `chat=False` the same calls give text completions (`text_completion`, chunks included, as
OpenAI names them). Extra keyword arguments become extra top-level fields after `choices`
(`timings` in llama-server's dialect, `usage: null` on vLLM's chunks).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

__all__ = ["Answer", "error_body", "model_card", "model_list", "new_id", "token_usage"]


def new_id(chat: bool) -> str:
    """A fresh answer id: `chatcmpl-…` for chat, `cmpl-…` for text completions."""
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"


def token_usage(prompt_tokens: int, completion_tokens: int, **details: Any) -> dict[str, Any]:
    """A `usage` object; `details` adds fields such as `prompt_tokens_details`."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        **details,
    }


def error_body(
    message: str,
    *,
    status: int = 500,
    error_type: str | None = None,
    code: str | int | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """An error answer; the type defaults to OpenAI's for the status (`invalid_request_error`
    below 500, `server_error` from 500). Also the payload of an in-band error event."""
    kind = error_type or ("invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def model_card(model_id: str, *, owned_by: str, created: int = 0, **extra: Any) -> dict[str, Any]:
    """One entry of `GET /v1/models`; `extra` holds an engine's own fields (`max_model_len`, `meta`)."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by, **extra}


def model_list(cards: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": list(cards)}


class Answer:
    """The bodies of one answer to a chat or text completion request, sharing its id and time."""

    __slots__ = ("chat", "created", "id", "model")

    def __init__(self, model: str, *, chat: bool, id: str | None = None, created: int | None = None) -> None:
        self.model = model
        self.chat = chat
        self.id = id or new_id(chat)
        self.created = int(time.time()) if created is None else created

    def body(
        self,
        text: str,
        finish_reason: str | None = "stop",
        *,
        usage: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The whole answer; without `usage` the body has none (Triton reports no token counts)."""
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "text": text}
        choice.update(logprobs=None, finish_reason=finish_reason)
        body = self._head("chat.completion" if self.chat else "text_completion", [choice])
        if usage is not None:
            body["usage"] = usage
        body.update(extra)
        return body

    def chunk(
        self, text: str | None, finish_reason: str | None = None, *, role: bool = False, **extra: Any
    ) -> dict[str, Any]:
        """One stream chunk. Chat: `role` puts the assistant role in the delta (on the first
        chunk), `text=None` leaves the content out (a finish chunk's empty delta). Text
        completions: `text=None` is sent as ""."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta}
        else:
            choice = {"index": 0, "text": text or ""}
        choice.update(logprobs=None, finish_reason=finish_reason)
        return self._chunk([choice], extra)

    def usage_chunk(self, usage: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """The last chunk when the client asked for `stream_options.include_usage`: no choices."""
        return self._chunk([], {**extra, "usage": usage})

    def _chunk(self, choices: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
        chunk = self._head("chat.completion.chunk" if self.chat else "text_completion", choices)
        chunk.update(extra)
        return chunk

    def _head(self, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
