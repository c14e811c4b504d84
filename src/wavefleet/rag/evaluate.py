"""Measuring retrieval and answers against a labelled set.

A labelled set is JSONL, one query a line:

    {"id": "q01", "query": "When does the finally clause run?", "relevant": ["try", "compound"],
     "answer": "finally"}

`relevant` lists document ids (a file's name without its suffix), or maps them to graded
relevance (`{"try": 2, "compound": 1}`); `answer`, optional, is a phrase the right text
contains. BEIR's layout is read too: `queries.jsonl` ({"_id", "text"}) with a qrels TSV
(`query-id  corpus-id  score`, a header line first).

Metrics, per query then averaged: nDCG@10 (graded, log2 discount), recall@k, MRR@10 (over
documents, each ranked by its best chunk), and `answer_in_context@k`: whether one of the top k
chunks holds the answer phrase (whitespace and case aside). For generated answers:
`citation_valid` (cites only sources it was given), `cited_answer` (a cited source holds the
answer phrase) and `supported` (each cited sentence's words are found in its cited sources).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from wavefleet.errors import UsageError
from wavefleet.rag.config import RetrievalSettings
from wavefleet.rag.retrieve import Retriever

__all__ = [
    "BUNDLED_CORPUS",
    "BUNDLED_QUERIES",
    "LabelledQuery",
    "answer_support",
    "contains_answer",
    "doc_id",
    "evaluate_answers",
    "evaluate_retrieval",
    "load_beir",
    "load_labelled",
    "mrr",
    "ndcg",
    "recall",
    "write_corpus",
]

BUNDLED_QUERIES = "pydoc_queries.jsonl"
BUNDLED_CORPUS = "pydoc_topics.jsonl"


@dataclass(frozen=True)
class LabelledQuery:
    id: str
    query: str
    relevant: dict[str, int]
    answer: str | None = None


@dataclass
class Scores:
    """Sums of per-query scores; `mean()` divides by the count."""

    count: int = 0
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, **values: float) -> None:
        self.count += 1
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value

    def mean(self) -> dict[str, float]:
        return {k: v / self.count for k, v in self.sums.items()} if self.count else {}


def doc_id(path: str) -> str:
    """A document's id in a labelled set: its file name without the suffix."""
    return Path(path).stem


def _relevance(value: object, where: str) -> dict[str, int]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return dict.fromkeys(value, 1)
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, int) for k, v in value.items()):
        return {k: v for k, v in value.items() if v > 0}
    raise UsageError(f"{where}: `relevant` must be a list of document ids or an object of id -> grade")


def load_labelled(path: Path | None = None) -> list[LabelledQuery]:
    """The labelled set at `path`, or the bundled one (77 questions over Python's pydoc topics)."""
    if path is None:
        text = resources.files("wavefleet.rag").joinpath("data", BUNDLED_QUERIES).read_text(encoding="utf-8")
        where = BUNDLED_QUERIES
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{path}: cannot read it ({exc.strerror})") from exc
        where = str(path)
    queries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{where}:{number}: not JSON ({exc})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("query"), str):
            raise UsageError(f'{where}:{number}: each line needs "query" (text) and "relevant" (ids)')
        relevant = _relevance(row.get("relevant"), f"{where}:{number}")
        answer = row.get("answer") if isinstance(row.get("answer"), str) else None
        queries.append(LabelledQuery(str(row.get("id", number)), row["query"], relevant, answer))
    if not queries:
        raise UsageError(f"{where}: no queries in it")
    return queries


def load_beir(queries_path: Path, qrels_path: Path) -> list[LabelledQuery]:
    """BEIR's queries.jsonl and a qrels TSV (query-id, corpus-id, score; first line a header)."""
    texts: dict[str, str] = {}
    for number, line in enumerate(queries_path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
                texts[str(row["_id"])] = str(row["text"])
            except (ValueError, KeyError, TypeError) as exc:
                raise UsageError(f'{queries_path}:{number}: BEIR queries need "_id" and "text"') from exc
    relevant: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    for number, row in enumerate(rows[1:], start=2):
        if len(row) < 3:
            raise UsageError(
                f"{qrels_path}:{number}: a qrels line is query-id, corpus-id, score (tab-separated)"
            )
        try:
            grade = int(row[2])
        except ValueError as exc:
            raise UsageError(f"{qrels_path}:{number}: the score {row[2]!r} is not an integer") from exc
        if grade > 0:
            relevant.setdefault(row[0], {})[row[1]] = grade
    missing = sorted(q for q in relevant if q not in texts)
    if missing:
        raise UsageError(f"{qrels_path}: queries {missing[:5]} are not in {queries_path}")
    return [LabelledQuery(q, texts[q], rel) for q, rel in relevant.items()]


def write_corpus(directory: Path, corpus: Path | None = None) -> list[Path]:
    """Write a BEIR corpus.jsonl ({"_id", "title", "text"}) as one text file per document,
    named by its id, and return the files (the bundled pydoc topics when `corpus` is None)."""
    if corpus is None:
        text = resources.files("wavefleet.rag").joinpath("data", BUNDLED_CORPUS).read_text(encoding="utf-8")
    else:
        text = corpus.read_text(encoding="utf-8")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for line in text.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(row["_id"]))
        path = directory / f"{name}.txt"
        body = str(row.get("text", ""))
        title = str(row.get("title") or "")
        content = body if body.startswith(title) else f"{title}\n\n{body}" if title else body
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


