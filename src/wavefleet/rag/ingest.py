"""Ingest: files -> sections -> token chunks -> vectors -> one collection, incrementally.

    report = await ingest(collection, [Path("notes")], chunker=chunker, embedder=embedder)

A file is known by its absolute path and identified by the SHA-256 of its bytes: an unchanged
file is skipped, a changed one replaced whole, and a file that is gone from a directory being
ingested is removed with its chunks. Each document is committed with its chunks and vectors in
one transaction, so an interrupted run keeps every document it finished and the next run (the
same command) goes on with the rest.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wavefleet.errors import UsageError
from wavefleet.rag.chunking import Chunker
from wavefleet.rag.documents import document_kind, read_document
from wavefleet.rag.embedder import Embedder, Vectors
from wavefleet.rag.store import Collection

__all__ = ["IngestPlan", "IngestReport", "ingest", "plan_ingest"]

EMBED_BATCH = 32
SAVE_EVERY_S = 60.0


@dataclass
class IngestPlan:
    """What a run will do: files to (re)ingest with their hashes, unchanged ones, removed ones."""

    todo: list[tuple[Path, str]] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # suffixes not read

    @property
    def todo_bytes(self) -> int:
        return sum(path.stat().st_size for path, _ in self.todo)


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).parts
        if any(part.startswith(".") for part in relative):
            continue  # .git, .venv, editor files
        if path.is_file():
            yield path


def plan_ingest(collection: Collection, paths: Sequence[Path]) -> IngestPlan:
    """Compare the files under `paths` with what the collection holds."""
    known = collection.documents()
    plan = IngestPlan()
    seen: set[str] = set()
    roots: list[Path] = []
    for given in paths:
        path = given.expanduser().resolve()
        if not path.exists():
            raise UsageError(f"{given}: no such file or directory")
        if path.is_dir():
            roots.append(path)
            candidates = list(_walk(path))
        else:
            if document_kind(path) is None:
                raise UsageError(
                    f"{given}: `wave rag ingest` reads .txt, .md, .html and .pdf files (and .text, "
                    ".rst, .markdown, .htm); convert it to one of those"
                )
            candidates = [path]
        for candidate in candidates:
            if document_kind(candidate) is None:
                plan.skipped.append(candidate)
                continue
            key = str(candidate)
            if key in seen:
                continue
            seen.add(key)
            digest = _sha256(candidate)
            record = known.get(key)
            if record is not None and record.sha256 == digest:
                plan.unchanged.append(candidate)
            else:
                plan.todo.append((candidate, digest))
    for key in known:
        if key not in seen and any(Path(key).is_relative_to(root) for root in roots):
            plan.removed.append(key)
    return plan


async def ingest(
    collection: Collection,
    plan: IngestPlan,
    *,
    chunker: Chunker,
    embedder: Embedder,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Carry out `plan`. `progress(bytes_done, chunks_done)` is called after each document."""
    started = time.perf_counter()
    report = IngestReport(unchanged=len(plan.unchanged))
    collection.settle(embed_model=embedder.name, chunk_tokens=chunker.size, overlap_tokens=chunker.overlap)
    collection.open_index()
    known = collection.documents()
    last_save = time.perf_counter()
    done_bytes = 0
    try:
        for key in plan.removed:
            removed = collection.remove_document(key)
            collection.update_index(removed, [], np.zeros((0, 0), dtype=np.float32))
            report.removed += 1
        for path, digest in plan.todo:
            size = path.stat().st_size
            try:
                doc = read_document(path)
                chunks = list(chunker.chunks(doc))
            except UsageError as exc:  # this file is unreadable; the others may be fine
                report.failed.append((str(path), str(exc)))
                done_bytes += size
                continue
            # An embedding failure (the engine is down) stops the run: every later file would fail too.
            embed_started = time.perf_counter()
            vectors = await _embed_all(embedder, [chunker.embedding_text(c) for c in chunks])
            report.embed_seconds += time.perf_counter() - embed_started
            removed, added = collection.put_document(
                path=str(path),
                sha256=digest,
                kind=doc.kind,
                title=doc.title,
                chars=len(doc.text),
                chunks=chunks,
                vectors=vectors,
            )
            collection.update_index(removed, added, vectors)
            if str(path) in known:
                report.updated += 1
            else:
                report.added += 1
            report.chunks += len(chunks)
            done_bytes += size
            if progress is not None:
                progress(done_bytes, report.chunks)
            if time.perf_counter() - last_save > SAVE_EVERY_S:
                collection.save_index()
                last_save = time.perf_counter()
    finally:
        collection.save_index()
        report.seconds = time.perf_counter() - started
    return report


async def _embed_all(embedder: Embedder, texts: list[str]) -> Vectors:
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    parts = [await embedder.embed(texts[i : i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
    return np.vstack(parts)
