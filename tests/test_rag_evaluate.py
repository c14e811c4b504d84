"""The evaluation's metrics and file formats."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from wavefleet.errors import UsageError
from wavefleet.rag.answer import cited_numbers, sources_footer
from wavefleet.rag.evaluate import answer_support, load_beir, load_labelled, mrr, ndcg, recall
from wavefleet.rag.retrieve import Hit


def test_ranking_metrics_by_hand() -> None:
    relevant = {"a": 1, "b": 1}
    assert ndcg(["a", "b", "c"], relevant) == pytest.approx(1.0)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg(["c", "a", "d"], relevant) == pytest.approx(expected)
    assert recall(["c", "a"], relevant, 2) == 0.5
    assert mrr(["c", "d", "b"], relevant) == pytest.approx(1 / 3)
    assert mrr(["c"], relevant) == 0.0


def test_answer_support_checks_citations_against_their_sources() -> None:
    sources = ["Winter tyres go on in November.", "The boiler is serviced in October."]
    faithful = "Winter tyres go on in November [1]. The boiler is serviced in October [2]."
    assert answer_support(faithful, sources) == (1.0, 1.0)
    swapped = "Winter tyres go on in November [2]."
    assert answer_support(swapped, sources)[0] == 0.0
    invented = "Winter tyres go on in March on Mars [7]."
    assert answer_support(invented, sources) == (0.0, 0.0)
    assert cited_numbers("see [2] and [1] and [2] and [9]", 2) == [2, 1]


def test_footer_names_what_is_cited() -> None:
    hits = [
        Hit(1, 1.0, "/n/car.md", None, None, "Car > Tyres", 36, 77, "x"),
        Hit(2, 0.5, "/n/b.pdf", None, 3, None, 0, 9, "y"),
    ]
    assert sources_footer(hits, [2]) == "\n\nSources:\n[2] /n/b.pdf p. 3 [0:9]"
    assert "Retrieved (not cited)" in sources_footer(hits, [])


def test_labelled_and_beir_files(tmp_path: Path) -> None:
    plain = tmp_path / "set.jsonl"
    plain.write_text(
        '{"query": "q?", "relevant": {"d1": 2, "d2": 0}}\n\n{"id": "x", "query": "r?", "relevant": ["d3"]}\n'
    )
    first, second = load_labelled(plain)
    assert first.relevant == {"d1": 2} and second.id == "x"
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "what?"}\n')
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n1\tdocA\t1\n1\tdocB\t0\n")
    [query] = load_beir(tmp_path / "queries.jsonl", tmp_path / "qrels.tsv")
    assert query.query == "what?" and query.relevant == {"docA": 1}
    plain.write_text('{"query": "q?", "relevant": "d1"}\n')
    with pytest.raises(UsageError, match=r"set.jsonl:1: `relevant`"):
        load_labelled(plain)
