"""`rag/NAME` through the gateway: the real embedding engine behind it, a citing chat engine, the
official openai client in front. Checks citations point at text that holds the answer."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from aiohttp import web

from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends.fake_servers import serve_in_thread
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.monitor.snapshot import StaticMonitor
from wavefleet.rag.chunking import Chunker, load_tokenizer
from wavefleet.rag.embed_server import build_embed_app
from wavefleet.rag.embedder import LocalEmbedder
from wavefleet.rag.ingest import ingest, plan_ingest
from wavefleet.rag.model import bundled_model, ensure_gguf
from wavefleet.rag.paths import collection_dir
from wavefleet.rag.store import Collection

KEY = "sk-rag-test-0123456789"
NOTES = {
    "car.md": "# Car\n\nOil change every 10,000 km.\n\n## Tyres\n\nWinter tyres go on in November.\n",
    "boiler.txt": "The boiler is serviced every October by Jan, phone 555-0101.",
    "bins.txt": "Recycling is collected on Thursdays; garden waste every other Monday.",
}


class CitingEngine:
    """A chat engine that answers with the first sentence of source [1] and cites it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "writer", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        system = body["messages"][0]["content"]
        first = system.split("\n[1] ", 1)[-1].split("\n[2] ", 1)[0].splitlines()[1:]
        lines = [line for line in first if line.strip() and not line.startswith("#")]
        answer = f"{lines[0].strip() if lines else 'I do not know.'} [1]"
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": answer}
            return web.json_response(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in answer.split(" "):
            delta = {"index": 0, "delta": {"content": word + " "}, "finish_reason": None}
            await response.write(b"data: " + json.dumps({**base, "choices": [delta]}).encode() + b"\n\n")
        end = {"index": 0, "delta": {}, "finish_reason": "stop"}
        await response.write(b"data: " + json.dumps({**base, "choices": [end]}).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("rag")
    model = bundled_model()
    gguf = ensure_gguf(model, root / "models")
    notes = root / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    collection = Collection(collection_dir(root, "home"), create=True)
    local = LocalEmbedder(gguf, name=model.name)
    chunker = Chunker(load_tokenizer(model.tokenizer), size=64, overlap=16)
    asyncio.run(ingest(collection, plan_ingest(collection, [notes]), chunker=chunker, embedder=local))
    reference = local.embed_now(["winter tyres"])[0]
    collection.close()
    engine = CitingEngine()
    with ExitStack() as stack:
        embed = stack.enter_context(serve_in_thread(build_embed_app(LocalEmbedder(gguf, name=model.name))))
        chat = stack.enter_context(serve_in_thread(engine.app()))
        config = GatewayConfig.model_validate(
            {
                "api_keys": [{"key": KEY}],
                "backends": [
                    {"name": "embed", "url": embed.url, "kind": "openai", "models": [model.name]},
                    {"name": "chat", "url": chat.url, "kind": "openai", "models": ["writer"]},
                ],
                "rag": {"model": "writer", "data_dir": str(root), "retrieval": {"top_k": 3}},
            }
        )
        gateway = stack.enter_context(serve_in_thread(create_app(config, StaticMonitor())))
        yield {
            "url": gateway.url,
            "engine": engine,
            "embed": embed.url,
            "reference": reference,
            "notes": notes,
        }


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


QUESTION = [{"role": "user", "content": "When do the winter tyres go on?"}]


def test_models_list_the_collection(stack: dict[str, Any]) -> None:
    ids = [m.id for m in client(stack["url"]).models.list().data]
    assert "rag/home" in ids and "writer" in ids


def test_answer_cites_the_text_that_holds_it(stack: dict[str, Any]) -> None:
    reply = client(stack["url"]).chat.completions.create(model="rag/home", messages=QUESTION)  # type: ignore[arg-type]
    text = reply.choices[0].message.content or ""
    assert reply.model == "rag/home"
    assert "November" in text and "[1]" in text
    assert re.search(r"Sources:\n\[1\] .*car\.md > Car > Tyres \[\d+:\d+\]", text)
    citations = (reply.model_extra or {})["citations"]
    first = citations[0]
    assert first["cited"] and first["heading"] == "Car > Tyres"
    original = (stack["notes"] / "car.md").read_text()
    assert "November" in original[first["start"] : first["end"]]  # the span points into the file
    sent = stack["engine"].requests[-1]
    assert sent["model"] == "writer" and "Winter tyres go on in November." in sent["messages"][0]["content"]


def test_streamed_answer_carries_sources_and_citations(stack: dict[str, Any]) -> None:
    chunks = list(
        client(stack["url"]).chat.completions.create(model="rag/home", messages=QUESTION, stream=True)  # type: ignore[arg-type]
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "November" in text and "Sources:" in text
    assert {c.model for c in chunks} == {"rag/home"}
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1
    citations = (final[0].model_extra or {})["citations"]
    assert any(c["cited"] and "November" in c["text"] for c in citations)


def test_rag_options_per_request_and_their_errors(stack: dict[str, Any]) -> None:
    reply = client(stack["url"]).chat.completions.create(
        model="rag/home",
        messages=QUESTION,
        extra_body={"rag": {"mode": "bm25", "top_k": 1}},  # type: ignore[arg-type]
    )
    assert len((reply.model_extra or {})["citations"]) == 1
    with pytest.raises(openai.BadRequestError, match="top_k"):
        client(stack["url"]).chat.completions.create(
            model="rag/home",
            messages=QUESTION,
            extra_body={"rag": {"top_k": 0}},  # type: ignore[arg-type]
        )
    with pytest.raises(openai.NotFoundError, match="rag/home"):
        client(stack["url"]).chat.completions.create(model="rag/nothing", messages=QUESTION)  # type: ignore[arg-type]


def test_a_wrong_key_gets_401_and_no_retrieval(stack: dict[str, Any]) -> None:
    before = len(stack["engine"].requests)
    with pytest.raises(openai.AuthenticationError):
        client(stack["url"], key="sk-wrong-key-000000").chat.completions.create(
            model="rag/home", messages=QUESTION
        )  # type: ignore[arg-type]
    assert len(stack["engine"].requests) == before
    with urllib.request.urlopen(f"{stack['embed']}/metrics", timeout=10) as reply:
        embedded = reply.read().decode()
    queries = int(re.search(r"wave_embed_requests_total (\d+)", embedded).group(1))  # type: ignore[union-attr]
    with pytest.raises(openai.AuthenticationError):
        client(stack["url"], key="sk-wrong-key-000000").chat.completions.create(
            model="rag/home", messages=QUESTION
        )  # type: ignore[arg-type]
    with urllib.request.urlopen(f"{stack['embed']}/metrics", timeout=10) as reply:
        assert f"wave_embed_requests_total {queries}" in reply.read().decode()


def test_query_embeddings_go_through_the_gateway_and_match_the_local_model(stack: dict[str, Any]) -> None:
    vector = (
        client(stack["url"])
        .embeddings.create(model="all-minilm-l6-v2", input="winter tyres")
        .data[0]
        .embedding
    )
    assert float(np.dot(vector, stack["reference"])) > 0.9999


def test_metrics_time_retrieval_and_generation_apart(stack: dict[str, Any]) -> None:
    client(stack["url"]).chat.completions.create(model="rag/home", messages=QUESTION, stream=True).close()  # type: ignore[arg-type]
    list(client(stack["url"]).chat.completions.create(model="rag/home", messages=QUESTION, stream=True))  # type: ignore[arg-type]
    request = urllib.request.Request(f"{stack['url']}/metrics", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        metrics = reply.read().decode()
    for stage in ("embed", "search"):
        assert f'wave_rag_retrieval_seconds_count{{collection="home",stage="{stage}"}}' in metrics
    assert 'wave_rag_generation_seconds_count{collection="home",stage="first_token"}' in metrics


def test_embed_server_refuses_bad_input(stack: dict[str, Any]) -> None:
    for body, words in (
        ({"input": []}, "non-empty"),
        ({"input": [1, 2]}, "strings"),
        ({"input": "x", "model": "other"}, "serves"),
    ):
        request = urllib.request.Request(
            f"{stack['embed']}/v1/embeddings",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code in (400, 404) and words in caught.value.read().decode()


def test_collections_dir_is_a_path(stack: dict[str, Any]) -> None:
    assert isinstance(stack["notes"], Path)


def post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"model": "rag/home", "messages": "hi"}', 400, "messages"),
        (b'{"model": "rag/home", "messages": [{"role": "system", "content": "x"}]}', 400, "no text"),
        (b'{"model": "rag/home", "messages": [{"role": "user", "content": "x"}], "rag": [1]}', 400, "rag"),
        (b'{"model": "rag/", "messages": [{"role": "user", "content": "x"}]}', 404, "rag/home"),
        (b'{"model": "rag/home", "messages": [{"role": "user", "content": ', 400, "JSON"),
    ],
)
def test_hostile_rag_requests_get_4xx_naming_the_problem(
    stack: dict[str, Any], body: bytes, status: int, words: str
) -> None:
    code, text = post(stack["url"], body)
    assert code == status and words in text, text
