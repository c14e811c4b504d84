"""Ollama behind the gateway: its dialect against a fake Ollama (a real aiohttp server on
loopback answering `/api/version`, `/api/ps`, `/api/tags` and the OpenAI `/v1` routes), and a chat
through the whole gateway."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from wavefleet.engines import EngineKind
from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends.fake_servers import serve_in_thread
from wavefleet.gateway.config import BackendConfig, GatewayConfig
from wavefleet.gateway.monitor import PollingMonitor
from wavefleet.gateway.monitor.dialects import HttpProbe, PollError, dialect_for
from wavefleet.wire import DONE, Answer, model_card, model_list, sse_event, token_usage

GIB = 2**30


class FakeOllama:
    """Ollama's HTTP surface as `ollama serve` answers it: `GET /` and `/api/version` (liveness),
    `/api/tags` (pulled models), `/api/ps` (models loaded in memory, which unload after
    keep_alive), and OpenAI's `/v1/models` and `/v1/chat/completions` (usage in a last chunk
    when the request asks `stream_options.include_usage`)."""

    def __init__(self, pulled: list[str], resident: list[str]) -> None:
        self.pulled, self.resident = pulled, resident
        self.version: object = "0.12.6"
        self.requests: list[dict[str, Any]] = []
        self.hits: list[str] = []
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._root)
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeOllama]:
        runner = web.AppRunner(self.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            yield self
        finally:
            await runner.cleanup()

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.json_response({"version": self.version})

    def _model(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "size": 2 * GIB,
            "digest": "a80c4f17acd5",
            "details": {
                "format": "gguf",
                "family": "llama",
                "parameter_size": "1.2B",
                "quantization_level": "Q8_0",
            },
        }

    async def _tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [self._model(m) for m in self.pulled]})

    async def _ps(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        loaded = [
            {
                **self._model(m),
                "expires_at": "2030-01-01T00:05:00Z",
                "size_vram": 2 * GIB,
                "context_length": 4096,
            }
            for m in self.resident
        ]
        return web.json_response({"models": loaded})

    async def _models(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.json_response(model_list(model_card(m, owned_by="library") for m in self.pulled))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        model = str(body.get("model"))
        if model not in self.pulled:
            return web.json_response(
                {"error": {"message": f'model "{model}" not found, try pulling it first'}}, status=404
            )
        answer, words = Answer(model, chat=True), ["Hello", "from", "ollama"]
        usage = token_usage(12, len(words))
        if not body.get("stream"):
            return web.json_response(answer.body(" ".join(words), "stop", usage=usage))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, word in enumerate(words):
            await response.write(sse_event(answer.chunk(word + " ", role=index == 0)))
        await response.write(sse_event(answer.chunk(None, "stop")))
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(sse_event(answer.usage_chunk(usage)))
        await response.write(DONE)
        return response


def ollama_backend(url: str, **extra: Any) -> BackendConfig:
    return BackendConfig.model_validate({"name": "ollama", "url": url, "kind": "ollama", **extra})


def test_the_monitor_keeps_a_pulled_model_that_has_unloaded() -> None:
    """Ollama unloads an idle model after keep_alive; it still answers a request for it (by
    loading it again), so the monitor lists every pulled model, not only the resident ones."""

    async def main() -> None:
        fake = FakeOllama(pulled=["llama3.2:1b", "qwen2.5:0.5b"], resident=["llama3.2:1b"])
        async with fake.running(), aiohttp.ClientSession() as session:
            monitor = PollingMonitor([ollama_backend(fake.url)], session, interval_s=60)
            await monitor.start()
            try:
                snapshot = monitor.snapshot("ollama")
            finally:
                await monitor.aclose()
        assert snapshot.healthy, snapshot.error
        assert snapshot.models == ("llama3.2:1b", "qwen2.5:0.5b")
        # Ollama reports no queue, running count or slots: the router counts in-flight requests
        assert (snapshot.running, snapshot.waiting, snapshot.kv_usage, snapshot.slots_total) == (None,) * 4
        assert "/api/version" in fake.hits

    asyncio.run(main())


def test_a_server_that_is_not_ollama_fails_the_health_check() -> None:
    async def main() -> str:
        fake = FakeOllama(pulled=["m"], resident=[])
        fake.version = None  # something else answers /api/version, without Ollama's version
        async with fake.running(), aiohttp.ClientSession() as session:
            backend = ollama_backend(fake.url)
            try:
                await dialect_for(backend.kind).poll(HttpProbe(session, timeout_s=5), backend)
            except PollError as exc:
                return str(exc)
        raise AssertionError("the poll passed")

    message = asyncio.run(main())
    assert "/api/version" in message and "Ollama" in message


def test_a_refused_connection_is_a_poll_error() -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            backend = ollama_backend("http://127.0.0.1:9")
            try:
                await dialect_for(backend.kind).poll(HttpProbe(session, timeout_s=2), backend)
            except PollError:
                return
        raise AssertionError("the poll passed")

    asyncio.run(main())


def test_a_chat_goes_through_the_gateway_to_ollama_with_its_usage_counted() -> None:
    fake = FakeOllama(pulled=["llama3.2:1b"], resident=[])
    with serve_in_thread(fake.app()) as engine:
        config = GatewayConfig.model_validate(
            {
                "backends": [
                    {"name": "ollama", "url": engine.url + "/v1", "kind": "ollama", "models": ["llama3.2:1b"]}
                ]
            }
        )
        with serve_in_thread(create_app(config)) as gateway:
            chat = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}]}
            whole = _post(gateway.url + "/v1/chat/completions", chat)
            streamed = _post(gateway.url + "/v1/chat/completions", {**chat, "stream": True}).decode()
            with urllib.request.urlopen(gateway.url + "/metrics", timeout=10) as reply:
                metrics = reply.read().decode()
    assert json.loads(whole)["choices"][0]["message"]["content"] == "Hello from ollama"
    assert "ollama " in streamed and streamed.endswith("data: [DONE]\n\n")
    assert '"usage"' not in streamed  # the gateway asked for usage itself, and kept it
    assert fake.requests[1]["stream_options"] == {"include_usage": True}
    assert 'wave_completion_tokens_total{backend="ollama",model="llama3.2:1b"} 6.0' in metrics


def test_the_kind_is_ollama_on_its_default_port_with_one_slot() -> None:
    traits = EngineKind("ollama").traits
    assert (traits.port, traits.health_path, traits.slots.count, traits.catalog_id) == (
        11434,
        "/api/version",
        1,
        "ollama",
    )
    assert traits.launch is not None
    argv, env = traits.launch.arguments(model=None, port=11434, context=8192, slots=2)
    assert argv == ["ollama", "serve"]
    assert env == {
        "OLLAMA_HOST": "0.0.0.0:11434",
        "OLLAMA_CONTEXT_LENGTH": "8192",
        "OLLAMA_NUM_PARALLEL": "2",
    }


def _post(url: str, body: dict[str, Any]) -> bytes:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=20) as reply:
        return bytes(reply.read())
