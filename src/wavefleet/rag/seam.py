"""The gateway's `rag/NAME` models: one middleware the gateway installs when its config has `rag:`.

    install_rag(app, config.rag, registry=metrics.registry)     # in gateway/app.py's create_app

The middleware takes `POST /v1/chat/completions` whose `model` is `rag/NAME` and lists the
`rag/...` models in `GET /v1/models`; every other request passes to the gateway untouched. An
answer is made of two ordinary requests to the gateway itself, with the caller's key: one to
`/v1/embeddings` for the query (the collection's model, routed to the fleet's embedding
engine) and one to `/v1/chat/completions` for the answer (the configured model, routed like any
other request, so keys, limits, audit and routing apply as usual). Between them, BM25 and HNSW
search run here. Prometheus gets the stages apart: `wave_rag_retrieval_seconds{stage=embed|search}`
and `wave_rag_generation_seconds{stage=first_token|total}`; answers carry them as
`x-wave-rag-embed-ms` and `x-wave-rag-search-ms` headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError

from wavefleet.errors import EngineError, UsageError
from wavefleet.gateway.security.middleware import PRINCIPAL
from wavefleet.rag.answer import build_messages, citations_json, cited_numbers, last_user_text, sources_footer
from wavefleet.rag.config import RagConfig, RetrievalSettings
from wavefleet.rag.embedder import HttpEmbedder
from wavefleet.rag.model import bundled_model
from wavefleet.rag.paths import collection_dir, resolve_data_dir
from wavefleet.rag.retrieve import Hit, Retriever
from wavefleet.rag.store import Collection, collection_names

__all__ = ["PREFIX", "RagService", "install_rag"]

PREFIX = "rag/"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _error(status: int, message: str, code: str, param: str | None = None) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status)


def _self_url(request: web.Request) -> str:
    """This gateway's own address, as the caller reached it (the listening socket's)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return f"http://{request.host}/v1"
    host, port = sockname[0], sockname[1]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/v1"


