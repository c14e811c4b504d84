"""BM25 over postings held in memory, scoring as SQLite FTS5's bm25() does, without its per-query cost.

    tokenizer = Tokenizer()
    lexicon = Lexicon.build(rows, tokenizer)          # rows: (chunk id, heading, text), batched
    lexicon.add([(chunk_id, tokenizer.postings(heading, text))]); lexicon.remove([chunk_id])
    ids, scores = lexicon.term("python")              # one stem's BM25 contribution per chunk
    lexicon.save(path, generation); Lexicon.load(path)

FTS5 (chunks_fts in chunks.db) stays the record; the lexicon is derived from the stored chunks
like the HNSW graph, saved beside it with the generation of chunks.db it holds, and rebuilt when
that is missing or behind. It reproduces FTS5's bm25() (fts5_aux.c) term by term:

    score = sum over query phrases of idf * f * (k1 + 1) / (f + k1 * (1 - b + b * D / avgdl))
    idf   = ln((N - n + 0.5) / (n + 0.5)), or 1e-6 where that is 0 or less

with k1 1.2, b 0.75; f the phrase's hits in the chunk weighted by column (heading 0.5, text 1);
D the chunk's tokens in both columns; avgdl all tokens over N, the chunks; n the chunks that hold
the phrase. Tokens come from FTS5's own tokenizer (`porter unicode61 remove_diacritics 2`), run
by SQLite on an in-memory table, so a stem here is a stem there.

Postings are stored by term (compressed sparse rows: chunk ids and doubled weighted hits, 6
bytes a posting) in one file that is memory-mapped, so only the lists queries read are paged in;
chunks added since the file was written sit in a small in-memory delta, removed ones are masked,
and `save` merges both into a new file.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "HEADING_WEIGHT",
    "TEXT_WEIGHT",
    "TOKENIZE",
    "Lexicon",
    "Postings",
    "Tokenizer",
    "chunk_batches",
    "top",
]

TOKENIZE = "porter unicode61 remove_diacritics 2"  # chunks_fts's tokenizer (store.py)
HEADING_WEIGHT = 0.5  # bm25(chunks_fts, 0.5, 1.0): a heading's hit counts half a text hit
TEXT_WEIGHT = 1.0
K1 = 1.2  # FTS5's bm25() constants (fts5_aux.c), not configurable there either
B = 0.75
IDF_FLOOR = 1e-6  # FTS5's floor for terms in more than half the chunks

_MAGIC = b"WFBM25\x00\x01"
_FORMAT = {"tokenize": TOKENIZE, "weights": [HEADING_WEIGHT, TEXT_WEIGHT], "version": 1}

Postings = tuple[dict[str, int], int]  # a chunk's stems with doubled weighted hits, and its tokens

_EMPTY_IDS: np.ndarray[Any, Any] = np.zeros(0, dtype=np.int64)
_EMPTY_SCORES: np.ndarray[Any, Any] = np.zeros(0, dtype=np.float64)


class Tokenizer:
    """FTS5's tokenizer, run by SQLite on an in-memory FTS5 table, with a cache by piece.

    Text is split at white space first (unicode61 never keeps white space in a token, so the
    pieces' tokens are the text's tokens) and each distinct piece is tokenized once: a text's
    tokens cost a dictionary look-up per piece, not a trip through SQLite."""

    def __init__(self, *, cache: int = 200_000) -> None:
        self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._db.execute(f"CREATE VIRTUAL TABLE pieces USING fts5(piece, tokenize='{TOKENIZE}')")
        self._db.execute("CREATE VIRTUAL TABLE tokens USING fts5vocab(pieces, instance)")
        self._cache: dict[str, tuple[str, ...]] = {}
        self._limit = cache
        self._lock = threading.Lock()

    def learn(self, pieces: Iterable[str]) -> None:
        """Tokenize the pieces not yet cached, all in one pass through SQLite."""
        unknown = [p for p in set(pieces) if p not in self._cache]
        if not unknown:
            return
        with self._lock:
            if len(self._cache) + len(unknown) > self._limit:
                self._cache = {}
            found: dict[int, list[str]] = {}
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT INTO pieces (rowid, piece) VALUES (?, ?)", enumerate(unknown))
                for row, term in self._db.execute("SELECT doc, term FROM tokens ORDER BY doc, offset"):
                    found.setdefault(row, []).append(term)
                self._db.execute("DELETE FROM pieces")
            finally:
                self._db.execute("COMMIT")
            for row, piece in enumerate(unknown):
                self._cache[piece] = tuple(found.get(row, ()))

    def tokens(self, text: str) -> list[str]:
        """The stems FTS5 indexes for `text`, in order."""
        pieces = text.split()
        self.learn(pieces)
        return [stem for piece in pieces for stem in self._stems(piece)]

    def _stems(self, piece: str) -> tuple[str, ...]:
        stems = self._cache.get(piece)
        if stems is None:  # not learnt, or the cache was emptied since by another thread
            self.learn([piece])
            stems = self._cache.get(piece, ())
        return stems

    def postings(self, heading: str, text: str) -> Postings:
        """A chunk's stems with their doubled weighted hits (2 × (0.5 heading + 1 text), an
        integer) and its length in tokens, as FTS5 counts them for bm25(). Pieces not learnt
        beforehand (`learn`, for many chunks at once) go through SQLite one by one."""
        counted: dict[str, int] = {}
        length = 0
        cache = self._cache
        for column, unit in ((heading, 1), (text, 2)):
            for piece, times in Counter(column.split()).items():
                stems = cache.get(piece)
                if stems is None:
                    stems = self._stems(piece)
                length += times * len(stems)
                for stem in stems:
                    counted[stem] = counted.get(stem, 0) + times * unit
        return counted, length

    def close(self) -> None:
        self._db.close()


class Lexicon:
    """Postings by stem for BM25; searches may run from several threads while one thread adds."""

    def __init__(
        self,
        *,
        terms: list[str],
        starts: np.ndarray[Any, Any],
        docs: np.ndarray[Any, Any],
        freqs: np.ndarray[Any, Any],
        lengths: np.ndarray[Any, Any],
        alive: np.ndarray[Any, Any],
        keep: Any = None,
    ) -> None:
        self._terms = terms
        self._ids = {term: i for i, term in enumerate(terms)}
        self._stored = len(terms)  # terms with postings in the arrays; later ones are in the delta
        self._starts = starts
        self._docs = docs
        self._freqs = freqs
        self._lengths = np.array(lengths, dtype=np.int32)  # writable copies: they change with ingest
        self._alive = np.array(alive, dtype=np.bool_)
        self._rows = int(self._alive.sum())
        self._tokens = int(self._lengths[self._alive].sum(dtype=np.int64))
        self._added: dict[int, tuple[list[int], list[int]]] = {}
        self.changed = False  # since it was built, loaded or saved
        self._lock = threading.Lock()
        self._keep = keep  # the memory map the arrays view, open as long as they are

    # building -------------------------------------------------------------------------------

    @classmethod
    def build(cls, batches: Iterable[Sequence[tuple[int, str, str]]], tokenizer: Tokenizer) -> Lexicon:
        """The lexicon of the chunks given as batches of (chunk id, heading, text)."""
        ids: dict[str, int] = {}
        found_terms: list[np.ndarray[Any, Any]] = []
        found_docs: list[np.ndarray[Any, Any]] = []
        found_freqs: list[np.ndarray[Any, Any]] = []
        lengths: dict[int, int] = {}
        for batch in batches:
            tokenizer.learn(" ".join(f"{heading} {text}" for _, heading, text in batch).split())
            terms: list[int] = []
            docs: list[int] = []
            freqs: list[int] = []
            for key, heading, text in batch:
                counted, lengths[key] = tokenizer.postings(heading, text)
                for stem, freq in counted.items():
                    term = ids.get(stem)
                    if term is None:
                        term = ids[stem] = len(ids)
                    terms.append(term)
                    docs.append(key)
                    freqs.append(freq)
            found_terms.append(np.array(terms, dtype=np.int32))
            found_docs.append(np.array(docs, dtype=np.int32 if max(docs, default=0) < 2**31 else np.int64))
            found_freqs.append(np.array(freqs, dtype=np.int32))
        size = max(lengths, default=-1) + 1
        alive = np.zeros(size, dtype=np.bool_)
        keys = np.fromiter(lengths, dtype=np.int64, count=len(lengths))
        alive[keys] = True
        per_chunk = np.zeros(size, dtype=np.int32)
        per_chunk[keys] = np.fromiter(lengths.values(), dtype=np.int32, count=len(lengths))
        # joined one kind at a time, each batch list freed as it is joined: the peak stays near
        # two copies of the postings
        all_terms = np.concatenate([np.zeros(0, np.int32), *found_terms])
        del found_terms
        all_docs = np.concatenate([np.zeros(0, np.int32), *found_docs])
        del found_docs
        all_freqs = np.concatenate([np.zeros(0, np.int32), *found_freqs])
        del found_freqs
        starts, docs_array, freqs_array = _by_term(len(ids), all_terms, all_docs, all_freqs, size)
        return cls(
            terms=list(ids), starts=starts, docs=docs_array, freqs=freqs_array, lengths=per_chunk, alive=alive
        )

    # changes --------------------------------------------------------------------------------

    def add(self, chunks: Sequence[tuple[int, Postings]]) -> None:
        """Add chunks (ids never seen before: SQLite's AUTOINCREMENT does not reuse them)."""
        if not chunks:
            return
        with self._lock:
            top = max(key for key, _ in chunks)
            if top >= len(self._alive):
                size = max(top + 1, 2 * len(self._alive), 1024)
                self._alive = np.concatenate([self._alive, np.zeros(size - len(self._alive), dtype=np.bool_)])
                self._lengths = np.concatenate(
                    [self._lengths, np.zeros(size - len(self._lengths), dtype=np.int32)]
                )
            for key, (counted, length) in chunks:
                for stem, freq in counted.items():
                    term = self._ids.get(stem)
                    if term is None:
                        term = self._ids[stem] = len(self._terms)
                        self._terms.append(stem)
                    docs, freqs = self._added.setdefault(term, ([], []))
                    docs.append(key)
                    freqs.append(freq)
                self._alive[key] = True
                self._lengths[key] = length
                self._rows += 1
                self._tokens += length
            self.changed = True

    def remove(self, ids: Iterable[int]) -> None:
        with self._lock:
            for key in ids:
                if 0 <= key < len(self._alive) and self._alive[key]:
                    self._alive[key] = False
                    self._rows -= 1
                    self._tokens -= int(self._lengths[key])
                    self.changed = True

    # search ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._rows

    def term(self, stem: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(chunk ids, BM25 contribution) of every chunk holding `stem`, as FTS5's bm25()
        computes one phrase's part of a chunk's score (the same operations in the same order,
        in doubles, so the figures agree to the last bit where libm's log does)."""
        with self._lock:
            term = self._ids.get(stem)
            if term is None or self._rows == 0:
                return _EMPTY_IDS, _EMPTY_SCORES
            parts_docs: list[np.ndarray[Any, Any]] = []
            parts_freqs: list[np.ndarray[Any, Any]] = []
            if term < self._stored:
                start, end = int(self._starts[term]), int(self._starts[term + 1])
                parts_docs.append(self._docs[start:end])
                parts_freqs.append(self._freqs[start:end])
            extra = self._added.get(term)
            if extra is not None:
                parts_docs.append(np.asarray(extra[0], dtype=np.int64))
                parts_freqs.append(np.asarray(extra[1], dtype=np.int64))
            docs = np.concatenate(parts_docs) if len(parts_docs) > 1 else parts_docs[0]
            freqs = np.concatenate(parts_freqs) if len(parts_freqs) > 1 else parts_freqs[0]
            live = self._alive[docs]
            if not live.all():
                docs, freqs = docs[live], freqs[live]
            rows, hits = self._rows, len(docs)
            lengths = self._lengths[docs].astype(np.float64)
            avgdl = float(self._tokens) / float(rows)
        idf = math.log((rows - hits + 0.5) / (hits + 0.5))
        if idf <= 0.0:
            idf = IDF_FLOOR
        f = freqs.astype(np.float64) * 0.5  # FTS5 adds 0.5 or 1.0 per hit: halves are exact
        scores = idf * ((f * (K1 + 1.0)) / (f + K1 * (1 - B + B * lengths / avgdl)))
        return docs.astype(np.int64, copy=False), scores

    # files ----------------------------------------------------------------------------------

    def _merge(self) -> None:
        """Fold the delta and the removals into new stored arrays."""
        with self._lock:
            counts = np.diff(self._starts)
            term_of = np.repeat(np.arange(self._stored, dtype=np.int32), counts)
            keep = self._alive[self._docs]
            extra_terms = [np.full(len(d), t, dtype=np.int32) for t, (d, _) in self._added.items()]
            extra_docs = [np.asarray(d, dtype=np.int64) for d, _ in self._added.values()]
            extra_freqs = [np.asarray(f, dtype=np.int64) for _, f in self._added.values()]
            self._starts, self._docs, self._freqs = _by_term(
                len(self._terms),
                np.concatenate([term_of[keep], *extra_terms]),
                np.concatenate([self._docs[keep].astype(np.int64), *extra_docs]),
                np.concatenate([self._freqs[keep].astype(np.int64), *extra_freqs]),
                len(self._alive),
            )
            self._stored = len(self._terms)
            self._added = {}
            self._keep = None

    def save(self, path: Path, generation: int) -> None:
        """Write the lexicon as one file (header, then arrays), replacing `path` whole."""
        self._merge()
        with self._lock:
            vocabulary = np.frombuffer("\n".join(self._terms).encode(), dtype=np.uint8)
            arrays = {
                "vocabulary": vocabulary,
                "starts": self._starts,
                "docs": self._docs,
                "freqs": self._freqs,
                "lengths": self._lengths,
                "alive": self._alive,
            }
            layout: dict[str, dict[str, Any]] = {}
            offset = 0
            for name, array in arrays.items():
                layout[name] = {"dtype": array.dtype.str, "count": len(array), "offset": offset}
                offset += -(-array.nbytes // 64) * 64
            header = json.dumps({**_FORMAT, "generation": generation, "arrays": layout}).encode()
            base = -(-(len(_MAGIC) + 8 + len(header)) // 64) * 64
            partial = path.with_suffix(path.suffix + ".partial")
            with partial.open("wb") as out:
                out.write(_MAGIC + len(header).to_bytes(8, "little") + header)
                for name, array in arrays.items():
                    out.seek(base + layout[name]["offset"])
                    out.write(np.ascontiguousarray(array).tobytes())
                out.truncate(base + offset)
                out.flush()
                os.fsync(out.fileno())
            partial.replace(path)
            self.changed = False

    @staticmethod
    def saved_generation(path: Path) -> int | None:
        """The generation of chunks.db the file at `path` holds; None when it is missing, of
        another format, or unreadable."""
        header = _read_header(path)
        return int(header["generation"]) if header is not None else None

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        """The lexicon saved at `path`, its postings memory-mapped."""
        header = _read_header(path)
        if header is None:
            raise ValueError(f"{path} is not a lexicon of this format")
        with path.open("rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        base = -(-(len(_MAGIC) + 8 + int(header["length"])) // 64) * 64
        views: dict[str, np.ndarray[Any, Any]] = {}
        for name, spec in header["arrays"].items():
            views[name] = np.frombuffer(
                mapped,
                dtype=np.dtype(spec["dtype"]),
                count=int(spec["count"]),
                offset=base + int(spec["offset"]),
            )
        text = views["vocabulary"].tobytes().decode()
        terms = text.split("\n") if text else []
        if len(terms) + 1 != len(views["starts"]):
            raise ValueError(f"{path}: the vocabulary does not match its postings")
        return cls(
            terms=terms,
            starts=views["starts"],
            docs=views["docs"],
            freqs=views["freqs"],
            lengths=views["lengths"],
            alive=views["alive"],
            keep=mapped,
        )

    def memory(self) -> dict[str, int]:
        """Bytes held: the stored postings (memory-mapped, paged in as read) and the rest."""
        with self._lock:
            return {
                "postings": int(self._docs.nbytes + self._freqs.nbytes + self._starts.nbytes),
                "per_chunk": int(self._lengths.nbytes + self._alive.nbytes),
                "terms": len(self._terms),
            }


def _by_term(
    count: int, terms: np.ndarray[Any, Any], docs: np.ndarray[Any, Any], freqs: np.ndarray[Any, Any], ids: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Postings given as (term, chunk, weighted hits) in any order, as compressed rows by term:
    (starts, chunk ids, hits), term t's postings at starts[t]:starts[t + 1]."""
    order = np.argsort(terms, kind="stable")  # runs already sorted (a merge's stored part) stay cheap
    starts = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(terms, minlength=count), out=starts[1:])
    doc_type = np.int32 if ids < 2**31 else np.int64
    freq_type = np.uint16 if not len(freqs) or int(freqs.max()) < 2**16 else np.uint32
    return starts, docs[order].astype(doc_type, copy=False), freqs[order].astype(freq_type, copy=False)


def _read_header(path: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError), path.open("rb") as handle:
        head = handle.read(len(_MAGIC) + 8)
        if len(head) < len(_MAGIC) + 8 or head[: len(_MAGIC)] != _MAGIC:
            return None
        length = int.from_bytes(head[len(_MAGIC) :], "little")
        header = dict(json.loads(handle.read(length)))
        if any(header.get(key) != value for key, value in _FORMAT.items()):
            return None
        header["length"] = length
        size = os.fstat(handle.fileno()).st_size
        base = -(-(len(_MAGIC) + 8 + length) // 64) * 64
        for spec in header["arrays"].values():
            end = base + int(spec["offset"]) + int(spec["count"]) * np.dtype(spec["dtype"]).itemsize
            if end > size:
                return None  # cut short
        return header
    return None


def top(
    parts: Sequence[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]], limit: int
) -> list[tuple[int, float]]:
    """The best `limit` chunks by the sum of their parts' scores, summed in the parts' order
    (as FTS5 sums a query's phrases), best first, ties by chunk id."""
    parts = [p for p in parts if len(p[0])]
    if not parts or limit <= 0:
        return []
    ids = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts])
    if len(parts) > 1:
        ids, where = np.unique(ids, return_inverse=True)
        scores = np.bincount(where, weights=scores, minlength=len(ids))
    if len(ids) > limit:
        best = np.argpartition(-scores, limit - 1)[:limit]
        ids, scores = ids[best], scores[best]
    order = np.lexsort((ids, -scores))
    return [(int(k), float(s)) for k, s in zip(ids[order], scores[order], strict=True)]


def chunk_batches(
    rows: Iterator[tuple[int, str, str]], size: int = 2000
) -> Iterator[list[tuple[int, str, str]]]:
    batch: list[tuple[int, str, str]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
