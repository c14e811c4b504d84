"""BM25 from the postings in memory against FTS5's bm25() on real text: same chunks, same scores,
kept so through documents added, replaced and removed, and after a restart or a crash."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from wavefleet.rag.chunking import Chunk, Chunker, load_tokenizer
from wavefleet.rag.documents import read_document
from wavefleet.rag.evaluate import load_labelled, write_corpus
from wavefleet.rag.model import bundled_model
from wavefleet.rag.store import Collection

DOCS = Path(__file__).resolve().parent.parent / "docs"

# Words FTS5 reads as phrases (open_file: "open" then "file"), stems shared by two query words
# (open, opens), diacritics, digits, a word of no token, and words of no chunk.
EDGE_QUERIES = [
    "open_file read_text",
    "how does __init__ differ from __new__",
    "opens open opening",
    "café naïve résumé",
    "utf8 utf-8 3.11 2026",
    "_ __ ___",
    "zzyzx qwxv",
    "wave_rag_generation_seconds histogram",
    "heading weighted half of text",
]


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(load_tokenizer(bundled_model().tokenizer), size=256, overlap=32)


def put_file(collection: Collection, path: Path, chunker: Chunker, key: str | None = None) -> None:
    chunks = list(chunker.chunks(read_document(path)))
    collection.put_document(
        path=key or str(path),
        sha256=str(path),
        kind="text",
        title=None,
        chars=0,
        chunks=chunks,
        vectors=np.zeros((len(chunks), 8), dtype=np.float32),
    )


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, chunker: Chunker) -> Iterator[Collection]:
    """The pydoc corpus (plain text) and this project's manuals (Markdown: headings, code)."""
    root = tmp_path_factory.mktemp("lexicon")
    collection = Collection(root / "collections" / "library", create=True)
    for path in [*write_corpus(root / "corpus"), *sorted(DOCS.glob("*.md"))]:
        put_file(collection, path, chunker)
    yield collection
    collection.close()


def queries() -> list[str]:
    return [item.query for item in load_labelled()] + EDGE_QUERIES


def assert_same_ranking(got: list[tuple[int, float]], want: list[tuple[int, float]], limit: int) -> None:
    """The same scores in the same order, and the same chunks but for order among equal scores
    (and which of several equal scores at the cut a LIMIT keeps)."""
    assert len(got) == len(want)
    for (_, mine), (_, theirs) in zip(got, want, strict=True):
        assert math.isclose(mine, theirs, rel_tol=1e-9, abs_tol=1e-12), (got, want)
    cut = want[-1][1] if len(want) == limit else -math.inf
    above = [k for k, s in want if not math.isclose(s, cut, rel_tol=1e-9)]
    assert {k for k, s in got if not math.isclose(s, cut, rel_tol=1e-9)} == set(above)


def assert_agrees(collection: Collection, texts: list[str]) -> None:
    for text in texts:
        for limit, budget in ((50, 2500), (10**7, 10**9)):  # the served top 50, and every chunk
            got = collection.bm25(text, limit, budget)
            want = collection.fts5_bm25(text, limit, budget)
            assert_same_ranking(got, want, limit)


def test_the_lexicon_scores_every_query_as_fts5_does(library: Collection) -> None:
    assert library.info().chunks > 300
    assert any(c.heading for c in library.chunks(list(range(1, 2000))).values())
    assert_agrees(library, queries())
    # the scores are FTS5's to the last bits, not merely in the same order
    text = load_labelled()[0].query
    got = dict(library.bm25(text, 10**7, 10**9))
    want = dict(library.fts5_bm25(text, 10**7, 10**9))
    assert got.keys() == want.keys() and max(abs(got[k] - want[k]) for k in got) < 1e-12


