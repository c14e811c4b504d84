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


def test_settling_the_same_settings_again_leaves_the_saved_indexes_current(tmp_path: Path) -> None:
    """Each ingest run settles the collection's settings first: unchanged ones must not make the
    saved graph and postings look stale (a rebuild of all chunks at the start of every run)."""
    collection = Collection(tmp_path / "c", create=True)
    collection.settle(embed_model="m", chunk_tokens=64, overlap_tokens=8)
    collection.open_index()
    chunks = [
        Chunk(i, 0, len(t), t, None, None, 3) for i, t in enumerate(["descaling the kettle", "the boiler"])
    ]
    vectors = np.eye(2, 8, dtype=np.float32)
    removed, added = collection.put_document(
        path="/a", sha256="a", kind="text", title=None, chars=0, chunks=chunks, vectors=vectors
    )
    collection.update_index(removed, added, vectors)
    collection.save_index()
    collection.close()
    again = Collection(tmp_path / "c")
    again.settle(embed_model="m", chunk_tokens=64, overlap_tokens=8)
    rebuilt: list[int] = []
    again.open_index(on_rebuild=rebuilt.append)
    again.open_lexicon(on_rebuild=rebuilt.append)
    assert rebuilt == []
    assert [k for k, _ in again.bm25("kettle", 5)] == [k for k, _ in again.fts5_bm25("kettle", 5)]
    saved = (tmp_path / "c" / "bm25.bin").stat().st_ino
    again.save_index()  # nothing changed: the postings file is not written again
    assert (tmp_path / "c" / "bm25.bin").stat().st_ino == saved
