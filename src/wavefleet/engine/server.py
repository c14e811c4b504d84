"""The embedded engine's HTTP server: OpenAI chat/completions in llama-server's dialect.

    python -m wavefleet.engine.server --model M.gguf --name smollm2 --fd 3   # socket from the supervisor
    python -m wavefleet.engine.server --model M.gguf --port 8081             # standalone

Why not `python -m llama_cpp.server`: it has no `/health`, `/slots` or `/metrics`, its
`/v1/models` waits behind a running generation, and by default (`interrupt_requests`) any new
request, a health poll included, ends the stream in flight early with `[DONE]`. This server
answers health and load endpoints at once, never interrupts, and speaks llama-server's
monitoring dialect (`/health` 503 while loading, `/slots`, `/props`, `/metrics` with
`llamacpp:requests_processing` / `requests_deferred`), so the gateway treats it as kind llamacpp.
It has one slot: requests run one at a time, in arrival order, the rest wait (deferred).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from wavefleet.engine.generation import Finish, GenerationParams, Generator, load_llama
from wavefleet.engine.settings import EngineSettings
from wavefleet.wire import DONE, Answer, error_body, model_card, model_list, sse_event

__all__ = ["EngineState", "build_engine_app", "main"]


@dataclass
class EngineState:
    settings: EngineSettings
    generator: Generator | None = None
    load_error: str = ""
    processing: int = 0
    deferred: int = 0
    prompt_tokens_total: int = 0
    predicted_tokens_total: int = 0
    requests_total: int = 0

    def __post_init__(self) -> None:
        self.slot = asyncio.Lock()  # one llama.cpp context: one request at a time
        self.loaded = asyncio.Event()  # set once loading ended, well or not


STATE = web.AppKey("engine_state", EngineState)
LOAD_WAIT_S = 60.0


def build_engine_app(
    settings: EngineSettings, load: Callable[[EngineSettings], Generator] | None = None
) -> web.Application:
    """The engine app; the model loads in a thread after startup, `/health` says 503 until then."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[STATE] = EngineState(settings)
    loader = load or (lambda s: Generator(load_llama(s)))

    async def load_model(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_load(app[STATE], loader))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(load_model)
    app.router.add_get("/health", _health)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/slots", _slots)
    app.router.add_get("/props", _props)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/completions", _completions)
    return app


async def _load(state: EngineState, loader: Callable[[EngineSettings], Generator]) -> None:
    try:
        state.generator = await asyncio.to_thread(loader, state.settings)
    except Exception as exc:  # llama.cpp reports a bad model as ValueError/RuntimeError
        state.load_error = f"{type(exc).__name__}: {exc}"
    finally:
        state.loaded.set()


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    """An error in llama-server's manner: the HTTP status as the code."""
    return web.json_response(error_body(message, status=status, error_type=kind, code=status), status=status)


async def _health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.load_error:
        return _error(500, f"model failed to load: {state.load_error}", "server_error")
    if state.generator is None:
        return _error(503, "Loading model", "unavailable_error")
    return web.json_response({"status": "ok"})


async def _models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    meta = {"n_ctx": state.settings.n_ctx, "path": str(state.settings.model_path)}
    card = model_card(state.settings.model_name, owned_by="wavefleet", created=int(time.time()), meta=meta)
    return web.json_response(model_list([card]))


async def _slots(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        [{"id": 0, "n_ctx": state.settings.n_ctx, "is_processing": state.processing > 0}]
    )


