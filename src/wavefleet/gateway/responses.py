"""Error answers in OpenAI's JSON format, with Retry-After and x-wave-backend where they apply.

Every answer of the API is OpenAI-shaped, the HTTP layer's own included: `openai_errors` turns
aiohttp's answers for unknown paths and wrong methods into OpenAI error bodies (and any error a
handler did not expect into a 500 that says nothing of the code), and `runner.GatewayRunner`
does the same for requests too malformed to reach the app.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from wavefleet.errors import (
    BadRequestError,
    BodyTooLargeError,
    GatewayError,
    MethodNotAllowedError,
    NotFoundError,
)

__all__ = ["error_response", "http_error", "json_response", "openai_errors"]

_log = logging.getLogger("wavefleet.gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


class _InternalError(GatewayError):
    status, error_type, code = 500, "server_error", "internal_error"


def http_error(status: int, detail: str, *, method: str = "", path: str = "") -> GatewayError:
    """The OpenAI-shaped error for an answer the HTTP layer chose (`status` from aiohttp)."""
    if status == 404:
        return NotFoundError(
            f"no such path: {path!r}; the API serves /v1/chat/completions, /v1/completions, "
            "/v1/embeddings, /v1/models, /health and /metrics"
        )
    if status == 405:
        return MethodNotAllowedError(f"{path!r} does not take {method}: {detail}")
    if status == 413:
        return BodyTooLargeError(detail)
    if status >= 500:
        return _InternalError("the gateway failed to answer this request; the error is in its log")
    error = BadRequestError(f"malformed HTTP request: {detail}")
    error.status = status
    return error


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own error answers (404, 405, ...) and unexpected failures, as OpenAI errors."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allowed = exc.headers.get("Allow", "")
        detail = f"use {allowed}" if allowed else exc.reason
        response = error_response(http_error(exc.status, detail, method=request.method, path=request.path))
        if allowed:
            response.headers["Allow"] = allowed
        return response
    except GatewayError as exc:
        return error_response(exc)
    except Exception:
        _log.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(http_error(500, ""))
