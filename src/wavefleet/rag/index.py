"""The dense half of retrieval: an HNSW graph over unit vectors (USearch), keyed by chunk id.

USearch was chosen by measurement over hnswlib, FAISS and a numpy scan (docs/rag.md, "Why these
parts"): as fast as hnswlib at 100k vectors, with wheels for every platform (hnswlib ships only
a source archive that needs a C++ compiler, and its last release is from 2023), removal of
single vectors, and one file on disk.

    index = VectorIndex(384)
    index.add(ids, vectors)
    index.search(query_vector, 10)    # [(chunk id, cosine similarity), ...] best first
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VectorIndex"]

CONNECTIVITY = 16  # M: edges per node (hnswlib's and FAISS's default too)
EXPANSION_ADD = 128  # efConstruction
EXPANSION_SEARCH = 64  # ef at query time: recall@10 0.99+ at 100k (docs/measurements)


class VectorIndex:
    """Cosine HNSW over float32 vectors, one search thread per call (callers run in parallel)."""

    def __init__(self, dimension: int, *, _index: Any = None) -> None:
        from usearch.index import Index  # the compiled module loads only where vectors are searched

        self.dimension = dimension
        self._index = _index or Index(
            ndim=dimension,
            metric="ip",
            dtype="f32",
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )

    @classmethod
    def load(cls, path: Path, dimension: int) -> VectorIndex:
        from usearch.index import Index

        index = Index.restore(str(path))
        if index is None:
            raise ValueError(f"{path} is not a USearch index")
        return cls(dimension, _index=index)

    def __len__(self) -> int:
        return int(self._index.size)

    def add(self, ids: np.ndarray[Any, Any], vectors: np.ndarray[Any, Any]) -> None:
        if len(ids):
            self._index.add(np.asarray(ids, dtype=np.uint64), np.asarray(vectors, dtype=np.float32))

    def remove(self, ids: np.ndarray[Any, Any]) -> None:
        if len(ids):
            self._index.remove(np.asarray(ids, dtype=np.uint64))

    def search(self, vector: np.ndarray[Any, Any], limit: int) -> list[tuple[int, float]]:
        if len(self) == 0 or limit <= 0:
            return []
        matches = self._index.search(np.asarray(vector, dtype=np.float32).reshape(-1), limit, threads=1)
        # metric "ip" reports the distance 1 - dot(a, b); for unit vectors that is 1 - cosine
        return [(int(k), 1.0 - float(d)) for k, d in zip(matches.keys, matches.distances, strict=True)]

    def save(self, path: Path) -> None:
        partial = path.with_suffix(path.suffix + ".partial")
        self._index.save(str(partial))
        partial.replace(path)
