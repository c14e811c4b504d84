"""Fake engines as real HTTP servers on loopback, for tests and demos: an OpenAI-compatible one
and a Triton generate one, each with scripted faults, plus a way to run any aiohttp app in a
thread (httpx's `serve_in_thread` pattern).

    engine = FakeOpenAIEngine("a", models=["m1"])
    with serve_in_thread(engine.app()) as server:    # server.url == "http://127.0.0.1:<port>"
        engine.fault = Fault.SLOW_FIRST_BYTE           # any of wavefleet.wire.Fault
        ...
        assert engine.cancelled                        # requests whose client went away

A request may also pick its fault with the header `x-fake-fault` (a `Fault` value).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from wavefleet.wire import (
    DONE,
    PING,
    Answer,
    Fault,
    error_body,
    model_card,
    model_list,
    sse_event,
    token_usage,
)

__all__ = ["FakeOpenAIEngine", "FakeTritonEngine", "FlakyOpenAIEngine", "RunningServer", "serve_in_thread"]


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
    """An OpenAI-compatible engine that answers "<name> says: <last message>" in a few words.

    It serves every `Fault`: ERROR, GARBAGE, HANG and SLOW_FIRST_BYTE (a wait of `delay_s`) come
    before the status line; streams STALL after one event, CUT after two (the connection
    closes), end with an IN_BAND_ERROR after one, and SLOW_STREAM sends 50 events `delay_s`
    apart. Events are written in Python's default JSON spacing, as llama-cpp-python's server
    writes them, with a ping after each.
    """

    def __init__(self, name: str, models: list[str] | None = None, delay_s: float = 0.5) -> None:
        self.name = name
        self.models = list(models if models is not None else ["fake"])
        self.delay_s = delay_s
        self.fault = Fault.NONE
        self.requests: list[dict[str, Any]] = []  # bodies received, in order
        self.cancelled: list[dict[str, Any]] = []  # bodies whose request was aborted mid-answer
        self.completed = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_post("/v1/completions", self._complete)
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
        return web.json_response(model_list(model_card(m, owned_by=self.name) for m in self.models))

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

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        try:
            fault = Fault(request.headers.get("x-fake-fault", self.fault))
        except ValueError:
            known = ", ".join(Fault)
            return web.json_response(error_body(f"x-fake-fault: one of {known}", status=400), status=400)
        try:
            response = await self._answer(request, body, fault)
        except asyncio.CancelledError:
            self.cancelled.append(body)
            raise
        self.completed += 1
        return response

    async def _answer(self, request: web.Request, body: dict[str, Any], fault: Fault) -> web.StreamResponse:
        answer = Answer(
            str(body.get("model", "")),
            chat=request.path == "/v1/chat/completions",
            id="chatcmpl-fake" if request.path == "/v1/chat/completions" else "cmpl-fake",
        )
        if fault is Fault.HANG:
            await asyncio.sleep(3600)
        if fault is Fault.SLOW_FIRST_BYTE:
            await asyncio.sleep(self.delay_s)
        if fault is Fault.ERROR:
            return web.json_response(error_body(f"{self.name} is broken"), status=500)
        if fault is Fault.GARBAGE:
            return web.Response(body=b"<html>not json</html>", content_type="application/json")
        words = self.words(body)
        usage = token_usage(7, len(words))
        if not body.get("stream"):
            return web.json_response(answer.body(" ".join(words), usage=usage))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if fault is Fault.SLOW_STREAM:
            words = [f"w{i}" for i in range(50)]
        for index, word in enumerate(words):
            await response.write(sse_event(answer.chunk(word + " ", role=index == 0), spaced=True))
            await response.write(PING)
            if fault is Fault.SLOW_STREAM:
                await asyncio.sleep(self.delay_s)
            if fault is Fault.STALL:
                await asyncio.sleep(3600)
            if fault is Fault.CUT and index == 1:
                assert request.transport is not None
                request.transport.close()  # drop the connection mid-stream, no terminating chunk
                return response
            if fault is Fault.IN_BAND_ERROR:
                oom = error_body(f"{self.name} ran out of KV cache", code=500)
                await response.write(sse_event(oom, spaced=True))
                await response.write(DONE)
                return response
        await response.write(sse_event(answer.chunk(None, "stop"), spaced=True))
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            await response.write(sse_event(answer.usage_chunk(usage), spaced=True))
        await response.write(DONE)
        await response.write_eof()
        return response


class FlakyOpenAIEngine(FakeOpenAIEngine):
    """A bad new model version, for rollout tests and benchmarks: every `fail_every`-th request
    fails with a 500 before its first byte (5: 20 % of them), and every other one waits `slow_s`
    before answering (a slower engine). A request's `x-fake-fault` header still wins."""

    def __init__(
        self, name: str, *, fail_every: int = 0, slow_s: float = 0.0, models: list[str] | None = None
    ) -> None:
        super().__init__(name, models, delay_s=slow_s)
        self.fail_every = fail_every
        self.seen = 0

    async def _answer(self, request: web.Request, body: dict[str, Any], fault: Fault) -> web.StreamResponse:
        self.seen += 1
        if fault is Fault.NONE:
            if self.fail_every and self.seen % self.fail_every == 0:
                fault = Fault.ERROR
            elif self.delay_s > 0:
                fault = Fault.SLOW_FIRST_BYTE
        return await super()._answer(request, body, fault)


class FakeTritonEngine:
    """Triton's generate extension: `v2/models/{m}/generate[_stream]`, repository index, health."""

    def __init__(self, models: list[str] | None = None, fault: Fault = Fault.NONE) -> None:
        self.models = list(models if models is not None else ["ensemble"])
        self.fault = fault  # NONE, or IN_BAND_ERROR: an error event after the first
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
            await response.write(sse_event(event, spaced=True))
            if self.fault is Fault.IN_BAND_ERROR and index == 0:
                await response.write(sse_event({"error": "GPU fell off the bus"}, spaced=True))
                break
        await response.write_eof()
        return response
