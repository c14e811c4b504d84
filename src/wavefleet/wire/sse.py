"""Server-sent events as OpenAI streams frame them: `data: <json>` and a blank line, `[DONE]` last."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["DONE", "PING", "sse_event"]

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"  # a comment line: keeps a quiet connection alive, carries no data


def sse_event(payload: Mapping[str, Any], *, spaced: bool = False) -> bytes:
    """One `data:` event. Compact JSON, as vLLM, llama-server and OpenAI send it; `spaced` gives
    Python's default `json.dumps` form (`", "`, `": "`), as llama-cpp-python's server sends it."""
    text = json.dumps(payload) if spaced else json.dumps(payload, separators=(",", ":"))
    return b"data: " + text.encode() + b"\n\n"
