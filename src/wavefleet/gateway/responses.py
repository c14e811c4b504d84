"""Error answers in OpenAI's JSON format, with Retry-After and x-wave-backend where they apply.

Every answer of the API is OpenAI-shaped, the HTTP layer's own included: `with_fallbacks` adds
routes that answer unknown paths (404) and wrong methods (405) with OpenAI error bodies, each
handler is wrapped by `openai_errors` (any error it did not expect becomes a 500 that says
nothing of the code), and `runner.GatewayRunner` does the same for requests too malformed to
reach the app. Routes and wrappers, not a middleware: a middleware adds two coroutine frames
(its own and aiohttp's `_fix_request_current_app`) to every request's await chain.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from wavefleet.errors import (
    BadRequestError,
    BodyTooLargeError,
    GatewayError,
    MethodNotAllowedError,
    NotFoundError,
)

__all__ = ["error_response", "http_error", "json_response", "openai_errors", "with_fallbacks"]

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


def openai_errors(handler: Handler) -> Handler:
    """`handler`, with a GatewayError it raises answered as such and any other error as an OpenAI 500."""

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(
                http_error(exc.status, exc.reason, method=request.method, path=request.path)
            )
        except GatewayError as exc:
            return error_response(exc)
        except Exception:
            _log.exception("unexpected error answering %s %s", request.method, request.path)
            return error_response(http_error(500, ""))

    return answer


def with_fallbacks(routes: Sequence[web.RouteDef]) -> list[web.RouteDef]:
    """`routes` with their handlers wrapped by `openai_errors`, each path followed by a route that
    answers any other method with an OpenAI 405 (and `Allow`), and a last one that answers any
    other path with an OpenAI 404. aiohttp puts a path's routes on one resource when they are
    added one after the other, so the 405 route only gets the methods the path does not take."""
    allowed: dict[str, list[str]] = {}
    for route in routes:
        methods = allowed.setdefault(route.path, [])
        methods.append(route.method)
        if route.method == "GET":
            methods.append("HEAD")  # aiohttp answers HEAD on every GET route
    out: list[web.RouteDef] = []
    for path, methods in allowed.items():
        out += [
            web.route(r.method, r.path, openai_errors(r.handler), **r.kwargs)
            for r in routes
            if r.path == path
        ]
        out.append(web.route("*", path, _wrong_method(", ".join(methods))))
    out.append(web.route("*", "/{path:.*}", _unknown_path))
    return out


def _wrong_method(allow: str) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        error = http_error(405, f"use {allow}", method=request.method, path=request.path)
        response = error_response(error)
        response.headers["Allow"] = allow
        return response

    return answer


async def _unknown_path(request: web.Request) -> web.StreamResponse:
    return error_response(http_error(404, "", path=request.path))
