"""Fake engines as real HTTP servers on loopback, for tests and demos: an OpenAI-compatible one
and a Triton generate one, each with scripted behaviours, plus a way to run any aiohttp app in
a thread (httpx's `serve_in_thread` pattern).

    engine = FakeOpenAIEngine("a", models=["m1"])
    with serve_in_thread(engine.app()) as server:    # server.url == "http://127.0.0.1:<port>"
        engine.behaviour = "slow-first-byte"           # see BEHAVIOURS
        ...
        assert engine.cancelled                        # requests whose client went away

A request may also pick its behaviour with the header `x-fake-behaviour`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from wavefleet.gateway.backends.fake_wire import chat_completion, sse_chunk, token_usage

__all__ = ["BEHAVIOURS", "FakeOpenAIEngine", "FakeTritonEngine", "RunningServer", "serve_in_thread"]

BEHAVIOURS = {
    "ok": "answer at once (streams: pings between events, usage chunk when asked, [DONE])",
    "slow-first-byte": "wait `delay_s` before the status line, then answer",
    "hang": "accept the request and never answer",
    "cut": "stream two events, then drop the connection",
    "in-band-error": "stream one event, then an {'error': ...} event and [DONE]",
    "garbage": "answer 200 with a body that is not JSON",
    "status-500": "answer 500 with an OpenAI error body",
    "slow-stream": "stream one event every `delay_s` seconds, 50 events",
}


@dataclass
class RunningServer:
    url: str
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    stop_event: asyncio.Event = field(repr=False)


@contextmanager
def serve_in_thread(
    app: web.Application,
    *,
    handler_cancellation: bool = True,
    loop_factory: Any = None,
    runner_class: type[web.AppRunner] = web.AppRunner,
) -> Iterator[RunningServer]:
    """Run `app` on 127.0.0.1 and a port the OS picks, in a thread with its own event loop."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        runner = runner_class(app, access_log=None, handler_cancellation=handler_cancellation)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        box["stop"] = asyncio.Event()
        box["url"] = f"http://127.0.0.1:{port}"
        box["loop"] = asyncio.get_running_loop()
        ready.set()
        try:
            await box["stop"].wait()
        finally:
            await runner.cleanup()

    def run() -> None:
        try:
            if loop_factory is not None:
                with asyncio.Runner(loop_factory=loop_factory) as runner:
                    runner.run(main())
            else:
                asyncio.run(main())
        except BaseException as exc:  # surfaced to the caller below
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in box:
        raise RuntimeError(f"server failed to start: {box['error']!r}") from box["error"]
    server = RunningServer(box["url"], box["loop"], thread, box["stop"])
    try:
        yield server
    finally:
        server.loop.call_soon_threadsafe(server.stop_event.set)
        thread.join(30)