def test_the_lexicon_follows_documents_added_replaced_and_removed(tmp_path: Path, chunker: Chunker) -> None:
    files = write_corpus(tmp_path / "corpus")
    collection = Collection(tmp_path / "collections" / "c", create=True)
    for path in files[:40]:
        put_file(collection, path, chunker)
    lexicon = collection.open_lexicon()
    for path in files[40:]:
        put_file(collection, path, chunker)  # added to the open lexicon
    put_file(collection, files[60], chunker, key=str(files[3]))  # a document replaced
    collection.remove_document(str(files[5]))
    collection.remove_document(str(files[70]))
    assert collection.open_lexicon() is lexicon  # kept up to date, not rebuilt
    assert len(lexicon) == collection.info().chunks
    assert_agrees(collection, queries()[::4])

    collection.save_lexicon()  # the saved file, memory-mapped, takes further changes as well
    collection.remove_document(str(files[41]))
    put_file(collection, files[41], chunker, key="/again")
    assert_agrees(collection, queries()[1::4])
    collection.save_lexicon()
    reopened = Collection(tmp_path / "collections" / "c")
    rebuilt: list[int] = []
    reopened.open_lexicon(on_rebuild=rebuilt.append)
    assert rebuilt == []  # the saved postings were current
    assert_agrees(reopened, queries()[::4])


def put_chunk(collection: Collection, key: str, text: str, heading: str | None = None) -> None:
    chunk = Chunk(0, 0, len(text), text, None, heading, len(text.split()))
    collection.put_document(
        path=key,
        sha256=key,
        kind="text",
        title=None,
        chars=0,
        chunks=[chunk],
        vectors=np.eye(1, 8, dtype=np.float32),
    )


def test_stale_missing_or_damaged_postings_are_rebuilt_from_the_chunks(tmp_path: Path) -> None:
    where = tmp_path / "collections" / "c"
    collection = Collection(where, create=True)
    put_chunk(collection, "/kettle", "descaling the kettle with vinegar", heading="Kettle")
    put_chunk(collection, "/boiler", "the boiler is serviced in October")
    collection.open_lexicon()
    collection.save_lexicon()
    collection.close()

    # a writer that never opened the postings (another process, or one killed before saving)
    writer = Collection(where)
    put_chunk(writer, "/descaler", "descaler tablets for the kettle and the coffee machine")
    writer.remove_document("/boiler")
    writer.close()
    for damage in ("stale", "cut short", "missing", "garbage"):
        if damage == "cut short":
            data = (where / "bm25.bin").read_bytes()
            (where / "bm25.bin").write_bytes(data[: len(data) // 2])
        elif damage == "missing":
            (where / "bm25.bin").unlink()
        elif damage == "garbage":
            (where / "bm25.bin").write_bytes(b"not postings at all")
        reopened = Collection(where)
        rebuilt: list[int] = []
        lexicon = reopened.open_lexicon(on_rebuild=rebuilt.append)
        assert rebuilt == [2], damage
        assert len(lexicon) == 2
        assert [k for k, _ in reopened.bm25("descaling kettle", 5)] == [
            k for k, _ in reopened.fts5_bm25("descaling kettle", 5)
        ]
        assert reopened.bm25("boiler", 5) == []
        if damage == "stale":
            reopened.close()
            # open_lexicon saved what it rebuilt: the next open loads it
            again = Collection(where)
            again.open_lexicon(on_rebuild=rebuilt.append)
            assert rebuilt == [2]
            again.close()


def test_searches_run_while_documents_land(tmp_path: Path, chunker: Chunker) -> None:
    files = write_corpus(tmp_path / "corpus")
    collection = Collection(tmp_path / "collections" / "c", create=True)
    put_file(collection, files[0], chunker)
    collection.open_lexicon()
    texts = queries()
    failures: list[BaseException] = []
    done = threading.Event()

    def search() -> None:
        n = 0
        while not done.is_set() or n < len(texts):
            try:
                for _, score in collection.bm25(texts[n % len(texts)], 50):
                    assert score > 0
            except BaseException as exc:  # reported below, from the test's thread
                failures.append(exc)
                return
            n += 1

    searchers = [threading.Thread(target=search) for _ in range(2)]
    for thread in searchers:
        thread.start()
    for i, path in enumerate(files[1:40]):
        put_file(collection, path, chunker)
        if i % 5 == 0:
            collection.remove_document(str(files[i]))
        if i == 20:
            collection.save_lexicon()
    done.set()
    for thread in searchers:
        thread.join()
    assert failures == []
    assert_agrees(collection, texts[::6])
