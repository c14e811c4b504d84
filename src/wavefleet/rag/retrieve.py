"""Retrieval over one collection: BM25 (SQLite FTS5), dense (HNSW), or both fused.

    retriever = Retriever(collection, embedder)
    result = await retriever.search("how do I open a file", RetrievalSettings(top_k=5))
    result.hits[0].path, .page, .heading, .start, .end, .text, .score
    result.embed_ms, result.search_ms

The query is embedded by the collection's own model (through the same endpoint as at ingest),
cut to what the model reads at once when a `window` is given (BM25 searches the whole query).
Each method contributes its best `candidates`; fusion ranks their union.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wavefleet.errors import UsageError
from wavefleet.rag.chunking import EmbeddingWindow
from wavefleet.rag.config import Fusion, RetrievalSettings
from wavefleet.rag.embedder import Embedder
from wavefleet.rag.fusion import Hits, Mode, convex, rrf
from wavefleet.rag.store import Collection

__all__ = ["Fusion", "Hit", "RetrievalResult", "RetrievalSettings", "Retriever"]


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: int
    score: float
    path: str
    title: str | None
    page: int | None
    heading: str | None
    start: int
    end: int
    text: str

    def place(self) -> str:
        """`file.md > Heading` or `file.pdf p. 3`, with the span: what a citation shows."""
        where = self.path
        if self.page is not None:
            where += f" p. {self.page}"
        if self.heading:
            where += f" > {self.heading}"
        return f"{where} [{self.start}:{self.end}]"


@dataclass(frozen=True, slots=True)
class RetrievalResult:
    hits: list[Hit]
    embed_ms: float
    search_ms: float


class Retriever:
    """Searches one collection; safe to call from many tasks at once."""

    def __init__(
        self,
        collection: Collection,
        embedder: Embedder,
        *,
        window: EmbeddingWindow | None = None,
        threads: int = 2,
    ) -> None:
        self.collection = collection
        self.embedder = embedder
        self._window = window
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"rag-{collection.name}")

    async def search(
        self, query: str, settings: RetrievalSettings, *, embedder: Embedder | None = None
    ) -> RetrievalResult:
        """The best chunks for `query`; `embedder` replaces the retriever's own for this call
        (the gateway embeds with each caller's key)."""
        if not isinstance(query, str) or not query.strip():
            raise UsageError("the query is empty: ask something")
        started = time.perf_counter()
        vector = None
        if settings.mode is not Mode.BM25:
            text = self._window.fit(query) if self._window is not None else query
            vector = (await (embedder or self.embedder).embed([text]))[0]
        embedded = time.perf_counter()
        loop = asyncio.get_running_loop()
        hits = await loop.run_in_executor(self._pool, self._rank, query, vector, settings)
        done = time.perf_counter()
        return RetrievalResult(hits, (embedded - started) * 1000, (done - embedded) * 1000)

    def _rank(self, query: str, vector: object, settings: RetrievalSettings) -> list[Hit]:
        lexical: Hits = []
        semantic: Hits = []
        if settings.mode is not Mode.DENSE:
            lexical = self.collection.bm25(query, settings.candidates)
        if settings.mode is not Mode.BM25 and vector is not None:
            semantic = self.collection.dense(vector, settings.candidates)  # type: ignore[arg-type]
        if settings.mode is Mode.BM25:
            ranked = lexical
        elif settings.mode is Mode.DENSE:
            ranked = semantic
        elif settings.fusion is Fusion.RRF:
            ranked = rrf([lexical, semantic], settings.rrf_k)
        else:
            ranked = convex(lexical, semantic, settings.alpha)
        top = ranked[: settings.top_k]
        stored = self.collection.chunks([key for key, _ in top])
        return [
            Hit(key, score, c.path, c.title, c.page, c.heading, c.start, c.end, c.text)
            for key, score in top
            if (c := stored.get(key)) is not None
        ]

    def close(self) -> None:
        self._pool.shutdown(wait=False)
