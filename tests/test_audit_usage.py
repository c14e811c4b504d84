"""`wave audit --usage`: requests, tokens, energy and cost per key and model, from the audit trail;
and audit rows that wait for their energy."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from wavefleet.cli import cli
from wavefleet.gateway.security.audit import USAGE_COLUMNS, AuditRecord, AuditWriter
from wavefleet.gateway.security.db import MIGRATIONS, connect


def row(
    i: int, principal: str, model: str, completion: int, energy: tuple[float, float, float] | None
) -> AuditRecord:
    joules, idle, cost = energy if energy is not None else (None, None, None)
    return AuditRecord(
        ts=1_800_000_000.0 + i,
        request_id=f"r{i}",
        principal=principal,
        client="127.0.0.1",
        method="POST",
        path="/v1/chat/completions",
        model=model,
        backend="gpu",
        status=200,
        error=None,
        prompt_tokens=10,
        completion_tokens=completion,
        latency_ms=3.5,
        screening="",
        energy_j=joules,
        idle_j=idle,
        cost=cost,
        currency="EUR" if energy is not None else None,
    )


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    path = tmp_path / "wave.db"
    writer = AuditWriter(path)
    writer.start()
    for record in (
        row(0, "key:a", "m", 5, (10.0, 2.0, 0.001)),
        row(1, "key:a", "m", 10, (20.0, 4.0, 0.001)),
        row(2, "key:a", "m", 7, None),  # served where nothing is measured
        row(3, "key:b", "m", 12, (30.0, 6.0, 0.003)),
        row(4, "key:a", "r", 3, None),
    ):
        writer.record(record)
    writer.close()
    return path


def usage(path: Path, *args: str) -> list[dict[str, object]]:
    result = CliRunner().invoke(cli, ["audit", "--db", str(path), "--usage", "--format", "jsonl", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_usage_per_key_and_model_counts_energy_only_where_measured(trail: Path) -> None:
    lines = {(u["principal"], u["model"]): u for u in usage(trail)}
    a_m = lines[("key:a", "m")]
    assert a_m["requests"] == 3 and a_m["completion_tokens"] == 22 and a_m["measured"] == 2
    assert a_m["energy_j"] == 30.0 and a_m["idle_j"] == 6.0
    assert a_m["j_per_token"] == pytest.approx(36 / 15)  # the measured rows' joules over their tokens
    assert a_m["cost"] == pytest.approx(0.002) and a_m["currency"] == "EUR"
    a_r = lines[("key:a", "r")]
    assert a_r["measured"] == 0 and a_r["energy_j"] is None and a_r["j_per_token"] is None
    assert a_r["cost"] is None  # unknown, not zero
    [m, r] = usage(trail, "--by", "model")
    assert m["model"] == "m" and m["principal"] is None and m["requests"] == 4
    assert m["energy_j"] == 60.0 and m["j_per_token"] == pytest.approx(72 / 27)
    assert r["model"] == "r" and r["requests"] == 1
    [b] = usage(trail, "--by", "key", "--key", "b")
    assert b["principal"] == "key:b" and b["cost"] == pytest.approx(0.003)


def test_usage_as_a_table_and_csv(trail: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["audit", "--db", str(trail), "--usage"])
    assert result.exit_code == 0, result.output
    assert "J/token" in result.output and "2.400" in result.output and "0.002000 EUR" in result.output
    out = tmp_path / "usage.csv"
    result = CliRunner().invoke(
        cli, ["audit", "--db", str(trail), "--usage", "--format", "csv", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert tuple(rows[0]) == USAGE_COLUMNS and len(rows) == 3


def test_usage_refuses_what_it_cannot_mean(trail: Path) -> None:
    result = CliRunner().invoke(cli, ["audit", "--db", str(trail), "--usage", "--events"])
    assert result.exit_code != 0 and "--usage" in str(result.exception)
    result = CliRunner().invoke(cli, ["audit", "--db", str(trail), "--usage", "--limit", "3"])
    assert result.exit_code != 0 and "--limit" in str(result.exception)


class Pending:
    """A request's energy the meter has not settled yet (the audit writer's side of a Charge)."""

    def __init__(self) -> None:
        self.settled = False
        self.figures: tuple[float, float, float | None, str | None] | None = None

    def audit_figures(self) -> tuple[float, float, float | None, str | None] | None:
        return self.figures


def test_a_row_waits_for_its_energy_and_is_written_without_it_at_close(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    writer = AuditWriter(path, interval_s=0.01)
    writer.start()
    settled, unsettled = Pending(), Pending()
    writer.record(row(0, "key:a", "m", 5, None), settled)
    writer.record(row(1, "key:a", "m", 5, None), unsettled)
    writer.record(row(2, "key:a", "m", 5, None))
    db = connect(path)
    assert writer.pending >= 2  # the two metered rows wait
    settled.figures, settled.settled = (1.5, 0.5, 0.25, "EUR"), True
    writer.close()
    found = dict(db.execute("SELECT request_id, energy_j FROM audit").fetchall())
    assert found == {"r0": 1.5, "r1": None, "r2": None}
    assert db.execute("SELECT cost, currency FROM audit WHERE request_id = 'r0'").fetchone() == (0.25, "EUR")


def test_the_migration_adds_the_energy_columns_to_an_older_trail(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for step in MIGRATIONS[:3]:
        step(old)
        old.execute("INSERT INTO _migrations VALUES (?, 0)", (step.__name__,))
    old.execute("INSERT INTO audit (ts, principal, status) VALUES (1, 'static', 200)")
    old.commit()
    old.close()
    db = connect(path)
    assert db.execute("SELECT principal, energy_j, idle_j, cost, currency FROM audit").fetchall() == [
        ("static", None, None, None, None)
    ]
