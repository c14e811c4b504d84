"""`wave catalog list` and `wave catalog show`, through click and through the real entry point."""

from __future__ import annotations

import json

from helpers import invoke_wave, run_wave
from wavefleet.catalog import KIND_FILES, Catalog
from wavefleet.errors import UnknownIdError


def run(*args: str) -> tuple[int, str, BaseException | None]:
    result = invoke_wave("catalog", *args)
    return result.exit_code, result.output, result.exception


def test_list_json_has_every_kind_and_every_id() -> None:
    code, output, _ = run("list", "--format", "json")
    assert code == 0
    data = json.loads(output)
    assert set(data) == set(KIND_FILES)
    catalog = Catalog.load()
    assert [entry["id"] for entry in data["services"]] == sorted(catalog.services)
    assert all(entry["sources"] for entries in data.values() for entry in entries)


def test_list_one_kind_as_table() -> None:
    code, output, _ = run("list", "--kind", "hardware")
    assert code == 0
    assert "rtx-5070-ti" in output and "jetson-orin-nano-super" in output
    assert "llama-3.1-8b" not in output


def test_list_rejects_unknown_kind() -> None:
    code, output, _ = run("list", "--kind", "gpus")
    assert code == 2 and "gpus" in output


def test_show_table_lists_fields_and_sources() -> None:
    code, output, _ = run("show", "llama-3.1-8b")
    assert code == 0
    assert "kv_heads" in output and "head_dim" in output
    assert "config.json" in output


def test_show_json_returns_the_entry() -> None:
    code, output, _ = run("show", "q4_k_m", "--format", "json")
    assert code == 0
    data = json.loads(output)
    assert data["kind"] == "quantizations" and data["entry"]["bits_per_weight"] == 4.89


def test_show_id_in_two_kinds_shows_both() -> None:
    code, output, _ = run("show", "ngc", "--format", "json")
    assert code == 0
    assert {item["kind"] for item in json.loads(output)} == {"services", "memberships"}


def test_show_unknown_id_raises_with_suggestions() -> None:
    _, _, exception = run("show", "rtx-5070ti")
    assert isinstance(exception, UnknownIdError)
    assert "rtx-5070-ti" in exception.suggestions


def test_unknown_id_exits_2_through_the_entry_point() -> None:
    result = run_wave("catalog", "show", "qwen3-8", timeout=60)
    assert result.returncode == 2
    assert "qwen3-8b" in result.stderr and result.stdout == ""


def test_help_has_examples() -> None:
    code, output, _ = run("--help")
    assert code == 0 and "wave catalog show rtx-5070-ti" in output
