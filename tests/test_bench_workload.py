"""Workloads: JSONL prompt files (with file:line errors), length distributions, word prompts."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from wavefleet.bench.criteria import parse_criteria
from wavefleet.bench.workload import JsonlWorkload, SyntheticWorkload, parse_length_dist
from wavefleet.errors import ConfigError, UsageError


def test_jsonl_reads_prompts_and_messages(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"prompt": "tell me a story", "max_tokens": 7}\n'
        "\n"
        '{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]}\n'
    )
    workload = JsonlWorkload(path, default_max_tokens=32)
    first, second, third = (s.next_turn(None) for s in itertools.islice(workload.sessions(), 3))
    assert first is not None and second is not None and third is not None
    assert first.messages == ({"role": "user", "content": "tell me a story"},)
    assert (first.max_tokens, first.estimated_prompt_tokens) == (7, 4)
    assert second.max_tokens == 32 and second.messages[0]["role"] == "system"
    assert third == first  # the file is cycled


def test_jsonl_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"prompt": "fine"}\n'
        "{not json\n"
        '{"prompt": "x", "messages": [{"role": "user", "content": "y"}]}\n'
        '{"prompt": "x", "max_tokens": 0}\n'
        '{"promt": "typo"}\n'
    )
    with pytest.raises(ConfigError) as caught:
        JsonlWorkload(path)
    lines = [problem.line for problem in caught.value.problems]
    assert lines == [2, 3, 4, 5]
    text = str(caught.value)
    assert f"{path}:2: not valid JSON" in text
    assert "exactly one of 'prompt' or 'messages'" in text
    assert f"{path}:5: promt" in text


def test_empty_jsonl_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(ConfigError, match="no prompts"):
        JsonlWorkload(path)


def test_length_distributions() -> None:
    rng = np.random.default_rng(0)
    uniform = parse_length_dist("uniform:0.5")
    samples = [uniform.sample(rng, 100) for _ in range(5000)]
    assert min(samples) == 50 and max(samples) == 150  # [L*(1-R), L*(1+R)], inclusive
    normal = parse_length_dist("normal:0.1")
    samples = [normal.sample(rng, 200) for _ in range(5000)]
    assert np.mean(samples) == pytest.approx(200, rel=0.02)
    assert np.std(samples) == pytest.approx(20, rel=0.1)
    assert parse_length_dist("fixed").sample(rng, 64) == 64
    for bad in ("uniform:2", "gauss", "normal:x"):
        with pytest.raises(UsageError, match="length distribution"):
            parse_length_dist(bad)


def test_synthetic_prompts_have_the_asked_number_of_words() -> None:
    workload = SyntheticWorkload(input_len=50, output_len=9, seed=4)
    turns = [s.next_turn(None) for s in itertools.islice(workload.sessions(), 20)]
    assert all(t is not None and len(t.messages[0]["content"].split()) == 50 for t in turns)
    assert len({t.messages[0]["content"] for t in turns if t}) == 20  # no accidental shared prefix


def test_criteria_parsing() -> None:
    parsed = parse_criteria("p95_ttft_ms<50, output_tps>=120,error_rate<0.01", with_goodput=False)
    assert [str(c) for c in parsed] == ["p95_ttft_ms<50", "output_tps>=120", "error_rate<0.01"]
    assert parsed[0].percentile == 95
    for bad in ("p95_ttft_ms=50", "ttft<5", "p101_ttft_ms<1", "", "output_tps>fast"):
        with pytest.raises(UsageError, match="bad criterion"):
            parse_criteria(bad, with_goodput=False)
