"""Which HNSW library `wave rag` uses: USearch, hnswlib and FAISS side by side on one data set.

    pip install usearch faiss-cpu        # for this comparison only (hnswlib comes with wavefleet[rag])
    python scripts/rag_index_choice.py --n 100000

Data: `--n` unit vectors of 384 dimensions around 1,000 random centres (noise 0.5), 300 queries
near stored vectors; exact top-10 by a numpy scan is the truth for recall@10. Each library
builds with M=16, efConstruction=128 on `--build-threads` threads and searches one query at a
time on one thread with ef=64, as `wave rag` does.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np


def data(n: int, d: int = 384, queries: int = 300) -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, d)).astype(np.float32)
    x = centres[rng.integers(0, 1000, n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.integers(0, n, queries)] + 0.1 * rng.standard_normal((queries, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    return x, q, truth


def recall(found: list[Any], truth: Any) -> float:
    return float(
        np.mean([len(set(map(int, f)) & set(map(int, t))) / 10 for f, t in zip(found, truth, strict=True)])
    )


def timed_search(search: Any, queries: Any) -> tuple[float, list[Any], float]:
    latencies, found = [], []
    for q in queries:
        started = time.perf_counter()
        found.append(search(q))
        latencies.append(time.perf_counter() - started)
    total = sum(latencies)
    return len(queries) / total, found, float(np.percentile(latencies, 95) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--build-threads", type=int, default=2)
    args = parser.parse_args()
    x, queries, truth = data(args.n)
    ids = np.arange(args.n)
    rows: dict[str, dict[str, float]] = {}
    load = os.getloadavg()

    from usearch.index import Index

    started = time.perf_counter()
    u = Index(
        ndim=x.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=128, expansion_search=64
    )
    u.add(ids.astype(np.uint64), x, threads=args.build_threads)
    build = time.perf_counter() - started
    qps, found, p95 = timed_search(lambda q: u.search(q, 10, threads=1).keys, queries)
    rows["usearch"] = {"build_s": build, "qps": qps, "p95_ms": p95, "recall@10": recall(found, truth)}
    print("usearch", rows["usearch"], flush=True)

    import hnswlib

    started = time.perf_counter()
    h = hnswlib.Index("ip", x.shape[1])
    h.init_index(args.n, M=16, ef_construction=128)
    h.set_num_threads(args.build_threads)
    h.add_items(x, ids)
    build = time.perf_counter() - started
    h.set_ef(64)
    h.set_num_threads(1)
    qps, found, p95 = timed_search(lambda q: h.knn_query(q, 10)[0][0], queries)
    rows["hnswlib"] = {"build_s": build, "qps": qps, "p95_ms": p95, "recall@10": recall(found, truth)}
    print("hnswlib", rows["hnswlib"], flush=True)

    import faiss

    faiss.omp_set_num_threads(args.build_threads)
    started = time.perf_counter()
    f = faiss.IndexHNSWFlat(x.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    f.hnsw.efConstruction = 128
    f.add(x)
    build = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    f.hnsw.efSearch = 64
    qps, found, p95 = timed_search(lambda q: f.search(q[None], 10)[1][0], queries)
    rows["faiss"] = {"build_s": build, "qps": qps, "p95_ms": p95, "recall@10": recall(found, truth)}
    print("faiss", rows["faiss"], flush=True)

    qps, found, p95 = timed_search(lambda q: np.argpartition(-(x @ q), 10)[:10], queries[:50])
    rows["numpy scan"] = {"build_s": 0.0, "qps": qps, "p95_ms": p95, "recall@10": recall(found, truth[:50])}
    print(
        json.dumps({"n": args.n, "load_before": load, "load_after": os.getloadavg(), "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
