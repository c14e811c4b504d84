"""A collection on disk: SQLite for documents, chunks, their vectors and BM25; an HNSW index beside it.

    <data dir>/collections/<name>/chunks.db       documents, chunks (text, span, page, heading,
                                                  vector), chunks_fts (FTS5, BM25 ranking)
    <data dir>/collections/<name>/vectors.hnsw    the HNSW graph over the chunks' vectors
    <data dir>/collections/<name>/vectors.json    which state of chunks.db the graph holds
    <data dir>/collections/<name>/bm25.bin        BM25 postings by stem (lexicon.py), with the
                                                  state of chunks.db they hold

SQLite is the record: each document is written in one transaction with its chunks and vectors,
so an interrupted ingest leaves whole documents only, and the next run goes on from there. The
HNSW graph and the BM25 postings are derived: each records the `generation` of chunks.db it was
saved at, and one that is missing or behind is rebuilt from the stored chunks when the collection
opens. Queries rank by the in-memory postings; FTS5 ranks the same way (`fts5_bm25`) and scores
the rare query words that are phrases to it.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wavefleet.errors import UsageError
from wavefleet.rag.chunking import Chunk
from wavefleet.rag.embedder import Vectors
from wavefleet.rag.index import VectorIndex
from wavefleet.rag.lexicon import (
    HEADING_WEIGHT,
    TEXT_WEIGHT,
    TOKENIZE,
    Lexicon,
    Postings,
    Tokenizer,
    chunk_batches,
    top,
)

__all__ = ["Collection", "CollectionInfo", "DocumentRecord", "StoredChunk", "collection_names", "fts_query"]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT,
    chars INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    ingested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    page INTEGER,
    heading TEXT,
    tokens INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    heading, text, content='chunks', content_rowid='id', tokenize='{TOKENIZE}'
);
CREATE TABLE IF NOT EXISTS terms (term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, heading, text) VALUES (new.id, coalesce(new.heading, ''), new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, heading, text)
        VALUES ('delete', old.id, coalesce(old.heading, ''), old.text);
END;
"""


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    id: int
    path: str
    sha256: str
    kind: str
    title: str | None
    chunks: int


@dataclass(frozen=True, slots=True)
class StoredChunk:
    id: int
    path: str
    title: str | None
    ordinal: int
    start: int
    end: int
    page: int | None
    heading: str | None
    text: str


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    documents: int
    chunks: int
    embed_model: str
    dimension: int
    chunk_tokens: int
    overlap_tokens: int
    bytes_on_disk: int


def collection_names(root: Path) -> list[str]:
    base = root / "collections"
    return sorted(p.name for p in base.iterdir() if (p / "chunks.db").is_file()) if base.is_dir() else []


# Lucene's English stop words (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET), which the BM25 baselines
# of BEIR (Anserini) drop too: they match nearly every chunk, so an OR query holding them makes
# FTS5 score the whole collection for almost no change in the ranking.
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)


# FTS5 scores every chunk that holds any query word, so a query's cost grows with the chunks its
# words occur in. Past this many, the commonest words are left out (rarest kept first; BM25
# gives the common ones little weight anyway, and at least the rarest word always stays): the
# same bet as Lucene's MaxScore, without its guarantee.
POSTINGS_BUDGET = 2500


def query_words(text: str) -> list[str]:
    """The distinct words of `text`, lower-cased, stop words aside, in order."""
    return list(dict.fromkeys(w for w in re.findall(r"\w+", text.lower()) if w not in STOP_WORDS))


def fts_query(words: Sequence[str]) -> str | None:
    """An FTS5 query that ORs the words, each quoted, so no input is FTS5 syntax (quotes, NEAR,
    column filters, a lone `-`) and BM25 ranks by how many and how rare."""
    return " OR ".join(f'"{w}"' for w in words) if words else None


