"""Operator events: the `events` table beside the request audit, written per action, read by
`wave audit --events`."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from wavefleet.cli.audit import audit
from wavefleet.errors import UsageError
from wavefleet.gateway.security.db import MIGRATIONS, connect
from wavefleet.gateway.security.events import (
    Event,
    EventQuery,
    Outcome,
    default_actor,
    query_events,
    record_event,
)


def fetch_event(i: int, **changes: object) -> Event:
    fields: dict[str, object] = {
        "ts": 1_800_000_000.0 + i,
        "actor": "jenkins:model-17" if i % 2 else "alice@runner",
        "action": ("model.fetch", "model.quantize", "model.check")[i % 3],
        "subject": f"/srv/wavefleet/models/m{i}.gguf",
        "outcome": Outcome.OK if i % 4 else Outcome.FAILED,
        "details": {"bytes": 1000 + i, "sha256": "ab" * 32},
    }
    fields.update(changes)
    return Event(**fields)  # type: ignore[arg-type]


def test_an_event_is_stored_and_read_back_with_its_details(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    for i in range(6):
        record_event(path, fetch_event(i))
    db = connect(path)
    events = list(query_events(db, EventQuery()))
    assert [e["subject"] for e in events] == [f"/srv/wavefleet/models/m{i}.gguf" for i in range(6)]
    assert events[1]["details"] == {"bytes": 1001, "sha256": "ab" * 32}
    assert events[0]["outcome"] == "failed" and events[1]["outcome"] == "ok"
    # a family of actions, one action, an actor, a window
    assert len(list(query_events(db, EventQuery(action="model")))) == 6
    assert [e["action"] for e in query_events(db, EventQuery(action="model.check"))] == ["model.check"] * 2
    assert list(query_events(db, EventQuery(action="mode"))) == []  # a prefix is no family
    assert len(list(query_events(db, EventQuery(actor="alice@runner")))) == 3
    assert len(list(query_events(db, EventQuery(since=1_800_000_002.0, until=1_800_000_004.0)))) == 2
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_file_name_that_is_not_utf8_is_stored_escaped(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    odd = "/srv/models/caf\udce9.gguf"  # os.fsdecode of a Latin-1 name
    record_event(path, fetch_event(1, subject=odd, details={"source": odd}))
    (event,) = query_events(connect(path), EventQuery())
    assert event["subject"] == "/srv/models/caf\\udce9.gguf"
    assert event["details"] == {"source": odd}  # JSON keeps it as an escape of its own


def test_a_database_made_before_the_events_table_gains_it_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for step in MIGRATIONS[:2]:
        step(old)
        old.execute("INSERT INTO _migrations VALUES (?, 0)", (step.__name__,))
    old.execute("INSERT INTO audit (ts, principal, status) VALUES (1, 'static', 200)")
    old.close()
    record_event(path, fetch_event(1))
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM audit").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    assert "m003_events" in {row[0] for row in db.execute("SELECT name FROM _migrations")}


def test_the_actor_is_wave_actor_else_user_at_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVE_ACTOR", "jenkins:wavefleet-model-42")
    assert default_actor() == "jenkins:wavefleet-model-42"
    monkeypatch.setenv("WAVE_ACTOR", "  ")
    assert "@" in default_actor()


def test_wave_audit_events_shows_exports_and_filters(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    for i in range(6):
        record_event(path, fetch_event(i))
    runner = CliRunner()
    table = runner.invoke(audit, ["--db", str(path), "--events"])
    assert table.exit_code == 0, table.output
    assert "model.quantize" in table.output and "sha256=abab" in table.output
    assert "m5.gguf" in table.output
    lines = runner.invoke(
        audit, ["--db", str(path), "--events", "--action", "model.fetch", "--format", "jsonl"]
    )
    rows = [json.loads(line) for line in lines.output.splitlines()]
    assert [r["subject"] for r in rows] == ["/srv/wavefleet/models/m0.gguf", "/srv/wavefleet/models/m3.gguf"]
    assert rows[1]["details"]["bytes"] == 1003 and rows[1]["time"].startswith("2027-01-15T")
    out = tmp_path / "events.csv"
    done = runner.invoke(audit, ["--db", str(path), "--events", "--format", "csv", "--out", str(out)])
    assert done.exit_code == 0, done.output
    cells = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(cells) == 6 and json.loads(cells[0]["details"])["bytes"] == 1000
    assert set(cells[0]) == {"time", "ts", "actor", "action", "subject", "outcome", "details"}


def test_wave_audit_keeps_request_and_event_filters_apart(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    record_event(path, fetch_event(1))
    runner = CliRunner()
    refused(
        runner.invoke(audit, ["--db", str(path), "--events", "--status", "200"]), "--status filter requests"
    )
    refused(runner.invoke(audit, ["--db", str(path), "--action", "model"]), "add --events")
    # the request trail is untouched by events
    done = runner.invoke(audit, ["--db", str(path), "--format", "jsonl"])
    assert done.exit_code == 0 and done.stdout == ""


def test_wave_audit_events_says_why_nothing_shows(tmp_path: Path) -> None:
    path = tmp_path / "wave.db"
    connect(path).close()
    runner = CliRunner()
    done = runner.invoke(audit, ["--db", str(path), "--events"])
    said = " ".join(done.output.split())
    assert done.exit_code == 0 and "no events in" in said and "wave model fetch" in said
    record_event(path, fetch_event(1))
    done = runner.invoke(audit, ["--db", str(path), "--events", "--action", "rollout"])
    said = " ".join(done.output.split())  # the console folds long lines
    assert done.exit_code == 0 and "no events match" in said and "holds 1 event," in said
    refused(runner.invoke(audit, ["--db", str(tmp_path / "none.db"), "--events"]), "wave model fetch")
    assert not (tmp_path / "none.db").exists()


def refused(result: Result, text: str) -> None:
    """The command stopped on a UsageError (exit 2 under `wave`) that says `text`."""
    assert isinstance(result.exception, UsageError), result.output
    assert text in str(result.exception)