async def _props(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {"total_slots": 1, "model_path": str(state.settings.model_path), "n_ctx": state.settings.n_ctx}
    )


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rows = [
        ("requests_processing", "gauge", "Number of requests processing.", state.processing),
        ("requests_deferred", "gauge", "Number of requests deferred.", state.deferred),
        ("prompt_tokens_total", "counter", "Number of prompt tokens processed.", state.prompt_tokens_total),
        (
            "tokens_predicted_total",
            "counter",
            "Number of generation tokens processed.",
            state.predicted_tokens_total,
        ),
        ("requests_total", "counter", "Requests finished (wavefleet engine).", state.requests_total),
    ]
    lines = []
    for name, kind, help_text, value in rows:
        lines += [
            f"# HELP llamacpp:{name} {help_text}",
            f"# TYPE llamacpp:{name} {kind}",
            f"llamacpp:{name} {value}",
        ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")


async def _read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad_request(f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _bad_request("the body must be a JSON object")
    return body


def _bad_request(message: str) -> web.HTTPBadRequest:
    body = json.dumps(error_body(message, status=400, code=400))
    return web.HTTPBadRequest(text=body, content_type="application/json")


async def _chat(request: web.Request) -> web.StreamResponse:
    body = await _read_json(request)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "`messages` must be a non-empty list")
    return await _generate(request, body, chat=True)


async def _completions(request: web.Request) -> web.StreamResponse:
    body = await _read_json(request)
    if not isinstance(body.get("prompt"), str):
        return _error(400, "`prompt` must be a string")
    return await _generate(request, body, chat=False)


async def _generate(request: web.Request, body: dict[str, Any], chat: bool) -> web.StreamResponse:
    state = request.app[STATE]
    if state.generator is None:
        # A request that reached a (re)starting engine waits for the model instead of failing:
        # the supervisor keeps the port across restarts, so such requests are expected.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.loaded.wait(), LOAD_WAIT_S)
    if state.generator is None:
        return _error(503, state.load_error or "Loading model", "unavailable_error")
    generator = state.generator
    try:
        params = GenerationParams.from_openai(body)
    except (TypeError, ValueError) as exc:
        return _error(400, str(exc))
    try:
        if chat:
            prompt, stops = generator.chat_prompt(body["messages"])
        else:
            prompt, stops = generator.text_prompt(body["prompt"]), ()
    except ValueError as exc:
        return _error(400, str(exc))
    if len(prompt) >= generator.n_ctx:
        return _error(
            400, f"the prompt has {len(prompt)} tokens; this engine's context is {generator.n_ctx} (--ctx)"
        )
    answer = Answer(str(body.get("model") or state.settings.model_name), chat=chat)
    state.deferred += 1
    try:
        await state.slot.acquire()
    finally:
        state.deferred -= 1
    state.processing += 1
    cancel = threading.Event()

    def release(_: object) -> None:  # the slot is free when the worker thread is, not the handler
        state.processing -= 1
        state.slot.release()

    pieces = generator.stream(prompt, params, cancel, stops)
    loop = asyncio.get_running_loop()
    try:
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            queue: asyncio.Queue[str | Finish | BaseException] = asyncio.Queue()
            worker = loop.run_in_executor(None, _produce, pieces, queue, loop, state)
            worker.add_done_callback(release)
            return await _send_stream(request, queue, answer, include_usage)
        drained = loop.run_in_executor(None, _drain, pieces)
        drained.add_done_callback(release)
        finish = await drained
        _count(state, finish)
        body = answer.body(finish.text, finish.reason, usage=finish.usage(), timings=finish.timings())
        return web.json_response(body)
    finally:
        cancel.set()  # a client that left stops the generation; after a normal end this is a no-op


def _drain(pieces: Iterator[str | Finish]) -> Finish:
    for piece in pieces:
        if isinstance(piece, Finish):
            return piece
    raise RuntimeError("generation ended without a Finish")


def _count(state: EngineState, finish: Finish) -> None:
    state.requests_total += 1
    state.prompt_tokens_total += finish.prompt_tokens
    state.predicted_tokens_total += finish.completion_tokens


def _produce(
    pieces: Iterator[str | Finish],
    queue: asyncio.Queue[str | Finish | BaseException],
    loop: asyncio.AbstractEventLoop,
    state: EngineState,
) -> None:
    """Runs in a worker thread (llama.cpp releases the GIL while computing).

    Counts the tokens here, not in the handler, so a stream whose client left is counted too.
    """
    try:
        for piece in pieces:
            if isinstance(piece, Finish):
                loop.call_soon_threadsafe(_count, state, piece)
            loop.call_soon_threadsafe(queue.put_nowait, piece)
    except Exception as exc:  # handed to the event loop, which reports it in the stream
        loop.call_soon_threadsafe(queue.put_nowait, exc)


async def _send_stream(
    request: web.Request,
    queue: asyncio.Queue[str | Finish | BaseException],
    answer: Answer,
    include_usage: bool,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    # The role rides on the first token's chunk, never ahead of it: clients (vLLM's bench, ours)
    # stop the TTFT clock at the first chunk with choices, and routers learn queueing from TTFT.
    first = True
    while True:
        item = await queue.get()
        if isinstance(item, BaseException):
            await response.write(sse_event(error_body(str(item))))
            break
        if isinstance(item, Finish):
            if first:
                await response.write(sse_event(answer.chunk("", role=True)))
            await response.write(sse_event(answer.chunk(None, item.reason, timings=item.timings())))
            if include_usage:
                await response.write(sse_event(answer.usage_chunk(item.usage())))
            await response.write(DONE)
            break
        await response.write(sse_event(answer.chunk(item, role=first)))
        first = False
    await response.write_eof()
    return response


async def _watch_parent(parent_pid: int) -> None:
    """Exit when the supervisor is gone (even SIGKILLed), so no engine is left orphaned."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 - no event exists for "parent died"
        await asyncio.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wavefleet.engine.server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--name", default=None, help="model id to serve (default: file stem)")
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--fd", type=int, default=None, help="listening socket inherited from the supervisor")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    args = parser.parse_args(argv)
    settings = EngineSettings(
        model_path=args.model, model_name=args.name or args.model.stem, n_ctx=args.ctx, n_threads=args.threads
    )
    app = build_engine_app(settings)
    if args.parent_pid is not None:
        parent_pid = args.parent_pid

        async def watch(app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(_watch_parent(parent_pid))
            yield
            task.cancel()

        app.cleanup_ctx.append(watch)
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
        web.run_app(app, sock=sock, print=None, access_log=None)
    else:
        web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
