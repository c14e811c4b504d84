"""Where a `wave rag` query's CPU goes: the question's embedding by weight type, flash attention
and batch size, then each part of hybrid search at a given collection size.

    PYTHONPATH=src python scripts/rag_query_cost.py --chunks 100000

Embedding: the bundled all-MiniLM-L6-v2 as converted (F32) and as `wave model quantize` writes it
in F16 and Q8_0 (llama.cpp's llama-quantize), each loaded with flash attention off and on, one
llama.cpp thread; the 77 bundled questions (about 14 tokens each) are embedded in passes of 1, 8
and 16 texts, and 8 passages of the pydoc corpus are embedded one a pass, cut at 512 tokens as
ingest's chunks are. Figures are CPU ms per text, the best of `--rounds` rounds (rounds alternate
between the settings, so other work on the machine spreads over all of them).

Search: a collection built as scripts/rag_bench.py builds it (real pydoc sentences, synthetic
vectors); BM25 from the postings in memory and, for comparison, by FTS5's bm25() itself (with how
many top-50 lists differ between the two, ties aside), the HNSW search, convex fusion and fetching
the top 5 texts, each timed alone over the questions (random unit vectors stand in for their
embeddings); BM25 with other postings budgets than the default 2,500, with how many hybrid top-5
lists they change; and the postings' rebuild time and size. `--search-only` skips the embedding.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rag_bench import build, sentences

from wavefleet.models.quantize import QuantizeRequest, find_llama_quantize, quantize_model
from wavefleet.rag.evaluate import load_labelled, write_corpus
from wavefleet.rag.fusion import convex
from wavefleet.rag.model import bundled_model, ensure_gguf

BATCHES = (1, 8, 16)
CHUNK = "512-token chunk"


class _Quiet:
    def update(self, done: int, total: int | None) -> None:
        return None

    def say(self, text: str) -> None:
        return None


def embedding_costs(
    work: Path, questions: list[str], passages: list[str], rounds: int
) -> dict[str, dict[int | str, float]]:
    import llama_cpp

    f32 = ensure_gguf(bundled_model(), work / "models")
    files = {"F32": f32}
    tool = find_llama_quantize()
    for kind in ("F16", "Q8_0"):
        target = work / "models" / f"minilm.{kind}.gguf"
        quantize_model(QuantizeRequest(source=f32, target=target, type=kind), tool, _Quiet())
        files[kind] = target
    models = {
        f"{kind} flash {'on' if flash else 'off'}": llama_cpp.Llama(
            model_path=str(path),
            embedding=True,
            n_ctx=512,
            n_batch=512,
            n_ubatch=512,
            n_seq_max=64,
            flash_attn=flash,
            n_threads=1,
            n_threads_batch=1,
            verbose=False,
        )
        for kind, path in files.items()
        for flash in (False, True)
    }
    best: dict[str, dict[int | str, float]] = {
        name: dict.fromkeys([*BATCHES, CHUNK], math.inf) for name in models
    }
    for _ in range(rounds):
        for name, llm in models.items():
            for size in BATCHES:
                started = time.process_time()
                for start in range(0, 64, size):
                    llm.embed([questions[(start + j) % len(questions)] for j in range(size)])
                per_question = (time.process_time() - started) / 64 * 1000
                best[name][size] = min(best[name][size], per_question)
            started = time.process_time()
            llm.embed(passages, truncate=True)  # one 512-token chunk a pass, as at ingest
            best[name][CHUNK] = min(best[name][CHUNK], (time.process_time() - started) / len(passages) * 1000)
    for llm in models.values():
        llm.close()
    return best


def search_costs(work: Path, questions: list[str], chunks: int) -> dict[str, float]:
    corpus = work / "corpus"
    collection, _, _ = build(work, f"n{chunks}", chunks, sentences(corpus))
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((len(questions), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    started = time.process_time()
    collection.lexicon = None
    collection.lexicon_path.unlink(missing_ok=True)
    lexicon = collection.open_lexicon()
    rebuild_s = time.process_time() - started
    lexical = [collection.bm25(q, 50) for q in questions]
    semantic = [collection.dense(v, 50) for v in vectors]
    top = [[k for k, _ in convex(a, b)[:5]] for a, b in zip(lexical, semantic, strict=True)]

    def cpu_ms(step: Callable[[int], Any], total: int = 400) -> float:
        started = time.process_time()
        for n in range(total):
            step(n % len(questions))
        return (time.process_time() - started) / total * 1000

    def differs(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
        cut = b[-1][1] if len(b) == 50 else -math.inf
        scores_differ = any(not math.isclose(x[1], y[1], rel_tol=1e-9) for x, y in zip(a, b, strict=False))
        return (
            len(a) != len(b) or scores_differ or {k for k, s in a if s > cut} != {k for k, s in b if s > cut}
        )

    costs: dict[str, float] = {
        "bm25": cpu_ms(lambda i: collection.bm25(questions[i], 50)),
        "bm25 fts5": cpu_ms(lambda i: collection.fts5_bm25(questions[i], 50)),
        f"bm25 top 50 differing from fts5 of {len(questions)}": float(
            sum(differs(collection.bm25(q, 50), collection.fts5_bm25(q, 50)) for q in questions)
        ),
        "lexicon rebuild cpu s": rebuild_s,
        "lexicon postings MB": lexicon.memory()["postings"] / 1e6,
        "lexicon per-chunk arrays MB": lexicon.memory()["per_chunk"] / 1e6,
        "lexicon terms": float(lexicon.memory()["terms"]),
        "lexicon file MB": collection.lexicon_path.stat().st_size / 1e6,
        "dense": cpu_ms(lambda i: collection.dense(vectors[i], 50)),
        "convex": cpu_ms(lambda i: convex(lexical[i], semantic[i])),
        "fetch top 5": cpu_ms(lambda i: collection.chunks(top[i])),
    }
    # A smaller postings budget: what BM25 saves, and how many hybrid top-5 lists it changes.
    ranked = [[k for k, _ in convex(a, b)[:5]] for a, b in zip(lexical, semantic, strict=True)]
    for budget in (10**9, 10000, 1500, 1000, 500):
        label = "none" if budget == 10**9 else str(budget)
        costs[f"bm25 budget {label}"] = cpu_ms(lambda i, b=budget: collection.bm25(questions[i], 50, b))
        changed = [
            [k for k, _ in convex(collection.bm25(q, 50, budget), semantic[i])[:5]] != ranked[i]
            for i, q in enumerate(questions)
        ]
        costs[f"hybrid top 5 changed of {len(questions)}, budget {label}"] = float(sum(changed))
    collection.close()
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    parser.add_argument("--search-only", action="store_true", help="skip the embedding's costs")
    args = parser.parse_args()
    questions = [q.query for q in load_labelled()]
    work = Path(tempfile.mkdtemp(prefix="rag-cost-"))
    results: dict[str, Any] = {"load_before": os.getloadavg()}
    try:
        corpus = work / "corpus"
        write_corpus(corpus)
        text = " ".join(p.read_text() for p in sorted(corpus.glob("*.txt")))
        passages = [text[i : i + 2600] for i in range(0, 8 * 2600, 2600)]  # past 512 tokens each
        costs = {} if args.search_only else embedding_costs(work, questions, passages, args.rounds)
        results["embed_cpu_ms_per_text"] = {
            name: {str(k): v for k, v in row.items()} for name, row in costs.items()
        }
        columns: list[int | str] = [*BATCHES, CHUNK]
        print("| model | " + " | ".join(f"pass of {c}" if isinstance(c, int) else c for c in columns) + " |")
        for name, row in costs.items():
            print(f"| {name} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")
        results["search_cpu_ms"] = search_costs(work, questions, args.chunks)
        print(json.dumps({"chunks": args.chunks, **results["search_cpu_ms"]}))
    finally:
        results["load_after"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"load_before": results["load_before"], "load_after": results["load_after"]}))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
