"""A small OpenAI-compatible engine run as its own process, for fault tests that kill, hang and
flap real processes. It records the exact bytes of every request body it receives.

    python tests/reliability_engine.py --name a [--mode ok] [--token-delay 0.01] [--tokens 20]

Prints `PORT <n>` once it listens (the OS picks the port). Modes, switchable at runtime with
`POST /admin/mode {"mode": ...}`: ok, hang (never answers), stall (one event, then silence),
cut (a few events, then the connection drops), error (500 before anything streams).
`GET /admin/bodies` returns the bodies received, base64, in order.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from typing import Any

from aiohttp import web

from wavefleet.gateway.backends.fake_wire import chat_completion, sse_chunk, token_usage


class Engine:
    def __init__(self, name: str, mode: str, token_delay: float, tokens: int) -> None:
        self.name, self.mode, self.token_delay, self.tokens = name, mode, token_delay, tokens
        self.bodies: list[bytes] = []
        self.served = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_post("/admin/mode", self.set_mode)
        app.router.add_get("/admin/bodies", self.get_bodies)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": self.name}]}
        )

    async def health(self, request: web.Request) -> web.Response:
        if self.mode == "error":
            return web.json_response({"status": "error"}, status=503)
        return web.json_response({"status": "ok"})

    async def set_mode(self, request: web.Request) -> web.Response:
        self.mode = (await request.json())["mode"]
        return web.json_response({"mode": self.mode, "served": self.served})

    async def get_bodies(self, request: web.Request) -> web.Response:
        return web.json_response([base64.b64encode(b).decode() for b in self.bodies])

    def chunk(
        self, model: str, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any
    ) -> bytes:
        return sse_chunk(model, delta, finish, completion_id=f"chatcmpl-{self.name}", **extra)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.bodies.append(raw)
        try:
            body = json.loads(raw)
            model = str(body.get("model", "m"))
            count = min(int(body.get("max_tokens") or self.tokens), self.tokens)
            options = body.get("stream_options") or {}
            wants_usage = bool(options.get("include_usage"))
        except (ValueError, TypeError, AttributeError) as exc:  # an engine answers 400 to what it cannot read
            return web.json_response(
                {"error": {"message": str(exc), "type": "invalid_request_error"}}, status=400
            )
        mode = self.mode
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "error":
            return web.json_response(
                {"error": {"message": f"{self.name} is failing", "type": "server_error"}}, status=500
            )
        usage = token_usage(5, count)
        if not body.get("stream"):
            await asyncio.sleep(self.token_delay * count)
            self.served += 1
            text = " ".join(f"{self.name}{i}" for i in range(count))
            return web.json_response(
                chat_completion(model, text, usage, completion_id=f"chatcmpl-{self.name}")
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(count):
            await response.write(self.chunk(model, {"content": f"{self.name}{i} "}))
            if mode == "stall":
                await asyncio.sleep(3600)
            if mode == "cut" and i == 2:
                assert request.transport is not None
                request.transport.abort()
                return response
            await asyncio.sleep(self.token_delay)
        await response.write(self.chunk(model, {}, "stop"))
        if wants_usage:
            await response.write(self.chunk(model, None, usage=usage))
        await response.write(b"data: [DONE]\n\n")
        self.served += 1
        return response


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="engine")
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--token-delay", type=float, default=0.01)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    engine = Engine(args.name, args.mode, args.token_delay, args.tokens)
    runner = web.AppRunner(engine.app(), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
