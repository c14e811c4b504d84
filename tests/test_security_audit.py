"""The audit trail: batched off the request path, flushed on close, queried and exported."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from pathlib import Path

from click.testing import CliRunner

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
    deadline = time.monotonic() + 5
    while writer.written < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.written >= 20  # written while the gateway runs, not only at shutdown
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
    assert result.exit_code != 0 and "no database" in str(result.exception)
    assert not (tmp_path / "none.db").exists()
    result = runner.invoke(audit, ["--db", str(tmp_path / "none.db"), "--since", "yesterday-ish"])
    assert result.exit_code != 0
    assert parse_time("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_time("2026-11-27T13:05") == 1795784700.0
