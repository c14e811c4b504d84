"""The bundled embedding model: converted to GGUF without torch, and llama.cpp computes with it
what the original network computes (checked against a numpy forward pass of the safetensors)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wavefleet.rag.chunking import load_tokenizer
from wavefleet.rag.embedder import LocalEmbedder
from wavefleet.rag.model import BundledModel, bundled_model, ensure_gguf, read_safetensors

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "Café owners in Zürich don't open before 7:30, do they?",
]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEmbedder]:
    model = bundled_model()
    local = LocalEmbedder(ensure_gguf(model, tmp_path_factory.mktemp("models")), name=model.name)
    local.load()
    yield local
    asyncio.run(local.aclose())


def _layer_norm(
    x: np.ndarray[Any, Any], weight: np.ndarray[Any, Any], bias: np.ndarray[Any, Any], eps: float
) -> Any:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def numpy_embedding(model: BundledModel, ids: list[int]) -> np.ndarray[Any, Any]:
    """BERT as the paper defines it (post-norm, erf GELU), mean-pooled and normalised."""
    w = {name: np.asarray(array, dtype=np.float64) for name, array in read_safetensors(model.weights)}
    cfg = model.config()
    heads, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][: len(ids)]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    erf = np.vectorize(math.erf)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."

        def dense(h: Any, name: str, p: str = p) -> Any:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        def split(h: Any) -> Any:
            return h.reshape(len(ids), heads, -1).transpose(1, 0, 2)

        q, k, v = (split(dense(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        attended = dense(context.transpose(1, 0, 2).reshape(len(ids), -1), "attention.output.dense")
        x = _layer_norm(
            x + attended,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        hidden = dense(x, "intermediate.dense")
        hidden = 0.5 * hidden * (1 + erf(hidden / math.sqrt(2)))
        x = _layer_norm(
            x + dense(hidden, "output.dense"),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
            eps,
        )
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def test_llama_cpp_tokenizes_like_the_models_own_tokenizer(embedder: LocalEmbedder) -> None:
    tokenizer = load_tokenizer(bundled_model().tokenizer)
    for text in SENTENCES:
        expected = tokenizer.encode(text).ids
        assert embedder._llama.tokenize(text.encode(), add_bos=True) == expected


def test_gguf_embeddings_match_a_numpy_forward_pass(embedder: LocalEmbedder) -> None:
    model = bundled_model()
    tokenizer = load_tokenizer(model.tokenizer)
    ours = embedder.embed_now(SENTENCES)
    for text, vector in zip(SENTENCES, ours, strict=True):
        reference = numpy_embedding(model, tokenizer.encode(text).ids)
        assert float(vector @ reference) > 0.9999, text


def test_similar_sentences_are_near(embedder: LocalEmbedder) -> None:
    vectors = embedder.embed_now(SENTENCES[:3])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.6 > 0.2 > vectors[0] @ vectors[2]


def test_conversion_is_reused_and_atomic(tmp_path: Path) -> None:
    model = bundled_model()
    first = ensure_gguf(model, tmp_path)
    stamp = first.stat().st_mtime_ns
    assert ensure_gguf(model, tmp_path) == first
    assert first.stat().st_mtime_ns == stamp
    assert first.read_bytes()[:4] == b"GGUF"
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no partial file left


QUESTIONS = [
    "When does the finally clause of a try statement run?",
    "How do I open a file for appending?",
    "What does the nonlocal statement do?",
    "Which methods make an object usable in a with statement?",
]


def test_a_batch_embeds_each_text_as_it_would_alone(embedder: LocalEmbedder) -> None:
    texts = [*SENTENCES, *QUESTIONS] * 4  # 32 texts of different lengths in one pass
    alone = np.vstack([embedder.embed_now([t]) for t in texts[:8]])
    together = embedder.embed_now(texts)
    assert np.allclose(together[:8], alone, atol=1e-4)
    assert np.allclose(together[8:16], alone, atol=1e-4)


def test_a_batch_costs_less_cpu_than_its_texts_one_by_one(embedder: LocalEmbedder) -> None:
    """What several clients' questions gathered into one pass save: attention stays within each
    text (a batch's texts do not attend to each other), so the pass grows linearly with the batch.
    Best of three, in CPU time, so other work on the machine counts less."""
    texts = [*QUESTIONS] * 8

    def cpu(run: Any) -> float:
        best = math.inf
        for _ in range(3):
            started = time.process_time()
            run()
            best = min(best, time.process_time() - started)
        return best

    one_by_one = cpu(lambda: [embedder.embed_now([t]) for t in texts])
    batched = cpu(lambda: embedder.embed_now(texts))
    assert batched < one_by_one, f"batch {batched * 1000:.1f} ms, one by one {one_by_one * 1000:.1f} ms"
