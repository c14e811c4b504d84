"""Retrieval speed and scale of `wave rag` on this machine: query latency (embedding included),
throughput with several clients, index build, memory and disk, at several collection sizes; and
ingest throughput (chunks/s, embeddings included) on the bundled pydoc corpus.

    PYTHONPATH=src python scripts/rag_bench.py --sizes 10000,30000,100000 --clients 1,4,8

The embedding engine is `wave rag embed-server` (the bundled all-MiniLM-L6-v2 on llama.cpp),
started here as a separate process and reached over HTTP, as the gateway reaches it. Chunk texts
are sentences of the pydoc corpus drawn at random (so BM25 sees real English), 5 to a chunk;
their vectors are synthetic: clustered unit vectors (1,000 centres), because embedding 100,000
chunks with the real model takes hours on 2 cores (the ingest measurement below gives the rate).
Query vectors are real: each query's text is embedded by the engine. Queries cycle through the
77 bundled questions; nothing caches a question's embedding or its results, so a repeat costs
what the first asking cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from wavefleet.rag.chunking import Chunker, load_tokenizer
from wavefleet.rag.embedder import HttpEmbedder
from wavefleet.rag.evaluate import load_labelled, write_corpus
from wavefleet.rag.ingest import ingest, plan_ingest
from wavefleet.rag.model import bundled_model
from wavefleet.rag.paths import collection_dir
from wavefleet.rag.retrieve import RetrievalSettings, Retriever
from wavefleet.rag.store import Collection


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_engine(data_dir: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "wavefleet",
        "rag",
        "embed-server",
        "--port",
        str(port),
        "--threads",
        str(threads),
    ]
    proc = subprocess.Popen(
        [*argv, "--data-dir", str(data_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as reply:
                if reply.status == 200:
                    return proc, url + "/v1"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the embedding engine did not start")


def sentences(corpus_dir: Path) -> list[str]:
    text = " ".join(p.read_text() for p in sorted(corpus_dir.glob("*.txt")))
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if 20 < len(s) < 400]


def build(
    root: Path, name: str, size: int, pool: list[str], seed: int = 0
) -> tuple[Collection, float, float]:
    """A collection of `size` chunks written straight into SQLite, then its HNSW graph built the
    way a collection rebuilds it on open. Returns (collection, seconds writing, seconds building)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, 384)).astype(np.float32)
    collection = Collection(collection_dir(root, name), create=True)
    collection.settle(embed_model="all-minilm-l6-v2", chunk_tokens=128, overlap_tokens=0)
    started = time.perf_counter()
    db = collection.db
    db.execute("BEGIN")
    per_doc = 100
    for doc in range(0, size, per_doc):
        cur = db.execute(
            "INSERT INTO documents (path, sha256, kind, title, chars, chunks, ingested_at) VALUES (?, ?, 'text', NULL, 0, ?, 0)",
            (f"/synthetic/{name}/doc{doc // per_doc:06d}.txt", f"{doc:064d}", per_doc),
        )
        doc_id = cur.lastrowid
        n = min(per_doc, size - doc)
        vectors = centres[rng.integers(0, 1000, n)] + 0.5 * rng.standard_normal((n, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = []
        for i in range(n):
            text = " ".join(pool[j] for j in rng.integers(0, len(pool), 5))
            rows.append((doc_id, i, 0, len(text), None, None, 128, text, vectors[i].tobytes()))
        db.executemany(
            'INSERT INTO chunks (doc_id, ordinal, start, "end", page, heading, tokens, text, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
            rows,
        )
    db.execute(
        "INSERT INTO meta VALUES ('generation', '1') ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )
    db.execute("COMMIT")
    written = time.perf_counter() - started
    started = time.perf_counter()
    collection.open_index()
    return collection, written, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    retriever: Retriever,
    embedder: HttpEmbedder,
    queries: list[str],
    clients: int,
    total: int,
    engine_pid: int,
) -> dict[str, float]:
    settings = RetrievalSettings()
    latencies: list[float] = []
    embeds: list[float] = []
    searches: list[float] = []
    counter = iter(range(total))

    async def client() -> None:
        for n in counter:
            started = time.perf_counter()
            result = await retriever.search(queries[n % len(queries)], settings, embedder=embedder)
            latencies.append((time.perf_counter() - started) * 1000)
            embeds.append(result.embed_ms)
            searches.append(result.search_ms)

    engine_before, own_before = cpu_seconds(engine_pid), cpu_seconds(os.getpid())
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    engine_cpu = cpu_seconds(engine_pid) - engine_before
    cpu = engine_cpu + cpu_seconds(os.getpid()) - own_before
    return {
        "clients": clients,
        "qps": total / elapsed,
        # CPU time both processes spent per query: what the work costs whatever else the machine runs
        "cpu_ms_per_query": cpu / total * 1000,
        "engine_cpu_ms_per_query": engine_cpu / total * 1000,
        # what that cost allows when the machine's cores do nothing else
        "capacity_idle_qps": (os.cpu_count() or 1) * total / cpu if cpu > 0 else float("inf"),
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
        "embed_p50_ms": statistics.median(embeds),
        "search_p50_ms": statistics.median(searches),
        "search_p95_ms": percentile(searches, 0.95),
    }


async def search_only(
    collection: Collection, vectors: np.ndarray, queries: list[str], total: int
) -> dict[str, float]:  # type: ignore[type-arg]
    """Hybrid search alone (query vectors computed beforehand), one thread: queries/s, CPU ms each."""
    from wavefleet.rag.fusion import convex

    cpu = time.process_time()
    started = time.perf_counter()
    for n in range(total):
        lexical = collection.bm25(queries[n % len(queries)], 50)
        semantic = collection.dense(vectors[n % len(vectors)], 50)
        top = convex(lexical, semantic)[:5]
        collection.chunks([k for k, _ in top])
    return {
        "qps": total / (time.perf_counter() - started),
        "cpu_ms_per_query": (time.process_time() - cpu) / total * 1000,
    }


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--queries", type=int, default=400, help="queries per measurement")
    parser.add_argument("--engine-threads", type=int, default=1)
    parser.add_argument("--ingest", action="store_true", help="also measure ingest of the pydoc corpus")
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    results: dict[str, object] = {"load_before": os.getloadavg(), "cpus": os.cpu_count()}
    engine, url = start_engine(work, args.engine_threads)
    embedder = HttpEmbedder(url=url, model="all-minilm-l6-v2")
    try:
        corpus = work / "corpus"
        write_corpus(corpus)
        pool = sentences(corpus)
        queries = [q.query for q in load_labelled()]
        if args.ingest:
            collection = Collection(collection_dir(work, "pydoc"), create=True)
            chunker = Chunker(load_tokenizer(bundled_model().tokenizer), size=512, overlap=150)
            report = await ingest(
                collection, plan_ingest(collection, [corpus]), chunker=chunker, embedder=embedder
            )
            results["ingest"] = {
                "documents": report.added,
                "chunks": report.chunks,
                "seconds": report.seconds,
                "embed_seconds": report.embed_seconds,
                "chunks_per_s": report.chunks_per_s,
                "tokens": int(collection.db.execute("SELECT sum(tokens) FROM chunks").fetchone()[0]),
            }
            print(json.dumps(results["ingest"]), flush=True)
            collection.close()
        query_vectors = await embedder.embed(queries)
        for size in [int(s) for s in args.sizes.split(",")]:
            collection, written, built = build(work, f"n{size}", size, pool)
            retriever = Retriever(collection, embedder)
            await measure(
                retriever, embedder, queries, 1, 20, engine.pid
            )  # warm the page cache and connections
            row: dict[str, object] = {
                "chunks": size,
                "write_s": written,
                "index_build_s": built,
                "disk_mb": sum(p.stat().st_size for p in collection.directory.iterdir()) / 1e6,
                "rss_mb": rss_mb(),
                "search_only_qps": await search_only(collection, query_vectors, queries, args.queries),
                "runs": [
                    await measure(retriever, embedder, queries, c, args.queries, engine.pid)
                    for c in map(int, args.clients.split(","))
                ],
            }
            print(json.dumps(row), flush=True)
            results[f"n{size}"] = row
            retriever.close()
            collection.close()
            shutil.rmtree(collection.directory)
    finally:
        await embedder.aclose()
        engine.terminate()
        engine.wait(timeout=30)
        results["load_after"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps({"load_before": results["load_before"], "load_after": results["load_after"]}))


if __name__ == "__main__":
    asyncio.run(main())
