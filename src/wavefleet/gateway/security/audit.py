"""The audit trail: one row per request, rejected ones included, written off the request path.

The request path only appends a tuple to a deque. A writer thread wakes every `interval_s`
(200 ms) or as soon as `batch_rows` (100) rows wait, whichever comes first, and writes what
waits in one transaction (SQLite, WAL mode). If the gateway is killed, the rows not yet
committed are lost: at most those of the last interval plus the batch being written. A clean
shutdown (`close()`) writes everything first.

Rows hold who (key id, OIDC subject, `static` or `anonymous`; never a key), from where, which
model and backend, status, tokens, latency and screening verdicts. Prompt text only with
`prompts=True` (`wave serve --audit-prompts`).

    writer = AuditWriter(path); writer.start()
    writer.record(AuditRecord(time.time(), "wave-1", "key:3f9a0c1d", "127.0.0.1", ...))
    writer.close()
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from wavefleet.gateway.security.db import connect

__all__ = ["AUDIT_COLUMNS", "AuditQuery", "AuditRecord", "AuditWriter", "query_audit"]


class AuditRecord(NamedTuple):
    """One row; a tuple already, so queuing it costs no conversion."""

    ts: float
    request_id: str
    principal: str
    client: str
    method: str
    path: str
    model: str | None
    backend: str | None
    status: int
    error: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float
    screening: str
    prompt: str | None = None


AUDIT_COLUMNS = AuditRecord._fields
_INSERT = f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})"


class AuditWriter:
    def __init__(
        self, path: Path, *, interval_s: float = 0.2, batch_rows: int = 100, prompts: bool = False
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self.batch_rows = batch_rows
        self.prompts = prompts
        self._db = connect(path)  # opened (and migrated) now, so a bad path fails at start-up
        self._pending: deque[AuditRecord] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="wave-audit", daemon=True)
        self.written = 0
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def record(self, row: AuditRecord) -> None:
        """Queue one row (cheap: a deque append; the thread does the SQLite work)."""
        self._pending.append(row)
        if len(self._pending) >= self.batch_rows:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self._flush()
            if self._stop:
                self._flush()
                return

    def _flush(self) -> None:
        pending = self._pending
        while pending:
            batch: list[AuditRecord] = []
            while pending and len(batch) < 1000:
                batch.append(pending.popleft())
            try:
                with self._db:
                    self._db.execute("BEGIN")
                    self._db.executemany(_INSERT, batch)
                self.written += len(batch)
            except sqlite3.Error:
                self.failures += 1  # a locked or full disk must not take the gateway down; rows are lost

    def close(self) -> None:
        """Write everything queued, stop the thread, close the database."""
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        else:
            self._flush()
        self._db.close()


@dataclass(frozen=True)
class AuditQuery:
    since: float | None = None
    until: float | None = None
    principal: str | None = None
    model: str | None = None
    status: int | None = None
    limit: int | None = None


def query_audit(db: sqlite3.Connection, query: AuditQuery) -> Iterator[dict[str, object]]:
    """Rows matching every filter given, oldest first."""
    where, args = [], []
    for clause, value in (
        ("ts >= ?", query.since),
        ("ts < ?", query.until),
        ("model = ?", query.model),
        ("status = ?", query.status),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    if query.principal is not None:
        # a bare key id matches `key:<id>`; `oidc:<sub>` and `static` match as they are
        where.append("(principal = ? OR principal = ?)")
        args += [query.principal, f"key:{query.principal}"]
    sql = f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY ts, id"
    if query.limit is not None:
        sql += f" LIMIT {int(query.limit)}"
    for row in db.execute(sql, args):
        yield dict(zip(AUDIT_COLUMNS, row, strict=True))