class RagService:
    """The collections a gateway answers from, and the answering."""

    def __init__(self, config: RagConfig, *, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.data_dir = resolve_data_dir(config.data_dir)
        names = config.collections or collection_names(self.data_dir)
        self.retrievers: dict[str, Retriever] = {}
        self._names = names
        self._session: aiohttp.ClientSession | None = None
        registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.retrieval_seconds = Histogram(
            "wave_rag_retrieval_seconds",
            "RAG retrieval time by stage: embed (the query, through the fleet), search (BM25 + HNSW + fusion)",
            ["collection", "stage"],
            buckets=_STAGE_BUCKETS,
            registry=registry,
        )
        self.generation_seconds = Histogram(
            "wave_rag_generation_seconds",
            "RAG generation time from the request to the model: first_token, total",
            ["collection", "stage"],
            buckets=_STAGE_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "wave_rag_requests",
            "RAG answers by collection and status",
            ["collection", "status"],
            registry=registry,
        )

    @property
    def models(self) -> list[str]:
        return [PREFIX + name for name in sorted(self.retrievers)]

    async def start(self) -> None:
        """Open each collection and its HNSW graph (rebuilt from SQLite if behind) off the loop."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
            connector=aiohttp.TCPConnector(limit=256),
        )
        window = await asyncio.to_thread(bundled_model().window)
        for name in self._names:
            collection = await asyncio.to_thread(Collection, collection_dir(self.data_dir, name))
            await asyncio.to_thread(collection.open_index)
            placeholder = HttpEmbedder(url="http://127.0.0.1", model=self.config.embed_model)
            self.retrievers[name] = Retriever(collection, placeholder, window=window)

    async def aclose(self) -> None:
        for retriever in self.retrievers.values():
            retriever.close()
            retriever.collection.close()
        if self._session is not None:
            await self._session.close()

    # answering ------------------------------------------------------------------------------

    async def handle(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        name = str(payload["model"])[len(PREFIX) :]
        retriever = self.retrievers.get(name)
        if retriever is None:
            known = ", ".join(self.models) or "none (ingest one with `wave rag ingest`)"
            return _error(
                404, f"no collection {name!r} is served here; rag models: {known}", "model_not_found", "model"
            )
        status = "error"
        try:
            response = await self._answer(request, payload, name, retriever)
            status = str(response.status)
            return response
        finally:
            self.requests.labels(name, status).inc()

    async def _answer(
        self, request: web.Request, payload: dict[str, Any], name: str, retriever: Retriever
    ) -> web.StreamResponse:
        assert self._session is not None
        base = _self_url(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "x-session-id")}
        if request.get(PRINCIPAL) is None:  # no security layer checked the key: ask the gateway
            denied = await self._preflight(base, headers)
            if denied is not None:
                return denied
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(
                400,
                "`messages` must be a non-empty list of {role, content} objects",
                "invalid_request",
                "messages",
            )
        query = last_user_text(messages)
        if not query.strip():
            return _error(
                400, "the last user message has no text to search for", "invalid_request", "messages"
            )
        try:
            settings = self._settings(payload.get("rag"))
        except (ValidationError, UsageError) as exc:
            return _error(400, f"`rag` options: {exc}", "invalid_request", "rag")
        embedder = HttpEmbedder(
            url=str(self.config.embeddings_url or base),
            model=self.config.embed_model,
            api_key=_bearer(headers),
            session=self._session,
        )
        try:
            result = await retriever.search(query, settings, embedder=embedder)
        except EngineError as exc:
            return _error(502, f"retrieval could not embed the query: {exc}", "upstream_error")
        self.retrieval_seconds.labels(name, "embed").observe(result.embed_ms / 1000)
        self.retrieval_seconds.labels(name, "search").observe(result.search_ms / 1000)
        upstream = {k: v for k, v in payload.items() if k != "rag"}
        upstream["model"] = (payload.get("rag") or {}).get("model") or self.config.model
        upstream["messages"] = build_messages(messages, result.hits)
        if self.config.max_tokens is not None:
            asked = upstream.get("max_tokens")
            upstream["max_tokens"] = (
                min(asked, self.config.max_tokens) if isinstance(asked, int) else self.config.max_tokens
            )
        timing = {
            "x-wave-rag-collection": name,
            "x-wave-rag-embed-ms": f"{result.embed_ms:.2f}",
            "x-wave-rag-search-ms": f"{result.search_ms:.2f}",
        }
        url = str(self.config.generation_url or base).rstrip("/") + "/chat/completions"
        started = time.perf_counter()
        try:
            async with self._session.post(url, json=upstream, headers=headers) as answer:
                if answer.status != 200:
                    body = await answer.read()
                    return web.Response(
                        status=answer.status, body=body, content_type="application/json", headers=timing
                    )
                if upstream.get("stream") is True:
                    return await self._relay(request, answer, name, result.hits, timing, started)
                whole = await answer.json(content_type=None)
        except aiohttp.ClientError as exc:
            return _error(502, f"the generation request failed: {exc}", "upstream_error")
        self.generation_seconds.labels(name, "total").observe(time.perf_counter() - started)
        return web.json_response(self._finish_whole(whole, payload["model"], result.hits), headers=timing)

    def _settings(self, overrides: Any) -> RetrievalSettings:
        if overrides is None:
            return self.config.retrieval
        if not isinstance(overrides, dict):
            raise UsageError('`rag` must be an object, e.g. {"top_k": 8, "mode": "dense"}')
        fields = {k: v for k, v in overrides.items() if k != "model"}
        return RetrievalSettings.model_validate({**self.config.retrieval.model_dump(), **fields})

    async def _preflight(self, base: str, headers: dict[str, str]) -> web.Response | None:
        assert self._session is not None
        async with self._session.get(base.rstrip("/") + "/models", headers=headers) as answer:
            if answer.status == 200:
                return None
            return web.Response(
                status=answer.status, body=await answer.read(), content_type="application/json"
            )

    @staticmethod
    def _finish_whole(whole: Any, model: str, hits: list[Hit]) -> Any:
        if not isinstance(whole, dict):
            return whole
        whole["model"] = model
        choices = whole.get("choices") or []
        text = ""
        if choices and isinstance(choices[0].get("message"), dict):
            text = choices[0]["message"].get("content") or ""
            cited = cited_numbers(text, len(hits))
            choices[0]["message"]["content"] = text + sources_footer(hits, cited)
        else:
            cited = []
        whole["citations"] = citations_json(hits, cited)
        return whole

    async def _relay(
        self,
        request: web.Request,
        answer: aiohttp.ClientResponse,
        name: str,
        hits: list[Hit],
        timing: dict[str, str],
        started: float,
    ) -> web.StreamResponse:
        """Pass the model's stream through, renamed to rag/NAME; before its finishing chunk, add
        the sources as one more piece of text, and put `citations` on the finishing chunk."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **timing}
        )
        await response.prepare(request)
        model = PREFIX + name
        text: list[str] = []
        first = True
        finished = False
        async for line in _sse_lines(answer):
            if line == "[DONE]":
                break
            try:
                chunk = json.loads(line)
            except ValueError:
                continue
            if not isinstance(chunk, dict):
                continue
            chunk["model"] = model
            choices = chunk.get("choices") or []
            choice = choices[0] if choices and isinstance(choices[0], dict) else {}
            delta = choice.get("delta") or {}
            piece = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(piece, str) and piece:
                if first:
                    self.generation_seconds.labels(name, "first_token").observe(time.perf_counter() - started)
                    first = False
                text.append(piece)
            if choice.get("finish_reason") and not finished:
                finished = True
                await self._send_sources(response, chunk, hits, "".join(text))
                chunk["citations"] = citations_json(hits, cited_numbers("".join(text), len(hits)))
            await response.write(_event(chunk))
        if not finished:  # a stream that ended without a finishing chunk still gets its sources
            tail = {
                "id": "rag",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
            }
            await self._send_sources(response, tail, hits, "".join(text))
            tail["choices"] = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
            tail["citations"] = citations_json(hits, cited_numbers("".join(text), len(hits)))
            await response.write(_event(tail))
        await response.write(b"data: [DONE]\n\n")
        self.generation_seconds.labels(name, "total").observe(time.perf_counter() - started)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    @staticmethod
    async def _send_sources(
        response: web.StreamResponse, like: dict[str, Any], hits: list[Hit], text: str
    ) -> None:
        footer = sources_footer(hits, cited_numbers(text, len(hits)))
        if not footer:
            return
        piece = {k: v for k, v in like.items() if k not in ("choices", "usage", "citations")}
        piece["choices"] = [{"index": 0, "delta": {"content": footer}, "finish_reason": None}]
        await response.write(_event(piece))


