"""A request body as the gateway reads it: one JSON object, or a 400 that says what is wrong."""

from __future__ import annotations

import json
from typing import Any

from wavefleet.errors import BadRequestError

__all__ = ["parse_body"]


def parse_body(raw: bytes) -> dict[str, Any]:
    """The body's JSON object; BadRequestError (400) for anything else, hostile input included."""
    try:
        payload = json.loads(raw)
    except RecursionError:
        # json's decoder recurses per level of nesting: a few KB of brackets exhaust the stack
        raise BadRequestError(
            "the request body is nested too deeply to parse; OpenAI requests need a few levels"
        ) from None
    except ValueError as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadRequestError("the request body must be a JSON object")
    return payload
