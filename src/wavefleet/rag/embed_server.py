"""The fleet's embedding engine: OpenAI's `/v1/embeddings` over a GGUF model run by llama.cpp.

    wave rag embed-server --port 8082        # the bundled all-MiniLM-L6-v2
    # in the gateway's wave.yaml:
    #   - {name: embed, url: "http://127.0.0.1:8082", kind: openai, models: [all-minilm-l6-v2]}

llama-server with `--embedding -m <the same GGUF>` answers the same requests with the same
vectors (`wave rag model` prints the file's path); this server exists so a machine without a
llama.cpp build has one, from the Python package alone. Concurrent requests share forward
passes (LocalEmbedder gathers them), and `/health` says 503 until the model is loaded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web

from wavefleet.errors import EngineError, UsageError
from wavefleet.rag.embedder import LocalEmbedder

__all__ = ["MAX_INPUTS", "build_embed_app"]

MAX_INPUTS = 2048  # OpenAI's own limit on inputs per request


@dataclass
class _Counters:
    requests: int = 0
    inputs: int = 0
    errors: int = 0
    seconds: float = 0.0


_EMBEDDER = web.AppKey("embedder", LocalEmbedder)
_READY = web.AppKey("ready", asyncio.Event)
_COUNTERS = web.AppKey("counters", _Counters)
_LOAD_ERROR = web.AppKey("load_error", list[str])


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": param, "code": None}}, status=status
    )


def build_embed_app(embedder: LocalEmbedder) -> web.Application:
    """The app; the model loads in a thread after startup."""
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[_EMBEDDER] = embedder
    app[_READY] = asyncio.Event()
    app[_COUNTERS] = _Counters()
    app[_LOAD_ERROR] = []

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async def load() -> None:
            try:
                await asyncio.to_thread(embedder.load)
            except EngineError as exc:
                app[_LOAD_ERROR].append(str(exc))
            app[_READY].set()

        task = asyncio.create_task(load())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await embedder.aclose()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/health", _health)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/embeddings", _embeddings)
    app.router.add_get("/metrics", _metrics)
    return app


async def _health(request: web.Request) -> web.Response:
    if request.app[_LOAD_ERROR]:
        return _error(500, request.app[_LOAD_ERROR][0])
    if not request.app[_READY].is_set():
        return _error(503, "loading model")
    return web.json_response({"status": "ok"})


async def _models(request: web.Request) -> web.Response:
    embedder = request.app[_EMBEDDER]
    model = {
        "id": embedder.name,
        "object": "model",
        "owned_by": "wavefleet",
        "meta": {"dim": embedder.dimension},
    }
    return web.json_response({"object": "list", "data": [model]})


def _inputs(body: Any) -> list[str]:
    if not isinstance(body, dict):
        raise UsageError("the body must be a JSON object with `model` and `input`")
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise UsageError("`input` must be a string or a non-empty list of strings")
    if not all(isinstance(t, str) for t in texts):
        raise UsageError("`input` must hold strings (token-id arrays are not taken here)")
    if len(texts) > MAX_INPUTS:
        raise UsageError(f"`input` has {len(texts)} items; send at most {MAX_INPUTS} a request")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise UsageError("`encoding_format` must be `float` or `base64`")
    return texts


async def _embeddings(request: web.Request) -> web.Response:
    counters = request.app[_COUNTERS]
    counters.requests += 1
    try:
        body = await request.json()
    except ValueError:
        counters.errors += 1
        return _error(400, "the body is not JSON")
    try:
        texts = _inputs(body)
    except UsageError as exc:
        counters.errors += 1
        return _error(400, str(exc), "input")
    embedder = request.app[_EMBEDDER]
    model = body.get("model")
    if model not in (None, embedder.name):
        counters.errors += 1
        return _error(404, f"this engine serves {embedder.name!r}, not {model!r}", "model")
    if request.app[_LOAD_ERROR]:
        return _error(500, request.app[_LOAD_ERROR][0])
    started = time.perf_counter()
    try:
        vectors = await embedder.embed(texts)
    except EngineError as exc:
        counters.errors += 1
        return _error(500, str(exc))
    counters.inputs += len(texts)
    counters.seconds += time.perf_counter() - started
    as_base64 = body.get("encoding_format") == "base64"
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
            if as_base64
            else [float(x) for x in v],
        }
        for i, v in enumerate(vectors)
    ]
    # Counted apart from the batched pass, which mixes several requests' inputs.
    tokens = sum(min(embedder.count_tokens(t), embedder.context) for t in texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return web.json_response({"object": "list", "data": data, "model": embedder.name, "usage": usage})


async def _metrics(request: web.Request) -> web.Response:
    c = request.app[_COUNTERS]
    rows = [
        ("wave_embed_requests_total", "counter", "Embedding requests received.", c.requests),
        ("wave_embed_inputs_total", "counter", "Texts embedded.", c.inputs),
        ("wave_embed_errors_total", "counter", "Requests answered with an error.", c.errors),
        ("wave_embed_seconds_total", "counter", "Seconds spent embedding.", round(c.seconds, 6)),
    ]
    lines: list[str] = []
    for name, kind, text, value in rows:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