# retrieval metrics ------------------------------------------------------------------------


def ndcg(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    gains = [(2 ** relevant.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k])]
    ideal = sorted(relevant.values(), reverse=True)[:k]
    best = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return sum(gains) / best if best > 0 else 0.0


def recall(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


def mrr(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if d in relevant:
            return 1.0 / (i + 1)
    return 0.0


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


def contains_answer(text: str, answer: str) -> bool:
    return _normal(answer) in _normal(text)


_WORD = re.compile(r"[a-z0-9_]+")
_STOP = frozenset(
    "a an and are as at be by can do does for from has have how i if in is it its of on or that the "
    "this to was what when which with you your not no".split()
)


def answer_support(answer: str, sources: Sequence[str]) -> tuple[float, float]:
    """(share of cited sentences whose content words are mostly in their cited sources, share of
    citations that name a source given). A sentence counts as supported when at least 60% of its
    words (stop words aside) appear in the sources it cites."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", answer) if s.strip()]
    cited_sentences = supported = citations = valid = 0
    for sentence in sentences:
        numbers = [int(n) for n in re.findall(r"\[(\d{1,3})\]", sentence)]
        if not numbers:
            continue
        cited_sentences += 1
        citations += len(numbers)
        given = [sources[n - 1] for n in numbers if 1 <= n <= len(sources)]
        valid += len(given)
        words = {w for w in _WORD.findall(re.sub(r"\[\d+\]", " ", sentence.lower())) if w not in _STOP}
        if not words or not given:
            continue
        vocabulary = set(_WORD.findall(" ".join(given).lower()))
        if len(words & vocabulary) / len(words) >= 0.6:
            supported += 1
    return (
        supported / cited_sentences if cited_sentences else 0.0,
        valid / citations if citations else 0.0,
    )


async def evaluate_retrieval(
    retriever: Retriever,
    queries: Sequence[LabelledQuery],
    settings: RetrievalSettings,
    *,
    context_k: int = 5,
) -> dict[str, float]:
    """Mean nDCG@10, recall@5, recall@10, MRR@10 and answer_in_context@`context_k` over `queries`;
    plus the mean retrieval time (embedding the query included) in ms."""
    scores = Scores()
    deep = settings.model_copy(update={"top_k": max(50, settings.top_k)})
    for item in queries:
        result = await retriever.search(item.query, deep)
        ranked: list[str] = []
        for hit in result.hits:
            name = doc_id(hit.path)
            if name not in ranked:
                ranked.append(name)
        context = " ".join(h.text for h in result.hits[:context_k])
        values = {
            "ndcg@10": ndcg(ranked, item.relevant),
            "recall@5": recall(ranked, item.relevant, 5),
            "recall@10": recall(ranked, item.relevant, 10),
            "mrr@10": mrr(ranked, item.relevant),
            "ms": result.embed_ms + result.search_ms,
        }
        if item.answer is not None:
            values[f"answer_in_context@{context_k}"] = float(contains_answer(context, item.answer))
        scores.add(**values)
    return scores.mean()


async def evaluate_answers(
    retriever: Retriever,
    queries: Sequence[LabelledQuery],
    settings: RetrievalSettings,
    *,
    url: str,
    model: str,
    api_key: str | None = None,
    max_tokens: int = 128,
) -> dict[str, float]:
    """Generate an answer per query from its retrieved sources (the prompt `rag/NAME` uses) at
    an OpenAI endpoint, then score it: `supported` and `citation_valid` (answer_support),
    `cited` (the answer cites at least one source) and `cited_answer` (a cited source holds the
    labelled answer phrase)."""
    import aiohttp

    from wavefleet.errors import EngineError
    from wavefleet.rag.answer import build_messages, cited_numbers

    scores = Scores()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    endpoint = url.rstrip("/") + "/chat/completions"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        for item in queries:
            result = await retriever.search(item.query, settings)
            messages = build_messages([{"role": "user", "content": item.query}], result.hits)
            body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
            async with session.post(endpoint, json=body, headers=headers) as reply:
                payload = await reply.json(content_type=None)
                if reply.status != 200:
                    raise EngineError(f"{endpoint} answered {reply.status}: {payload}")
            text = str(payload["choices"][0]["message"].get("content") or "")
            sources = [hit.text for hit in result.hits]
            supported, valid = answer_support(text, sources)
            cited = cited_numbers(text, len(sources))
            holds = item.answer is not None and any(
                contains_answer(sources[n - 1], item.answer) for n in cited
            )
            scores.add(
                supported=supported, citation_valid=valid, cited=float(bool(cited)), cited_answer=float(holds)
            )
    return scores.mean()
