"""Error answers in OpenAI's JSON format, with Retry-After and x-wave-backend where they apply."""

from __future__ import annotations

import json
import math

from aiohttp import web

from wavefleet.errors import GatewayError

__all__ = ["error_response", "json_response"]


def error_response(error: GatewayError, backend: str | None = None) -> web.Response:
    headers = {"Content-Type": "application/json"}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    if backend:
        headers["x-wave-backend"] = backend
    return web.Response(status=error.status, body=json.dumps(error.to_openai()).encode(), headers=headers)


def json_response(payload: object, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
