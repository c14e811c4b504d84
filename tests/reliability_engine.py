"""A small OpenAI-compatible engine run as its own process, for fault tests that kill, hang and
flap real processes. It records the exact bytes of every request body it receives.

    python tests/reliability_engine.py --name a [--fault none] [--token-delay 0.01] [--tokens 20]

Prints `PORT <n>` once it listens (the OS picks the port). Faults (`wavefleet.wire.Fault`),
switchable at runtime with `POST /admin/fault {"fault": ...}`: none, hang, stall (after one
event), cut (after three events, the connection aborted) and error (which also makes /health
answer 503). `GET /admin/bodies` returns the bodies received, base64, in order.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys

from aiohttp import web

from wavefleet.wire import DONE, Answer, Fault, error_body, model_card, model_list, sse_event, token_usage

SERVED = (Fault.NONE, Fault.HANG, Fault.STALL, Fault.CUT, Fault.ERROR)


class Engine:
    def __init__(self, name: str, fault: Fault, token_delay: float, tokens: int) -> None:
        self.name, self.fault, self.token_delay, self.tokens = name, fault, token_delay, tokens
        self.bodies: list[bytes] = []
        self.served = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.complete)
        app.router.add_post("/v1/completions", self.complete)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_post("/admin/fault", self.set_fault)
        app.router.add_get("/admin/bodies", self.get_bodies)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(model_list([model_card("m", owned_by=self.name)]))

    async def health(self, request: web.Request) -> web.Response:
        if self.fault is Fault.ERROR:
            return web.json_response({"status": "error"}, status=503)
        return web.json_response({"status": "ok"})

    async def set_fault(self, request: web.Request) -> web.Response:
        fault = Fault((await request.json())["fault"])
        if fault not in SERVED:
            return web.json_response(
                error_body(f"this engine serves {', '.join(SERVED)}", status=400), status=400
            )
        self.fault = fault
        return web.json_response({"fault": self.fault, "served": self.served})

    async def get_bodies(self, request: web.Request) -> web.Response:
        return web.json_response([base64.b64encode(b).decode() for b in self.bodies])

    async def complete(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.bodies.append(raw)
        try:
            body = json.loads(raw)
            model = str(body.get("model", "m"))
            count = min(int(body.get("max_tokens") or self.tokens), self.tokens)
            options = body.get("stream_options") or {}
            wants_usage = bool(options.get("include_usage"))
        except (ValueError, TypeError, AttributeError) as exc:  # an engine answers 400 to what it cannot read
            return web.json_response(error_body(str(exc), status=400), status=400)
        fault = self.fault
        if fault is Fault.HANG:
            await asyncio.sleep(3600)
        if fault is Fault.ERROR:
            return web.json_response(error_body(f"{self.name} is failing"), status=500)
        chat = request.path == "/v1/chat/completions"
        answer = Answer(model, chat=chat, id=f"{'chatcmpl' if chat else 'cmpl'}-{self.name}")
        usage = token_usage(5, count)
        if not body.get("stream"):
            await asyncio.sleep(self.token_delay * count)
            self.served += 1
            text = " ".join(f"{self.name}{i}" for i in range(count))
            return web.json_response(answer.body(text, usage=usage))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(count):
            await response.write(sse_event(answer.chunk(f"{self.name}{i} ", role=i == 0), spaced=True))
            if fault is Fault.STALL:
                await asyncio.sleep(3600)
            if fault is Fault.CUT and i == 2:
                assert request.transport is not None
                request.transport.abort()
                return response
            await asyncio.sleep(self.token_delay)
        await response.write(sse_event(answer.chunk(None, "stop"), spaced=True))
        if wants_usage:
            await response.write(sse_event(answer.usage_chunk(usage), spaced=True))
        await response.write(DONE)
        self.served += 1
        return response


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="engine")
    parser.add_argument("--fault", type=Fault, choices=SERVED, default=Fault.NONE)
    parser.add_argument("--token-delay", type=float, default=0.01)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    engine = Engine(args.name, args.fault, args.token_delay, args.tokens)
    runner = web.AppRunner(engine.app(), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