class Collection:
    """One collection: open it for ingest (writes) or for retrieval (reads, from any thread)."""

    def __init__(self, directory: Path, *, create: bool = False) -> None:
        self.directory = directory
        self.name = directory.name
        self.db_path = directory / "chunks.db"
        if not self.db_path.is_file() and not create:
            known = collection_names(directory.parent.parent)
            listing = f"; collections: {', '.join(known)}" if known else "; none exist yet"
            raise UsageError(
                f"no collection {self.name!r} in {directory.parent}{listing} "
                f"(create one with `wave rag ingest PATH --collection {self.name}`)"
            )
        directory.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        # re-entrant: a document's write and its change to the open postings hold it together
        self._write_lock = threading.RLock()
        with self._connect() as db:
            db.executescript(_SCHEMA)
        self.index: VectorIndex | None = None
        self.lexicon: Lexicon | None = None
        self._tokenizer: Tokenizer | None = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        connection: sqlite3.Connection | None = getattr(self._local, "db", None)
        if connection is None:
            connection = self._connect()
            self._local.db = connection
        return connection

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute(
                "INSERT INTO meta VALUES ('generation', '1') "
                "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
            )
            db.execute("COMMIT")

    # settings -------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def settle(self, *, embed_model: str, chunk_tokens: int, overlap_tokens: int) -> None:
        """Record the collection's embedding model and chunking on first ingest; refuse another
        model later (its vectors would not be comparable), and say how to start over."""
        known = self.meta()
        if "embed_model" in known and known["embed_model"] != embed_model:
            raise UsageError(
                f"collection {self.name!r} was embedded with {known['embed_model']!r}, not {embed_model!r}: "
                f"vectors of two models do not compare; use --embed-model {known['embed_model']} or "
                f"`wave rag drop {self.name}` and ingest again"
            )
        wanted = {
            "embed_model": embed_model,
            "chunk_tokens": str(chunk_tokens),
            "overlap_tokens": str(overlap_tokens),
        }
        if all(known.get(key) == value for key, value in wanted.items()):
            return  # a write would move the generation on and make the saved indexes look stale
        with self.transaction() as db:
            for key, value in wanted.items():
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def generation(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    # documents ------------------------------------------------------------------------------

    def documents(self) -> dict[str, DocumentRecord]:
        rows = self.db.execute("SELECT id, path, sha256, kind, title, chunks FROM documents").fetchall()
        return {row[1]: DocumentRecord(*row) for row in rows}

    def put_document(
        self,
        *,
        path: str,
        sha256: str,
        kind: str,
        title: str | None,
        chars: int,
        chunks: Sequence[Chunk],
        vectors: Vectors,
    ) -> tuple[list[int], list[int]]:
        """Replace the document at `path` with these chunks: (removed chunk ids, added chunk ids).
        The open BM25 postings follow; the HNSW graph is the caller's (update_index)."""
        with self._write_lock:
            postings = self._postings(chunks)
            with self.transaction() as db:
                removed = self._delete(db, path)
                cursor = db.execute(
                    "INSERT INTO documents (path, sha256, kind, title, chars, chunks, ingested_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (path, sha256, kind, title, chars, len(chunks), time.time()),
                )
                doc_id = cursor.lastrowid
                self._count_terms(db, (f"{c.heading or ''} {c.text}" for c in chunks), 1)
                added = []
                for chunk, vector in zip(chunks, vectors, strict=True):
                    row = db.execute(
                        'INSERT INTO chunks (doc_id, ordinal, start, "end", page, heading, tokens, text, vector) '
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            doc_id,
                            chunk.ordinal,
                            chunk.start,
                            chunk.end,
                            chunk.page,
                            chunk.heading,
                            chunk.tokens,
                            chunk.text,
                            np.asarray(vector, dtype=np.float32).tobytes(),
                        ),
                    )
                    added.append(int(row.lastrowid or 0))
            if self.lexicon is not None and postings is not None:
                self.lexicon.remove(removed)
                self.lexicon.add(list(zip(added, postings, strict=True)))
        return removed, added

    def remove_document(self, path: str) -> list[int]:
        with self._write_lock:
            with self.transaction() as db:
                removed = self._delete(db, path)
            if self.lexicon is not None:
                self.lexicon.remove(removed)
        return removed

    def _delete(self, db: sqlite3.Connection, path: str) -> list[int]:
        texts = db.execute(
            "SELECT coalesce(c.heading, '') || ' ' || c.text FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "WHERE d.path = ?",
            (path,),
        )
        self._count_terms(db, (r[0] for r in texts), -1)
        ids = [
            r[0]
            for r in db.execute(
                "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE d.path = ?", (path,)
            )
        ]
        db.execute("DELETE FROM chunks WHERE doc_id IN (SELECT id FROM documents WHERE path = ?)", (path,))
        db.execute("DELETE FROM documents WHERE path = ?", (path,))
        return ids

    # search ---------------------------------------------------------------------------------

    def _frequencies(self, words: Sequence[str]) -> dict[str, int]:
        """Chunks holding each word (as written, not stemmed), from the `terms` table that
        ingest keeps; FTS5's own vocabulary counts them by walking each word's whole list."""
        marks = ",".join("?" * len(words))
        rows = self.db.execute(f"SELECT term, df FROM terms WHERE term IN ({marks})", list(words)).fetchall()
        found = dict.fromkeys(words, 0)
        found.update({term: int(df) for term, df in rows})
        return found

    @staticmethod
    def _count_terms(db: sqlite3.Connection, texts: Iterable[str], sign: int) -> None:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(query_words(text))
        db.executemany(
            "INSERT INTO terms VALUES (?, ?) ON CONFLICT(term) DO UPDATE SET df = df + excluded.df",
            [(term, sign * n) for term, n in counts.items()],
        )

    def ensure_terms(self) -> None:
        """Fill the `terms` table from the chunks when it is empty and they are not (a
        collection written by other means, such as the benchmark's)."""
        if self.db.execute("SELECT 1 FROM terms LIMIT 1").fetchone() is not None:
            return
        if self.db.execute("SELECT 1 FROM chunks LIMIT 1").fetchone() is None:
            return
        with self._write_lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute("SELECT coalesce(heading, '') || ' ' || text FROM chunks")
                self._count_terms(db, (r[0] for r in rows), 1)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _budgeted(self, text: str, budget: int) -> list[str]:
        """The query's words that BM25 scores: all, or past the postings budget the rarest ones."""
        words = query_words(text)
        if len(words) <= 1:
            return words
        frequency = self._frequencies(words)
        kept: list[str] = []
        postings = 0
        for word in sorted(words, key=lambda w: frequency[w]):
            if kept and postings + frequency[word] > budget:
                break
            kept.append(word)
            postings += frequency[word]
        return kept

    def fts5_bm25(self, text: str, limit: int, budget: int = POSTINGS_BUDGET) -> list[tuple[int, float]]:
        """(chunk id, BM25 score, higher is better) for the best `limit` chunks by FTS5's bm25()
        itself: the ranking `bm25` reproduces from its postings in memory."""
        query = fts_query(self._budgeted(text, budget))
        if query is None:
            return []
        rows = self.db.execute(
            f"SELECT rowid, bm25(chunks_fts, {HEADING_WEIGHT}, {TEXT_WEIGHT}) FROM chunks_fts "
            f"WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts, {HEADING_WEIGHT}, {TEXT_WEIGHT}) LIMIT ?",
            (query, limit),
        ).fetchall()
        return [(int(rowid), -float(score)) for rowid, score in rows]

    def bm25(self, text: str, limit: int, budget: int = POSTINGS_BUDGET) -> list[tuple[int, float]]:
        """(chunk id, BM25 score, higher is better) for the best `limit` chunks, from the postings
        in memory (lexicon.py): FTS5's bm25() ranking, term by term. A query word that FTS5 reads
        as a phrase of several stems (`open_file`: "open" then "file") is scored by FTS5 alone,
        its part added to the others' as bm25() adds a query's phrases."""
        words = self._budgeted(text, budget)
        if not words:
            return []
        lexicon = self.open_lexicon()
        tokenizer = self.tokenizer
        tokenizer.learn(words)  # new words all in one trip through SQLite
        parts: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = []
        for word in words:
            stems = tokenizer.tokens(word)
            if len(stems) == 1:
                parts.append(lexicon.term(stems[0]))
            elif stems:
                parts.append(self._phrase(word))
        return top(parts, limit)

    def _phrase(self, word: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        rows = self.db.execute(
            f"SELECT rowid, bm25(chunks_fts, {HEADING_WEIGHT}, {TEXT_WEIGHT}) FROM chunks_fts WHERE chunks_fts MATCH ?",
            (fts_query([word]),),
        ).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return ids, -np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))

    def dense(self, vector: Vectors, limit: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) for the nearest `limit` chunks in the HNSW graph."""
        index = self.open_index()
        return index.search(vector, limit)

    def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            'SELECT c.id, d.path, d.title, c.ordinal, c.start, c."end", c.page, c.heading, c.text '
            f"FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
            list(ids),
        ).fetchall()
        return {row[0]: StoredChunk(*row) for row in rows}

    # the HNSW graph -------------------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        return self.directory / "vectors.hnsw"

    def _index_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.directory / "vectors.json").read_text()))
        except (OSError, ValueError):
            return {}

    def open_index(self, on_rebuild: Callable[[int], None] | None = None) -> VectorIndex:
        """The HNSW graph, loaded, or rebuilt from the stored vectors when it is missing or
        does not hold the current generation of chunks.db; the BM25 postings are opened too
        (open_lexicon), so that both follow the documents written from here on."""
        if self.index is not None:
            return self.index
        self.ensure_terms()
        self.open_lexicon()
        state = self._index_state()
        generation = self.generation()
        current = state.get("generation") == generation and state.get("engine") == VectorIndex.ENGINE
        if current and self.index_path.is_file():
            try:
                self.index = VectorIndex.load(
                    self.index_path, int(state["dimension"]), int(state.get("deleted", 0))
                )
                return self.index
            except (RuntimeError, ValueError, KeyError):
                pass  # unreadable: rebuilt below from the stored vectors
        self.index = self._rebuild(on_rebuild)
        self.save_index()
        return self.index

    def _rebuild(self, on_rebuild: Callable[[int], None] | None) -> VectorIndex:
        total = int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])
        if on_rebuild is not None:
            on_rebuild(total)
        first = self.db.execute("SELECT vector FROM chunks LIMIT 1").fetchone()
        dimension = len(first[0]) // 4 if first else int(self.meta().get("dimension", "0") or 0)
        index = VectorIndex(dimension, capacity=max(total, 1024))
        cursor = self.db.execute("SELECT id, vector FROM chunks ORDER BY id")
        while rows := cursor.fetchmany(8192):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            index.add(ids, vectors)
        return index

    def update_index(self, removed: Sequence[int], added: Sequence[int], vectors: Vectors) -> None:
        """Apply one document's change to the open graph (open_index() first)."""
        index = self.open_index()
        if removed:
            index.remove(np.asarray(removed, dtype=np.int64))
        if not added:
            return
        if len(index) == 0 and index.dimension != vectors.shape[1]:
            index = self.index = VectorIndex(vectors.shape[1])  # the first vectors set the dimension
        if vectors.shape[1] != index.dimension:
            raise UsageError(
                f"the embedding model gave {vectors.shape[1]}-dimensional vectors; collection "
                f"{self.name!r} holds {index.dimension}-dimensional ones: use the model it was built with"
            )
        index.add(np.asarray(added, dtype=np.int64), vectors)

    def save_index(self) -> None:
        """Save the HNSW graph and the BM25 postings, each with the generation it holds."""
        self.save_lexicon()
        if self.index is None:
            return
        generation = self.generation()
        self.index.save(self.index_path)
        state = {
            "engine": VectorIndex.ENGINE,
            "generation": generation,
            "dimension": self.index.dimension,
            "count": len(self.index),
            "deleted": self.index.deleted,
        }
        partial = self.directory / "vectors.json.partial"
        partial.write_text(json.dumps(state))
        partial.replace(self.directory / "vectors.json")

    # the BM25 postings ------------------------------------------------------------------------

    @property
    def lexicon_path(self) -> Path:
        return self.directory / "bm25.bin"

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer()
        return self._tokenizer

    def open_lexicon(self, on_rebuild: Callable[[int], None] | None = None) -> Lexicon:
        """The BM25 postings, loaded, or rebuilt from the stored chunks when the saved ones are
        missing, unreadable or do not hold the current generation of chunks.db."""
        if self.lexicon is not None:
            return self.lexicon
        with self._write_lock:  # no document lands between reading the chunks and following them
            if self.lexicon is not None:
                return self.lexicon
            if Lexicon.saved_generation(self.lexicon_path) == self.generation():
                with contextlib.suppress(OSError, ValueError):
                    self.lexicon = Lexicon.load(self.lexicon_path)
                    return self.lexicon
            self.lexicon, generation = self._rebuild_lexicon(on_rebuild)
            self.save_lexicon(generation)
            return self.lexicon

    def _rebuild_lexicon(self, on_rebuild: Callable[[int], None] | None) -> tuple[Lexicon, int]:
        """The postings of the stored chunks, and the generation they are of: both read in one
        transaction, so a write by another process cannot fall between them."""
        # its own connection: a long read on this thread's would hold a snapshot other calls share
        db = self._connect()
        try:
            db.execute("BEGIN")
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            generation = int(row[0]) if row else 0
            if on_rebuild is not None:
                on_rebuild(int(db.execute("SELECT count(*) FROM chunks").fetchone()[0]))
            rows = db.execute("SELECT id, coalesce(heading, ''), text FROM chunks ORDER BY id")
            lexicon = Lexicon.build(chunk_batches(iter(rows)), self.tokenizer)
            db.execute("COMMIT")
            return lexicon, generation
        finally:
            db.close()

    def _postings(self, chunks: Sequence[Chunk]) -> list[Postings] | None:
        """The chunks' postings for the open lexicon (None when none is open: it is rebuilt
        from chunks.db when opened, the generation having moved on)."""
        if self.lexicon is None:
            return None
        self.tokenizer.learn(" ".join(f"{c.heading or ''} {c.text}" for c in chunks).split())
        return [self.tokenizer.postings(c.heading or "", c.text) for c in chunks]

    def save_lexicon(self, generation: int | None = None) -> None:
        """Save the open postings as of `generation` (the current one by default), then map the
        saved file in their place: their pages are then read as queries need them, not held in
        process memory."""
        with self._write_lock:  # no document lands between the save and the swap
            if self.lexicon is None:
                return
            generation = self.generation() if generation is None else generation
            if not self.lexicon.changed and Lexicon.saved_generation(self.lexicon_path) == generation:
                return  # the file holds these postings already
            self.lexicon.save(self.lexicon_path, generation)
            self.lexicon = Lexicon.load(self.lexicon_path)

    # summary --------------------------------------------------------------------------------

    def info(self) -> CollectionInfo:
        meta = self.meta()
        documents = int(self.db.execute("SELECT count(*) FROM documents").fetchone()[0])
        chunks = int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])
        first = self.db.execute("SELECT vector FROM chunks LIMIT 1").fetchone()
        size = sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())
        return CollectionInfo(
            name=self.name,
            documents=documents,
            chunks=chunks,
            embed_model=meta.get("embed_model", "-"),
            dimension=len(first[0]) // 4 if first else 0,
            chunk_tokens=int(meta.get("chunk_tokens", "0")),
            overlap_tokens=int(meta.get("overlap_tokens", "0")),
            bytes_on_disk=size,
        )

    def close(self) -> None:
        connection = getattr(self._local, "db", None)
        if connection is not None:
            connection.close()
            self._local.db = None
