"""The audit trail: batched off the request path, flushed on close, queried and exported."""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import run_wave, wait_until, wave_env
from wavefleet.cli.audit import audit, parse_time
from wavefleet.gateway.security.audit import AuditQuery, AuditRecord, AuditWriter, query_audit
from wavefleet.gateway.security.db import connect


def row(i: int, **changes: object) -> AuditRecord:
    fields: dict[str, object] = {
        "ts": 1_800_000_000.0 + i,
        "request_id": f"r{i}",
        "principal": "key:3f9a0c1d" if i % 2 else "oidc:alice",
        "client": "127.0.0.1",
        "method": "POST",
        "path": "/v1/chat/completions",
        "model": "m1" if i % 3 else "m2",
        "backend": "gpu",
        "status": 200 if i % 5 else 429,
        "error": None,
        "prompt_tokens": 12,
        "completion_tokens": 8,
        "latency_ms": 3.5,
        "screening": "",
    }
    fields.update(changes)
    return AuditRecord(**fields)  # type: ignore[arg-type]


def test_rows_are_written_in_batches_and_all_flushed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    writer = AuditWriter(path, interval_s=0.05, batch_rows=10)
    writer.start()
    for i in range(25):
        writer.record(row(i))
    wait_until(lambda: writer.written >= 20, timeout_s=5)  # written while running, not only at shutdown
    for i in range(25, 40):
        writer.record(row(i))
    writer.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM audit").fetchone()[0] == 40
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_filters(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    writer = AuditWriter(path)
    writer.start()
    for i in range(30):
        writer.record(row(i))
    writer.close()
    db = connect(path)
    assert len(list(query_audit(db, AuditQuery()))) == 30
    assert {r["principal"] for r in query_audit(db, AuditQuery(principal="3f9a0c1d"))} == {"key:3f9a0c1d"}
    assert len(list(query_audit(db, AuditQuery(status=429)))) == 6
    assert len(list(query_audit(db, AuditQuery(model="m2", principal="oidc:alice")))) == 5
    window = list(query_audit(db, AuditQuery(since=1_800_000_010.0, until=1_800_000_020.0)))
    assert [r["request_id"] for r in window] == [f"r{i}" for i in range(10, 20)]


def test_cli_exports_jsonl_and_csv(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    writer = AuditWriter(path)
    writer.start()
    for i in range(10):
        writer.record(row(i, screening="template_tokens" if i == 3 else ""))
    writer.close()
    runner = CliRunner()
    result = runner.invoke(audit, ["--db", str(path), "--format", "jsonl", "--status", "200"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 8 and lines[0]["time"].startswith("2027-01-15T")
    assert [line["screening"] for line in lines if line["screening"]] == ["template_tokens"]
    out = tmp_path / "export.csv"
    result = runner.invoke(
        audit, ["--db", str(path), "--format", "csv", "--key", "3f9a0c1d", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 5 and {r["principal"] for r in rows} == {"key:3f9a0c1d"}
    result = runner.invoke(audit, ["--db", str(path)])
    assert result.exit_code == 0 and "key:3f9a0c1d" in result.stdout


def test_cli_refuses_a_missing_database_and_bad_times(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(audit, ["--db", str(tmp_path / "none.db")])
    assert result.exit_code != 0 and "no audit database" in str(result.exception)
    assert not (tmp_path / "none.db").exists()
    result = runner.invoke(audit, ["--db", str(tmp_path / "none.db"), "--since", "yesterday-ish"])
    assert result.exit_code != 0
    assert parse_time("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_time("2026-11-27T13:05") == 1795784700.0


TEXT_COLUMNS = (
    "request_id",
    "principal",
    "client",
    "method",
    "path",
    "model",
    "backend",
    "error",
    "screening",
    "prompt",
)


def test_the_writer_survives_a_surrogate_in_every_text_column(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    writer = AuditWriter(path, interval_s=0.02, prompts=True)
    writer.start()
    # "\udcff" is what aiohttp makes of a raw 0xff header byte; "\udc80" a lone surrogate from JSON
    hostile = {name: f"{name}-\udcff-\udc80-\ud800" for name in TEXT_COLUMNS}
    writer.record(row(0, **hostile))
    writer.record(row(1, prompt_tokens=2**70))  # a number SQLite cannot hold
    for i in range(2, 12):
        writer.record(row(i))
    wait_until(lambda: writer.written >= 12, timeout_s=5)
    assert writer.health().ok
    writer.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM audit").fetchone()[0] == 12
    stored = dict(
        zip(
            TEXT_COLUMNS,
            db.execute(f"SELECT {', '.join(TEXT_COLUMNS)} FROM audit WHERE ts = ?", (row(0).ts,)).fetchone(),
            strict=True,
        )
    )
    for name, value in stored.items():
        assert value == f"{name}-\\udcff-\\udc80-\\ud800", name  # escaped, never dropped
    assert db.execute("SELECT prompt_tokens FROM audit WHERE ts = ?", (row(1).ts,)).fetchone() == (None,)


class _Poison:
    """A value whose conversion for SQLite raises what no `except Exception` catches."""

    def __conform__(self, protocol: object) -> object:
        raise SystemExit("poisoned row")


def test_a_writer_that_dies_anyway_says_so_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = AuditWriter(tmp_path / "wave.db", interval_s=0.02)
    writer.start()
    assert writer.health().ok
    with caplog.at_level(logging.ERROR, logger="wavefleet"):
        writer.record(row(0, model=_Poison()))
        wait_until(lambda: not writer.health().ok, timeout_s=5)
    health = writer.health()
    assert not health.ok and health.error is not None and "poisoned row" in health.error
    loud = [r for r in caplog.records if r.name.startswith("wavefleet.") and r.levelno >= logging.ERROR]
    assert loud and "audit" in loud[0].getMessage()
    writer.record(row(1))  # still queued: close() writes it on the caller's thread
    writer.close()
    assert sqlite3.connect(tmp_path / "wave.db").execute("SELECT count(*) FROM audit").fetchone()[0] == 1


def test_the_queue_is_bounded_and_drops_are_counted_and_logged_once_per_burst(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = AuditWriter(tmp_path / "wave.db", interval_s=0.02, max_pending=10)
    with caplog.at_level(logging.WARNING, logger="wavefleet"):
        for i in range(25):  # not started yet: nothing drains the queue
            writer.record(row(i))
        assert writer.dropped == 15 and writer.pending == 10
        burst_starts = [r for r in caplog.records if "full" in r.getMessage()]
        assert len(burst_starts) == 1 and burst_starts[0].name.startswith("wavefleet.")
        writer.start()
        wait_until(lambda: writer.written >= 10, timeout_s=5)
        # the burst's summary
        wait_until(lambda: any("dropped 15" in r.getMessage() for r in caplog.records), timeout_s=5)
        health = writer.health()
        assert health.counts["dropped"] == 15 and health.counts["written"] == 10
    writer.close()


HOSTILE_MODELS = [
    "[/bold]",
    "[link=https://evil.example]m1[/link]",
    "\x1b[2J\x1b[31mred",
    "\x9b2Jc1",
    "\u202eevil",
    ":smile:",
]


def _trail(path: Path, models: list[str]) -> None:
    writer = AuditWriter(path)
    writer.start()
    for i, model in enumerate(models):
        writer.record(row(i, model=model, principal="oidc:\x1b]8;;https://evil.example\x07sub"))
    writer.close()


def test_cli_table_shows_client_text_as_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    _trail(path, HOSTILE_MODELS)
    result = CliRunner().invoke(audit, ["--db", str(path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "[/bold]" in out and "[link=https://evil.example]m1[/link]" in out and ":smile:" in out
    for raw in ("\x1b", "\x9b", "\u202e", "\x07"):
        assert raw not in out, repr(raw)
    assert "\\x1b[2J\\x1b[31mred" in out and "\\x9b2Jc1" in out and "\\u202eevil" in out


def test_cli_jsonl_is_faithful_and_carries_no_raw_controls(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    _trail(path, HOSTILE_MODELS)
    result = CliRunner().invoke(audit, ["--db", str(path), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    for raw in ("\x1b", "\x9b", "\u202e", "\x07"):
        assert raw not in result.stdout, repr(raw)
    assert [json.loads(line)["model"] for line in result.stdout.splitlines()] == HOSTILE_MODELS


def test_cli_csv_neutralises_formula_cells(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    formulas = ['=HYPERLINK("https://evil.example","x")', "+1+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1"]
    _trail(path, [*formulas, "llama-3.1-8b"])
    out = tmp_path / "export.csv"
    result = CliRunner().invoke(audit, ["--db", str(path), "--format", "csv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == [*(f"'{f}" for f in formulas), "llama-3.1-8b"]
    assert {r["status"] for r in rows} <= {"200", "429"} and rows[0]["latency_ms"] == "3.5"


def _wave_audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_wave("audit", *args, env=env, timeout=60)


def test_cli_says_which_database_is_missing_and_how_to_point_at_the_right_one(tmp_path: Path) -> None:
    env = {**wave_env(), "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("WAVE_DB", None)
    done = _wave_audit(env=env)
    text = "".join(done.stderr.split())  # the console may fold a long path anywhere
    assert done.returncode == 2, done.stderr
    assert str(tmp_path / "data" / "wavefleet" / "wave.db") in text
    assert "waveserve--audit" in text and "--db" in text
    assert not (tmp_path / "data").exists()
    done = _wave_audit("--db", str(tmp_path / "none.db"), env=env)
    assert done.returncode == 2 and str(tmp_path / "none.db") in "".join(done.stderr.split())


def test_cli_says_when_the_trail_is_empty_or_nothing_matches(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    connect(path).close()  # a keys database: no audit rows
    done = _wave_audit("--db", str(path), env=wave_env())
    text = "".join(done.stderr.split())
    assert done.returncode == 0 and "empty" in text and str(path) in text and "waveserve--audit" in text
    _trail(path, ["m1", "m2"])
    done = _wave_audit("--db", str(path), "--model", "m3", "--format", "jsonl", env=wave_env())
    text = " ".join(done.stderr.split())
    assert done.returncode == 0 and done.stdout == "" and "no rows match" in text and "2 rows" in text
