"""The dense half of retrieval: an HNSW graph over unit vectors (hnswlib), keyed by chunk id.

hnswlib was chosen by measurement over USearch, FAISS and a numpy scan
(docs/measurements/2026-12-03-rag-speed.md): at 100,000 vectors it searched 5 times faster than
USearch with a better recall, and built 3 times faster. Its cost: PyPI has only its source
archive, compiled at install (a C++ compiler, which llama-cpp-python needs anyway), and its last
release is from December 2023.

    index = VectorIndex(384)
    index.add(ids, vectors)
    index.search(query_vector, 10)    # [(chunk id, cosine similarity), ...] best first

Removed vectors are marked deleted (hnswlib keeps them in the graph, out of results); chunk ids
are never reused (SQLite AUTOINCREMENT), so a marked id never comes back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VectorIndex"]

CONNECTIVITY = 16  # M: edges per node (hnswlib's and FAISS's default too)
EXPANSION_ADD = 128  # efConstruction
EXPANSION_SEARCH = 64  # ef at query time (raised to k when more are asked for)


class VectorIndex:
    """Cosine HNSW over float32 unit vectors; searches may run from several threads at once."""

    ENGINE = "hnswlib"  # recorded beside the saved graph: another engine's file is rebuilt

    def __init__(self, dimension: int, *, capacity: int = 1024, deleted: int = 0, _index: Any = None) -> None:
        import hnswlib  # compiled; loads only where vectors are searched

        self.dimension = dimension
        self.deleted = deleted
        if _index is None:
            _index = hnswlib.Index(space="ip", dim=max(dimension, 1))
            _index.init_index(max_elements=capacity, M=CONNECTIVITY, ef_construction=EXPANSION_ADD)
        _index.set_ef(EXPANSION_SEARCH)
        _index.set_num_threads(1)
        self._index = _index

    @classmethod
    def load(cls, path: Path, dimension: int, deleted: int = 0) -> VectorIndex:
        import hnswlib

        index = hnswlib.Index(space="ip", dim=dimension)
        index.load_index(str(path))
        return cls(dimension, deleted=deleted, _index=index)

    def __len__(self) -> int:
        return int(self._index.get_current_count()) - self.deleted

    def add(self, ids: np.ndarray[Any, Any], vectors: np.ndarray[Any, Any]) -> None:
        if not len(ids):
            return
        needed = int(self._index.get_current_count()) + len(ids)
        if needed > self._index.get_max_elements():
            self._index.resize_index(max(needed, 2 * self._index.get_max_elements()))
        self._index.add_items(
            np.asarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.uint64), num_threads=2
        )

    def remove(self, ids: np.ndarray[Any, Any]) -> None:
        for key in np.asarray(ids, dtype=np.uint64):
            try:
                self._index.mark_deleted(int(key))
            except RuntimeError:  # not in the graph (already removed): nothing to do
                continue
            self.deleted += 1

    def search(self, vector: np.ndarray[Any, Any], limit: int) -> list[tuple[int, float]]:
        count = min(limit, len(self))
        if count <= 0:
            return []
        if count > EXPANSION_SEARCH:
            self._index.set_ef(count)
        labels, distances = self._index.knn_query(
            np.asarray(vector, dtype=np.float32).reshape(1, -1), k=count
        )
        # space "ip" reports 1 - dot(a, b): for unit vectors, 1 - cosine
        return [(int(k), 1.0 - float(d)) for k, d in zip(labels[0], distances[0], strict=True)]

    def save(self, path: Path) -> None:
        partial = path.with_suffix(path.suffix + ".partial")
        self._index.save_index(str(partial))
        partial.replace(path)
