"""Time to first token of `rag/NAME` answers through the gateway, one question at a time.

    python scripts/rag_ttft.py corpus DIR --docs 1000          # 1,000 documents from the pydoc topics
    python scripts/rag_ttft.py measure --url http://127.0.0.1:8100/v1 --model rag/docs1k --n 100

`corpus` cuts the bundled pydoc topics into `--docs` Markdown files of whole paragraphs (a topic
gives as many files as its share of the text). `measure` asks the bundled questions in turn,
streaming, and reports TTFT (request sent to first content chunk) at P50/P95 with its parts: the
query's embedding and the search (from the answer's x-wave-rag-* headers) and the rest, the
model's prefill of the prompt with its sources.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
from pathlib import Path

import aiohttp

from wavefleet.rag.evaluate import BUNDLED_CORPUS, load_labelled


def make_corpus(directory: Path, docs: int) -> int:
    from importlib import resources

    rows = [
        json.loads(line)
        for line in resources.files("wavefleet.rag").joinpath("data", BUNDLED_CORPUS).read_text().splitlines()
    ]
    total = sum(len(r["text"]) for r in rows)
    split = {r["_id"]: [p for p in re.split(r"\n\s*\n", r["text"]) if p.strip()] for r in rows}

    def plan(target: float) -> dict[str, int]:  # paragraphs a file, per topic
        sizes = {}
        for row in rows:
            paragraphs = split[row["_id"]]
            parts = max(1, min(len(paragraphs), round(target * len(row["text"]) / total)))
            sizes[row["_id"]] = -(-len(paragraphs) // parts)
        return sizes

    def count(sizes: dict[str, int]) -> int:
        return sum(-(-len(split[k]) // size) for k, size in sizes.items())

    target = float(docs)
    while count(plan(target)) < docs and target < docs * 20:
        target *= 1.02  # small topics round up to one file each, so aim a little higher
    sizes = plan(target)
    directory.mkdir(parents=True, exist_ok=True)
    written = 0
    for row in rows:
        paragraphs, size = split[row["_id"]], sizes[row["_id"]]
        for index in range(0, len(paragraphs), size):
            if written == docs:
                return written
            body = "\n\n".join(paragraphs[index : index + size])
            (directory / f"{row['_id']}-{index // size:03d}.md").write_text(f"# {row['title']}\n\n{body}\n")
            written += 1
    return written


async def measure(url: str, model: str, key: str | None, n: int, max_tokens: int) -> dict[str, float]:
    questions = [q.query for q in load_labelled()]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    ttft, embed, search = [], [], []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for i in range(n):
            body = {
                "model": model,
                "messages": [{"role": "user", "content": questions[i % len(questions)]}],
                "stream": True,
                "max_tokens": max_tokens,
            }
            started = time.perf_counter()
            async with session.post(
                url.rstrip("/") + "/chat/completions", json=body, headers=headers
            ) as answer:
                if answer.status != 200:
                    raise SystemExit(f"{answer.status}: {await answer.text()}")
                first = None
                async for raw in answer.content:
                    line = raw.decode().strip()
                    if (
                        first is None
                        and line.startswith("data: {")
                        and '"content":"' in line
                        and '"content":""' not in line
                    ):
                        first = time.perf_counter() - started
                ttft.append((first if first is not None else time.perf_counter() - started) * 1000)
                embed.append(float(answer.headers.get("x-wave-rag-embed-ms", "nan")))
                search.append(float(answer.headers.get("x-wave-rag-search-ms", "nan")))
    ordered = sorted(ttft)
    return {
        "n": n,
        "ttft_p50_ms": statistics.median(ttft),
        "ttft_p95_ms": ordered[min(n - 1, round(0.95 * (n - 1)))],
        "embed_p50_ms": statistics.median(embed),
        "search_p50_ms": statistics.median(search),
        "generation_ttft_p50_ms": statistics.median(
            t - e - s for t, e, s in zip(ttft, embed, search, strict=True)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    corpus = sub.add_parser("corpus")
    corpus.add_argument("directory", type=Path)
    corpus.add_argument("--docs", type=int, default=1000)
    run = sub.add_parser("measure")
    run.add_argument("--url", default="http://127.0.0.1:8080/v1")
    run.add_argument("--model", required=True)
    run.add_argument("--api-key", default=os.environ.get("WAVE_API_KEY"))
    run.add_argument("--n", type=int, default=100)
    run.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    if args.step == "corpus":
        print(f"{make_corpus(args.directory, args.docs)} documents in {args.directory}")
    else:
        print(
            json.dumps(
                asyncio.run(measure(args.url, args.model, args.api_key, args.n, args.max_tokens)), indent=2
            )
        )


if __name__ == "__main__":
    main()
