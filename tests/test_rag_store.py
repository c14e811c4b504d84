"""The collection store on its own: BM25 through FTS5, its word budget, hostile query text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wavefleet.rag.chunking import Chunk
from wavefleet.rag.store import Collection


def put(collection: Collection, name: str, texts: list[str]) -> None:
    chunks = [Chunk(i, 0, len(t), t, None, None, len(t.split())) for i, t in enumerate(texts)]
    vectors = np.eye(len(texts), 8, dtype=np.float32)
    collection.put_document(
        path=name, sha256=name, kind="text", title=None, chars=0, chunks=chunks, vectors=vectors
    )


def test_common_words_leave_the_query_past_the_budget(tmp_path: Path) -> None:
    collection = Collection(tmp_path / "c", create=True)
    put(collection, "/common", [f"python note number {i}" for i in range(300)])
    put(collection, "/rare", ["python descaling of the kettle"])
    every = collection.bm25("python kettle", 500, budget=10_000)
    assert len(every) == 301
    pruned = collection.bm25("python kettle", 500, budget=100)
    assert len(pruned) == 1  # "python" (301 chunks) is over the budget; "kettle" (1) stays
    only_common = collection.bm25("python", 500, budget=100)
    assert len(only_common) == 301  # the rarest word always stays


def test_query_text_is_never_fts_syntax(tmp_path: Path) -> None:
    collection = Collection(tmp_path / "c", create=True)
    put(collection, "/a", ['he said "NEAR(x y)" - text: AND OR NOT *'])
    for query in [
        '"',
        "NEAR(",
        "text:",
        "a -b",
        "*",
        "AND OR NOT",
        "'; DROP TABLE chunks; --",
        "",
        "the of and",
    ]:
        collection.bm25(query, 5)  # no sqlite3.OperationalError
    assert collection.bm25("near said", 5)
