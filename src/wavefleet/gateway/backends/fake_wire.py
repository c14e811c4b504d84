"""OpenAI wire-format bodies for the fakes: `FakeReply` (in process), `FakeOpenAIEngine` (a real
server on loopback) and the reliability tests' engine process all build their answers here, so
every fake speaks the same format.
"""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = ["chat_completion", "sse_chunk", "token_usage"]


def token_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    model: str,
    text: str,
    tokens: dict[str, int],
    *,
    completion_id: str = "chatcmpl-fake",
    created: int | None = None,
) -> dict[str, Any]:
    """A non-streamed chat answer; `created` defaults to now."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": tokens,
    }


def sse_chunk(
    model: str,
    delta: dict[str, Any] | None,
    finish: str | None = None,
    *,
    completion_id: str = "chatcmpl-fake",
    created: int | None = None,
    **extra: Any,
) -> bytes:
    """One `data:` event of a chat stream; `delta=None` gives the choiceless usage trailer."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    body.update(extra)
    return b"data: " + json.dumps(body).encode() + b"\n\n"