class FakeOpenAIEngine:
    """An OpenAI-compatible engine that answers "<name> says: <last message>" in a few words."""

    def __init__(self, name: str, models: list[str] | None = None, delay_s: float = 0.5) -> None:
        self.name = name
        self.models = list(models if models is not None else ["fake"])
        self.delay_s = delay_s
        self.behaviour = "ok"
        self.requests: list[dict[str, Any]] = []  # bodies received, in order
        self.cancelled: list[dict[str, Any]] = []  # bodies whose request was aborted mid-answer
        self.completed = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        return app

    def words(self, body: dict[str, Any]) -> list[str]:
        messages = body.get("messages")
        if isinstance(messages, list) and messages:
            text = str(messages[-1].get("content", ""))
        else:
            text = str(body.get("prompt", ""))
        return [f"{self.name}", "says:", *text.split()[:8]]

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": self.name} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        return web.json_response(
            {
                "object": "list",
                "model": body.get("model"),
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        behaviour = request.headers.get("x-fake-behaviour", self.behaviour)
        try:
            response = await self._answer(request, body, behaviour)
        except asyncio.CancelledError:
            self.cancelled.append(body)
            raise
        self.completed += 1
        return response

    async def _answer(self, request: web.Request, body: dict[str, Any], behaviour: str) -> web.StreamResponse:
        model = str(body.get("model", ""))
        if behaviour == "hang":
            await asyncio.sleep(3600)
        if behaviour == "slow-first-byte":
            await asyncio.sleep(self.delay_s)
        if behaviour == "status-500":
            error = {"error": {"message": f"{self.name} is broken", "type": "server_error", "code": None}}
            return web.json_response(error, status=500)
        if behaviour == "garbage":
            return web.Response(body=b"<html>not json</html>", content_type="application/json")
        words = self.words(body)
        if not body.get("stream"):
            text = " ".join(words)
            if request.path == "/v1/completions":
                return web.json_response(
                    {
                        "id": "cmpl-fake",
                        "object": "text_completion",
                        "created": int(time.time()),
                        "model": model,
                        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
                        "usage": token_usage(7, len(words)),
                    }
                )
            return web.json_response(chat_completion(model, text, token_usage(7, len(words))))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if behaviour == "slow-stream":
            words = [f"w{i}" for i in range(50)]
        for index, word in enumerate(words):
            delta = {"role": "assistant", "content": word + " "} if index == 0 else {"content": word + " "}
            await response.write(sse_chunk(model, delta))
            await response.write(b": ping\n\n")
            if behaviour == "slow-stream":
                await asyncio.sleep(self.delay_s)
            if behaviour == "cut" and index == 1:
                assert request.transport is not None
                request.transport.close()  # drop the connection mid-stream, no terminating chunk
                return response
            if behaviour == "in-band-error":
                oom = {"message": f"{self.name} ran out of KV cache", "type": "server_error", "code": 500}
                await response.write(b"data: " + json.dumps({"error": oom}).encode() + b"\n\n")
                await response.write(b"data: [DONE]\n\n")
                return response
        await response.write(sse_chunk(model, {}, "stop"))
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            await response.write(sse_chunk(model, None, usage=token_usage(7, len(words))))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


class FakeTritonEngine:
    """Triton's generate extension: `v2/models/{m}/generate[_stream]`, repository index, health."""

    def __init__(self, models: list[str] | None = None, behaviour: str = "ok") -> None:
        self.models = list(models if models is not None else ["ensemble"])
        self.behaviour = behaviour  # "ok" or "in-band-error"
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/models/{model}/generate", self._generate)
        app.router.add_post("/v2/models/{model}/generate_stream", self._generate_stream)
        app.router.add_post("/v2/repository/index", self._index)
        app.router.add_get("/v2/health/ready", self._ready)
        return app

    async def _ready(self, request: web.Request) -> web.Response:
        return web.Response()

    async def _index(self, request: web.Request) -> web.Response:
        return web.json_response([{"name": m, "version": "1", "state": "READY"} for m in self.models])

    def _check(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        model = request.match_info["model"]
        self.requests.append((model, body))
        if model not in self.models:
            return web.json_response(
                {"error": f"Request for unknown model: '{model}' is not found"}, status=400
            )
        if not isinstance(body.get("text_input"), str):
            return web.json_response({"error": "missing text_input"}, status=400)
        return None

    async def _generate(self, request: web.Request) -> web.Response:
        body = await request.json()
        problem = self._check(request, body)
        if problem is not None:
            return problem
        text = "triton says: " + body["text_input"].splitlines()[-2 if "\n" in body["text_input"] else -1]
        return web.json_response(
            {"model_name": request.match_info["model"], "model_version": "1", "text_output": text}
        )

    async def _generate_stream(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        problem = self._check(request, body)
        if problem is not None:
            return problem
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        model = request.match_info["model"]
        for index, piece in enumerate(["triton ", "streams ", "words"]):
            event = {"model_name": model, "model_version": "1", "text_output": piece}
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            if self.behaviour == "in-band-error" and index == 0:
                await response.write(b'data: {"error": "GPU fell off the bus"}\n\n')
                break
        await response.write_eof()
        return response