def _bearer(headers: dict[str, str]) -> str | None:
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def _sse_lines(answer: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The `data:` payloads of a server-sent event stream."""
    async for raw in answer.content:
        line = raw.decode("utf-8", errors="replace").strip()
        if line.startswith("data:"):
            yield line[5:].strip()


def rag_middleware(service: RagService) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/v1/chat/completions":
            raw = await request.read()  # aiohttp keeps the body: the gateway's handler reads it again
            if b'"rag/' in raw:
                try:
                    payload = json.loads(raw)
                except ValueError:
                    payload = None
                if isinstance(payload, dict) and str(payload.get("model", "")).startswith(PREFIX):
                    return await service.handle(request, payload)
        response = await handler(request)
        if request.method == "GET" and request.path == "/v1/models" and isinstance(response, web.Response):
            return _with_rag_models(response, service.models)
        return response

    return middleware


def _with_rag_models(response: web.Response, models: list[str]) -> web.Response:
    if response.status != 200 or not models or not isinstance(response.body, bytes):
        return response
    try:
        listing = json.loads(response.body)
    except ValueError:
        return response
    if not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
        return response
    listing["data"] += [{"id": m, "object": "model", "owned_by": "wavefleet-rag"} for m in models]
    return web.json_response(
        listing,
        headers={
            k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")
        },
    )


def install_rag(
    app: web.Application, config: RagConfig, *, registry: CollectorRegistry | None = None
) -> RagService:
    """Answer `rag/NAME` on this gateway app; the collections open when it starts."""
    service = RagService(config, registry=registry)
    app.middlewares.append(rag_middleware(service))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.aclose()

    app.cleanup_ctx.append(lifecycle)
    return service
