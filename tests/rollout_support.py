"""A deliberately bad green for rollout tests: a real OpenAI-shaped HTTP engine on loopback that
fails every `fail_every`-th chat request with a 500, or answers `delay_s` late.

    with BadEngine(fail_every=5) as engine:     # 20 % of chat requests fail
        engine.url                              # http://127.0.0.1:PORT, for an agent's `url:` entry
        engine.served                           # chat requests it saw

It runs its own event loop on a thread, so tests that drive subprocesses can use it as they are.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from types import TracebackType

from aiohttp import web

from helpers import free_port


class BadEngine:
    def __init__(self, *, fail_every: int = 0, delay_s: float = 0.0) -> None:
        self.fail_every = fail_every
        self.delay_s = delay_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.served = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> BadEngine:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/health", self._health),
                web.get("/v1/models", self._models),
                web.post("/v1/chat/completions", self._chat),
            ]
        )
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bad", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.served += 1
        if self.fail_every and self.served % self.fail_every == 0:
            return web.json_response(
                {"error": {"message": "injected failure", "type": "server_error"}}, status=500
            )
        await asyncio.sleep(self.delay_s)
        created = int(time.time())
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "bad-1", "object": "chat.completion", "created": created, "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                }
            )  # fmt: skip
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, piece in enumerate(("hello", " there")):
            chunk = {
                "id": "bad-1", "object": "chat.completion.chunk", "created": created, "model": body["model"],
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }  # fmt: skip
            if index:
                await asyncio.sleep(self.delay_s / 4)
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        done = {
            "id": "bad-1", "object": "chat.completion.chunk", "created": created, "model": body["model"],
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }  # fmt: skip
        await response.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response
