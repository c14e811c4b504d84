"""Retrieval quality on the bundled labelled set (77 questions over Python's pydoc topics).

The floors are the measured values (docs/measurements/2026-12-03-rag-quality.md) less a small
margin for other CPUs; raise them when retrieval gets better, never lower them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from wavefleet.rag.chunking import Chunker, load_tokenizer
from wavefleet.rag.config import RetrievalSettings
from wavefleet.rag.embedder import LocalEmbedder
from wavefleet.rag.evaluate import contains_answer, evaluate_retrieval, load_labelled, write_corpus
from wavefleet.rag.ingest import ingest, plan_ingest
from wavefleet.rag.model import bundled_model, ensure_gguf
from wavefleet.rag.paths import collection_dir
from wavefleet.rag.retrieve import Retriever
from wavefleet.rag.store import Collection

FLOORS = {"bm25": 0.72, "dense": 0.85, "hybrid": 0.88}  # nDCG@10


def test_every_answer_phrase_is_in_its_first_relevant_topic() -> None:
    corpus = (
        resources.files("wavefleet.rag").joinpath("data", "pydoc_topics.jsonl").read_text(encoding="utf-8")
    )
    topics = {row["_id"]: row["text"] for row in map(json.loads, corpus.splitlines())}
    queries = load_labelled()
    assert len(queries) >= 60 and len(topics) == 79
    for item in queries:
        assert set(item.relevant) <= set(topics), item.id
        assert item.answer is not None and contains_answer(
            topics[next(iter(item.relevant))], item.answer
        ), item.id


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, float]]]:
    root = tmp_path_factory.mktemp("rag")
    model = bundled_model()
    embedder = LocalEmbedder(ensure_gguf(model, root / "models"), name=model.name, threads=2)
    collection = Collection(collection_dir(root, "pydoc"), create=True)
    write_corpus(root / "corpus")
    chunker = Chunker(load_tokenizer(model.tokenizer), size=512, overlap=150)
    labelled = load_labelled()

    async def run() -> dict[str, dict[str, float]]:
        await ingest(
            collection, plan_ingest(collection, [root / "corpus"]), chunker=chunker, embedder=embedder
        )
        retriever = Retriever(collection, embedder)
        results = {
            mode: await evaluate_retrieval(retriever, labelled, RetrievalSettings(mode=mode))  # type: ignore[arg-type]
            for mode in FLOORS
        }
        retriever.close()
        await embedder.aclose()
        return results

    yield asyncio.run(run())


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(FLOORS))
def test_ndcg_stays_above_its_floor(measured: dict[str, dict[str, Any]], mode: str) -> None:
    assert measured[mode]["ndcg@10"] >= FLOORS[mode], measured[mode]


@pytest.mark.slow
def test_hybrid_is_at_least_the_better_single_method(measured: dict[str, dict[str, Any]]) -> None:
    best = max(measured["bm25"]["ndcg@10"], measured["dense"]["ndcg@10"])
    assert measured["hybrid"]["ndcg@10"] >= best


@pytest.mark.slow
def test_retrieved_context_holds_the_answer(measured: dict[str, dict[str, Any]]) -> None:
    assert measured["hybrid"]["answer_in_context@5"] >= 0.95
    assert measured["hybrid"]["recall@10"] >= 0.97
