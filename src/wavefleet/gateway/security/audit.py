"""The audit trail: one row per request, rejected ones included, written off the request path.

The request path only appends a tuple to a bounded deque. A writer thread wakes every
`interval_s` (200 ms) or as soon as `batch_rows` (100) rows wait, whichever comes first, and
writes what waits in one transaction (SQLite, WAL mode). If the gateway is killed, the rows not
yet committed are lost: at most those of the last interval plus the batch being written. A
clean shutdown (`close()`) writes everything first.

Rows hold who (key id, OIDC subject, `static` or `anonymous`; never a key), from where, which
model and backend, status, tokens, latency and screening verdicts. Prompt text only with
`prompts=True` (`wave serve --audit-prompts`).

Clients control several columns (request id, model, prompt), so the writer takes any row: text
SQLite cannot store as UTF-8 (lone surrogates, which is what aiohttp makes of non-UTF-8 header
bytes) is stored backslash-escaped (`\\udcff`), numbers SQLite cannot hold are stored as NULL.
It never stops silently: a failed batch, a full queue or a dead thread is logged (logger
`wavefleet.gateway.security.audit`) and shown by `health()` (the gateway's /health) and by the
`wave_audit_*` metrics. When `max_pending` rows wait, new rows are dropped and counted
(`dropped`), with one log line when dropping starts and one when it ends.

    writer = AuditWriter(path); writer.start()
    writer.record(AuditRecord(time.time(), "wave-1", "key:3f9a0c1d", "127.0.0.1", ...))
    writer.close()
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from wavefleet.gateway.health import PartHealth
from wavefleet.gateway.security.db import connect
from wavefleet.gateway.security.settings import DEFAULT_MAX_PENDING

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = [
    "AUDIT_COLUMNS",
    "AuditCollector",
    "AuditQuery",
    "AuditRecord",
    "AuditWriter",
    "query_audit",
    "storable",
]

_LOG = logging.getLogger(__name__)
_INT64 = range(-(2**63), 2**63)


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


def storable(row: Iterable[object]) -> tuple[object, ...]:
    """The row with every value SQLite can take: text escaped where it is not valid UTF-8
    (lone surrogates become `\\udcff`), integers outside 64 bits as NULL, anything else as text."""
    values: list[object] = []
    for value in row:
        if isinstance(value, str):
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        elif isinstance(value, int):
            value = value if value in _INT64 else None
        elif value is not None and not isinstance(value, float | bytes):
            value = repr(value).encode("utf-8", "backslashreplace").decode("utf-8")
        values.append(value)
    return tuple(values)


class AuditWriter:
    def __init__(
        self,
        path: Path,
        *,
        interval_s: float = 0.2,
        batch_rows: int = 100,
        prompts: bool = False,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self.batch_rows = batch_rows
        self.prompts = prompts
        self.max_pending = max_pending
        self._db = connect(path)  # opened (and migrated) now, so a bad path fails at start-up
        self._pending: deque[AuditRecord] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._started = False
        self._thread = threading.Thread(target=self._run, name="wave-audit", daemon=True)
        self.written = 0  # rows committed
        self.failures = 0  # batches the database refused (locked, disk full, ...)
        self.lost = 0  # rows in those batches
        self.dropped = 0  # rows refused because max_pending rows were waiting
        self._dropping = False  # a burst of drops is under way (its first drop was logged)
        self._drops_reported = 0
        self._error: str | None = None  # why the last batch failed; None once one succeeds
        self._death: str | None = None  # why the thread ended, if it ended on an exception

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def record(self, row: AuditRecord) -> None:
        """Queue one row (cheap: a deque append; the thread does the SQLite work), or drop it if
        the queue is full."""
        pending = self._pending
        if len(pending) >= self.max_pending:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                _LOG.warning(
                    "audit queue full (%d rows wait for %s): dropping audit rows until the writer catches up",
                    len(pending),
                    self.path,
                )
            return
        pending.append(row)
        if len(pending) >= self.batch_rows:
            self._wake.set()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self.interval_s)
                self._wake.clear()
                self._flush()
                if self._stop:
                    self._flush()
                    return
        except BaseException as exc:  # whatever it was, the gateway must hear of it
            death = f"{type(exc).__name__}: {exc}"
            _LOG.critical(
                "the audit writer stopped (%s): no more audit rows reach %s; /health fails until "
                "the gateway is restarted",
                death,
                self.path,
                exc_info=exc,
            )
            self._death = death  # after the log line: whoever sees /health fail finds it logged

    def _write(self, batch: list[AuditRecord] | list[tuple[object, ...]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(_INSERT, batch)

    def _flush(self) -> None:
        pending = self._pending
        while pending:
            batch: list[AuditRecord] = []
            while pending and len(batch) < 1000:
                batch.append(pending.popleft())
            try:
                try:
                    self._write(batch)
                except sqlite3.OperationalError:
                    raise  # locked or full: the rows are fine, the database is not
                except Exception:  # a value SQLite cannot take, from a client or an upstream
                    self._write([storable(row) for row in batch])
            except Exception as exc:  # a locked or full disk must not take the gateway down
                self.failures += 1
                self.lost += len(batch)
                self._error = f"{type(exc).__name__}: {exc}"
                _LOG.error("%d audit rows could not be written to %s: %s", len(batch), self.path, self._error)
            else:
                self.written += len(batch)
                self._error = None
        self._report_drops()

    def _report_drops(self) -> None:
        dropped = self.dropped
        if dropped != self._drops_reported:
            _LOG.warning(
                "audit queue has room again: dropped %d rows while it was full (%d since start; "
                "raise security.audit_max_pending or find what slows %s)",
                dropped - self._drops_reported,
                dropped,
                self.path,
            )
            self._drops_reported = dropped
            self._dropping = False

    def health(self) -> PartHealth:
        """ok while rows are being written; else why not (for /health)."""
        counts = {
            "written": self.written,
            "pending": len(self._pending),
            "dropped": self.dropped,
            "lost": self.lost,
        }
        if self._death is None and self._started and not self._stop and not self._thread.is_alive():
            self._death = "ended"
        if self._death is not None:
            state = "stopped"
            error = (
                f"the audit writer stopped ({self._death}): no rows reach {self.path}; restart the gateway"
            )
        elif self._dropping:
            state = "dropping"
            error = f"the audit queue is full ({self.max_pending} rows): rows are dropped"
        elif self._error is not None:
            state = "failing"
            error = f"the last audit batch could not be written to {self.path}: {self._error}"
        else:
            return PartHealth(ok=True, state="writing", counts=counts)
        return PartHealth(ok=False, state=state, error=error, counts=counts)

    def close(self) -> None:
        """Write everything queued, stop the thread, close the database."""
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        else:
            self._flush()
        self._db.close()


class AuditCollector:
    """The writer's counters as Prometheus metrics, read at scrape time."""

    def __init__(self, writer: AuditWriter) -> None:
        self._writer = writer

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        writer = self._writer
        yield CounterMetricFamily("wave_audit_rows_written", "Audit rows committed", value=writer.written)
        yield CounterMetricFamily(
            "wave_audit_rows_dropped", "Audit rows dropped because the queue was full", value=writer.dropped
        )
        yield CounterMetricFamily(
            "wave_audit_rows_lost", "Audit rows in batches the database refused", value=writer.lost
        )
        yield GaugeMetricFamily("wave_audit_rows_pending", "Audit rows waiting", value=writer.pending)
        yield GaugeMetricFamily(
            "wave_audit_writer_up", "1 while the audit trail is written", value=float(writer.health().ok)
        )


@dataclass(frozen=True, kw_only=True)
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
