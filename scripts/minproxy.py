#!/usr/bin/env python3
"""The thinnest Python pass-through proxy worth the name: the yardstick for gateway overhead.

It forwards POST /v1/chat/completions to an upstream over one pooled aiohttp session and relays
the answer as it comes (a JSON body whole, an SSE stream chunk by chunk). It has no keys, routing,
checks, metrics or logging, so what a gateway costs beyond it is the price of those features.
scripts/gateway_overhead.py starts it beside the gateway under test.

    python scripts/minproxy.py PORT UPSTREAM_URL
"""

from __future__ import annotations

import sys

import aiohttp
import uvloop
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def forward(request: web.Request) -> web.StreamResponse:
    payload = await request.read()
    url = request.app[UPSTREAM] + request.path
    headers = {"Content-Type": "application/json"}
    async with request.app[SESSION].post(url, data=payload, headers=headers) as upstream:
        if upstream.content_type != "text/event-stream":
            body = await upstream.read()
            return web.Response(body=body, status=upstream.status, content_type=upstream.content_type)
        relay = web.StreamResponse(status=upstream.status, headers={"Content-Type": "text/event-stream"})
        await relay.prepare(request)
        async for chunk in upstream.content.iter_any():
            await relay.write(chunk)
        await relay.write_eof()
        return relay


async def build(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))

    async def close_session(app: web.Application) -> None:
        await app[SESSION].close()

    app.on_cleanup.append(close_session)
    app.router.add_post("/v1/chat/completions", forward)
    return app


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python scripts/minproxy.py PORT UPSTREAM_URL")
    uvloop.install()
    web.run_app(build(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
