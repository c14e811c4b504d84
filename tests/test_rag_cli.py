"""`wave rag` from the command line: ingest, search, list, drop, with the bundled model in-process."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from wavefleet.cli import cli


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_ingest_search_list_drop(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "car.md").write_text("# Car\n\n## Tyres\n\nWinter tyres go on in November.\n")
    (notes / "bins.txt").write_text("Recycling is collected on Thursdays.")
    data = ["--data-dir", str(tmp_path / "rag")]
    code, out = invoke(
        "rag",
        "ingest",
        str(notes),
        "-c",
        "home",
        "--engine",
        "local",
        "--chunk-tokens",
        "64",
        "--overlap-tokens",
        "8",
        *data,
    )
    assert code == 0, out
    assert "2 added" in out and "chunks/s" in out
    code, out = invoke(
        "rag", "search", "home", "when do winter tyres go on", "--engine", "local", "--json", *data
    )
    hits = json.loads(out)["hits"]
    assert Path(hits[0]["source"]).name == "car.md" and hits[0]["heading"] == "Car > Tyres"
    code, out = invoke("rag", "ingest", str(notes), "-c", "home", "--engine", "local", *data)
    assert "0 to ingest, 2 unchanged" in out
    code, out = invoke("rag", "list", *data)
    assert "home" in out and "all-minilm-l6-v2" in out
    code, out = invoke("rag", "drop", "home", "--yes", *data)
    assert code == 0 and not (tmp_path / "rag" / "collections" / "home").exists()


def test_mistakes_get_a_message_and_exit_2(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "rag")]
    result = CliRunner().invoke(cli, ["rag", "search", "nothing", "x", "--engine", "local", *data])
    assert result.exit_code != 0 and "wave rag ingest" in str(result.exception)
    result = CliRunner().invoke(
        cli, ["rag", "ingest", str(tmp_path / "missing"), "-c", "x", "--engine", "local", *data]
    )
    assert "no such file or directory" in str(result.exception)


def test_help_teaches_with_examples() -> None:
    code, out = invoke("rag", "--help")
    assert code == 0 and "wave rag ingest" in out and "rag/notes" in out
    code, out = invoke("rag", "ingest", "--help")
    assert "Incremental" in out and "Examples" in out
