"""Operator events: one row per action a person or a CI job runs (fetch, quantize, check a model).

The request audit trail (`audit.py`) records what clients asked the gateway; this table records
what operators did to the fleet, in the same database (`wave.db`, table `events`):

    actor    who started it: WAVE_ACTOR when set (a CI job sets it, e.g. `jenkins:model-17`),
             else `user@host`
    action   what ran: `model.fetch`, `model.quantize`, `model.check` …
    subject  what it acted on: the file written or checked
    outcome  `ok` (done; the verdict is yes), `failed` (it ran and the verdict is no: a checksum
             mismatch, a check that does not pass), `error` (it could not run: a 404, a full disk)
    details  JSON: what changed and the numbers behind the verdict (bytes, sha256, seconds …)

One command writes one row, when it ends, in its own short transaction.

    record_event(path, Event(actor=default_actor(), action="model.fetch", subject="/srv/m.gguf",
                             outcome=Outcome.OK, details={"bytes": 98362432}))
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from wavefleet.errors import UsageError
from wavefleet.gateway.security.audit import storable
from wavefleet.gateway.security.db import connect

__all__ = [
    "EVENT_COLUMNS",
    "Event",
    "EventQuery",
    "Outcome",
    "default_actor",
    "query_events",
    "record_event",
]

EVENT_COLUMNS = ("ts", "actor", "action", "subject", "outcome", "details")
_INSERT = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    ERROR = "error"


@dataclass(frozen=True, kw_only=True)
class Event:
    """One operator action and how it ended."""

    actor: str
    action: str
    subject: str
    outcome: Outcome
    details: Mapping[str, object] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True, kw_only=True)
class EventQuery:
    since: float | None = None
    until: float | None = None
    actor: str | None = None
    action: str | None = None
    limit: int | None = None


def default_actor() -> str:
    """WAVE_ACTOR when set, else `user@host` of this process."""
    given = os.environ.get("WAVE_ACTOR", "").strip()
    if given:
        return given
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's random user)
        user = f"uid-{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def record_event(path: Path, event: Event) -> None:
    """Append `event` to the events table of the database at `path` (created and migrated if new).

    Raises UsageError when the database cannot be opened or written."""
    details = json.dumps(dict(event.details), sort_keys=True, default=str, ensure_ascii=False)
    row = storable((event.ts, event.actor, event.action, event.subject, event.outcome.value, details))
    db = connect(path)
    try:
        db.execute(_INSERT, row)
    except sqlite3.Error as exc:
        raise UsageError(f"cannot write the event to {path}: {exc}") from exc
    finally:
        db.close()


def query_events(db: sqlite3.Connection, query: EventQuery) -> Iterator[dict[str, object]]:
    """Events matching every filter given, oldest first; `details` as parsed JSON."""
    where, args = [], []
    for clause, value in (
        ("ts >= ?", query.since),
        ("ts < ?", query.until),
        ("actor = ?", query.actor),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    if query.action is not None:
        # `model` matches every model.* action; `model.fetch` only itself
        where.append("(action = ? OR action LIKE ? ESCAPE '\\')")
        escaped = query.action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args += [query.action, f"{escaped}.%"]
    sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY ts, id"
    if query.limit is not None:
        sql += f" LIMIT {int(query.limit)}"
    for row in db.execute(sql, args):
        event = dict(zip(EVENT_COLUMNS, row, strict=True))
        # a row some other program wrote that is not JSON is shown as the text it holds
        with contextlib.suppress(json.JSONDecodeError):
            event["details"] = json.loads(str(event["details"]))
        yield event
