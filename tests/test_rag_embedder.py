"""HttpEmbedder against real endpoints: `wave rag embed-server` (answers base64 when asked) and an
OpenAI-style endpoint that answers lists of floats whatever was asked, as some engines do."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from wavefleet.errors import EngineError
from wavefleet.gateway.backends.fake_servers import serve_in_thread
from wavefleet.rag.embed_server import build_embed_app
from wavefleet.rag.embedder import HttpEmbedder, LocalEmbedder
from wavefleet.rag.model import bundled_model, ensure_gguf

TEXTS = ["When does the finally clause run?", "winter tyres", "A man is eating food."]


class FixedEndpoint:
    """/v1/embeddings answering each text with fixed rows, in the form given (floats or a string)."""

    def __init__(self, embedding: Any) -> None:
        self.embedding = embedding

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._embeddings)
        return app

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        data = [
            {"object": "embedding", "index": i, "embedding": self.embedding}
            for i, _ in enumerate(body["input"])
        ]
        return web.json_response({"object": "list", "data": data, "model": body["model"]})


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEmbedder]:
    model = bundled_model()
    embedder = LocalEmbedder(ensure_gguf(model, tmp_path_factory.mktemp("models")), name=model.name)
    embedder.load()
    yield embedder
    asyncio.run(embedder.aclose())


def embed_over_http(url: str, texts: list[str]) -> np.ndarray[Any, Any]:
    async def run() -> np.ndarray[Any, Any]:
        embedder = HttpEmbedder(url=f"{url}/v1", model="all-minilm-l6-v2")
        try:
            return await embedder.embed(texts)
        finally:
            await embedder.aclose()

    return asyncio.run(run())


def test_vectors_from_the_embed_server_equal_the_local_ones(local: LocalEmbedder) -> None:
    model = bundled_model()
    served = LocalEmbedder(local._path, name=model.name)
    with serve_in_thread(build_embed_app(served)) as server:
        vectors = embed_over_http(server.url, TEXTS)
    assert vectors.shape == (3, 384)
    assert np.allclose(vectors, local.embed_now(TEXTS), atol=1e-6)


def test_an_endpoint_answering_floats_is_read_too() -> None:
    with serve_in_thread(FixedEndpoint([3.0, 4.0]).app()) as server:
        vectors = embed_over_http(server.url, TEXTS[:2])
    assert np.allclose(vectors, [[0.6, 0.8], [0.6, 0.8]])


def test_a_garbled_embedding_is_an_engine_error_naming_the_endpoint() -> None:
    with (
        serve_in_thread(FixedEndpoint("not base64!").app()) as server,
        pytest.raises(EngineError, match=r"/v1/embeddings answered without OpenAI's"),
    ):
        embed_over_http(server.url, TEXTS[:1])
