"""The HTTP server the gateway runs on: aiohttp's, with OpenAI-shaped answers for requests too
malformed to reach the app (NUL bytes or spaces in a header, a header line over the limit).

aiohttp answers those from its protocol layer, before any middleware, in text/plain. The
runner's server hands out connection handlers whose `handle_error` writes an OpenAI error body
instead (aiohttp still logs the error and closes the connection, as it does for its own).

    runner = GatewayRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
"""

from __future__ import annotations

import json
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from wavefleet.gateway.responses import http_error

__all__ = ["GatewayRunner"]


class _OpenAIErrorHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs, and raises once bytes went out
        detail = (message or "").strip().split("\n")[0] or _phrase(status)
        error = http_error(status, detail, method=request.method, path=request.path)
        response = web.Response(
            status=status,
            body=json.dumps(error.to_openai()).encode(),
            headers={"Content-Type": "application/json"},
        )
        response.force_close()  # the connection's state is unknown after a malformed request
        return response


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "bad request"


class _OpenAIErrorServer(Server):
    def __call__(self) -> RequestHandler:
        # aiohttp builds one handler per connection from the server's keyword arguments
        return _OpenAIErrorHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` whose server answers malformed requests in OpenAI's error format."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _OpenAIErrorServer
        return server
