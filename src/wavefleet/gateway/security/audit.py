"""The audit trail: one row per request, rejected ones included, written off the request path.

The request path only appends a tuple to a bounded deque. A writer thread wakes every
`interval_s` (200 ms) or as soon as `batch_rows` (100) rows wait, whichever comes first, and
writes what waits in one transaction (SQLite, WAL mode). If the gateway is killed, the rows not
yet committed are lost: at most those of the last interval plus the batch being written. A
clean shutdown (`close()`) writes everything first.

Rows hold who (key id, OIDC subject, `static` or `anonymous`; never a key), from where, which
model and backend, status, tokens, latency and screening verdicts, and with telemetry on the
request's energy, its share of the idle draw and their cost (NULL when not measured). Prompt
text only with `prompts=True` (`wave serve --audit-prompts`).

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
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from wavefleet.gateway.health import PartHealth
from wavefleet.gateway.security.db import connect, select_oldest_first
from wavefleet.gateway.security.settings import DEFAULT_MAX_PENDING

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = [
    "AUDIT_COLUMNS",
    "AuditCollector",
    "AuditQuery",
    "AuditRecord",
    "AuditWriter",
    "USAGE_COLUMNS",
    "USAGE_GROUPS",
    "query_audit",
    "query_usage",
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
    energy_j: float | None = None
    idle_j: float | None = None
    cost: float | None = None
    currency: str | None = None


class MeteredEnergy(Protocol):
    """A request's energy as the gateway's meter settles it (gateway/energy.py's `Charge`)."""

    @property
    def settled(self) -> bool: ...
    def audit_figures(self) -> tuple[float, float, float | None, str | None] | None: ...


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
        energy_wait_s: float = 30.0,
    ) -> None:
        self.path = path
        self.energy_wait_s = energy_wait_s
        self.interval_s = interval_s
        self.batch_rows = batch_rows
        self.prompts = prompts
        self.max_pending = max_pending
        self._db = connect(path)  # opened (and migrated) now, so a bad path fails at start-up
        self._pending: deque[AuditRecord] = deque()
        # rows whose energy the meter settles a moment after the request ends (with telemetry on)
        self._metering: deque[tuple[AuditRecord, MeteredEnergy, float]] = deque()
        self._held: list[tuple[AuditRecord, MeteredEnergy, float]] = []  # the writer thread's own
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
        return len(self._pending) + len(self._metering) + len(self._held)

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def record(self, row: AuditRecord, energy: MeteredEnergy | None = None) -> None:
        """Queue one row (cheap: a deque append; the thread does the SQLite work), or drop it if
        the queue is full. With `energy`, the row waits (up to `energy_wait_s`) until the meter
        has settled the request's energy and cost, and is written with them."""
        pending = self._pending
        if len(pending) + len(self._metering) >= self.max_pending:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                _LOG.warning(
                    "audit queue full (%d rows wait for %s): dropping audit rows until the writer catches up",
                    len(pending),
                    self.path,
                )
            return
        if energy is not None:
            self._metering.append((row, energy, time.monotonic()))
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
                    self._flush(final=True)
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

    def _metered(self, *, final: bool) -> None:
        """Move the rows whose energy is settled (or waited too long, or the writer stops) to the queue."""
        while self._metering:
            self._held.append(self._metering.popleft())
        now, keep = time.monotonic(), []
        for row, energy, since in self._held:
            if energy.settled:
                figures = energy.audit_figures()
                if figures is not None:
                    joules, idle, cost, currency = figures
                    row = row._replace(energy_j=joules, idle_j=idle, cost=cost, currency=currency)
                self._pending.append(row)
            elif final or now - since > self.energy_wait_s:
                self._pending.append(row)  # its energy stays unknown: NULL, not zero
            else:
                keep.append((row, energy, since))
        self._held = keep

    def _flush(self, *, final: bool = False) -> None:
        self._metered(final=final)
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
            self._flush(final=True)
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


USAGE_GROUPS = {"key": ("principal",), "model": ("model",), "both": ("principal", "model")}
USAGE_COLUMNS = (
    "principal",
    "model",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "measured",
    "energy_j",
    "idle_j",
    "j_per_token",
    "cost",
    "currency",
)


def query_usage(
    db: sqlite3.Connection, query: AuditQuery, *, by: str = "both"
) -> Iterator[dict[str, object]]:
    """Requests, tokens, energy and cost per key, per model or per both (`by`), of the rows matching `query`.

    `measured` counts the rows with energy; `energy_j` and `idle_j` sum theirs (None when none
    has any), `j_per_token` is their energy and idle share over their completion tokens. `cost`
    sums the rows' costs when they share one currency (None when none has a cost, or currencies
    differ: `currency` then lists them)."""
    group = USAGE_GROUPS[by]
    where, args = _usage_where(query)
    sql = f"""SELECT {", ".join(group)}, count(*), sum(prompt_tokens), sum(completion_tokens),
        count(energy_j), sum(energy_j), sum(idle_j),
        sum(CASE WHEN energy_j IS NOT NULL THEN completion_tokens END),
        sum(cost), count(DISTINCT currency), group_concat(DISTINCT currency)
        FROM audit{where} GROUP BY {", ".join(group)} ORDER BY {", ".join(group)}"""
    for row in db.execute(sql, args):
        keys = dict(zip(group, row[: len(group)], strict=True))
        requests, prompt, completion, measured, joules, idle, measured_tokens, cost, currencies, currency = (
            row[len(group) :]
        )
        whole = joules + idle if joules is not None and idle is not None else None
        yield {
            "principal": keys.get("principal"),
            "model": keys.get("model"),
            "requests": requests,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "measured": measured,
            "energy_j": joules,
            "idle_j": idle,
            "j_per_token": whole / measured_tokens if whole is not None and measured_tokens else None,
            "cost": cost if currencies == 1 else None,
            "currency": currency,
        }


def query_audit(db: sqlite3.Connection, query: AuditQuery) -> Iterator[dict[str, object]]:
    """Rows matching every filter given, oldest first."""
    where: list[tuple[str, Sequence[object]]] = [
        (clause, [value])
        for clause, value in (
            ("ts >= ?", query.since),
            ("ts < ?", query.until),
            ("model = ?", query.model),
            ("status = ?", query.status),
        )
        if value is not None
    ]
    if query.principal is not None:
        # a bare key id matches `key:<id>`; `oidc:<sub>` and `static` match as they are
        where.append(("(principal = ? OR principal = ?)", [query.principal, f"key:{query.principal}"]))
    for row in select_oldest_first(db, table="audit", columns=AUDIT_COLUMNS, where=where, limit=query.limit):
        yield dict(zip(AUDIT_COLUMNS, row, strict=True))


def _usage_where(query: AuditQuery) -> tuple[str, list[object]]:
    """`query`'s filters as a WHERE clause, as query_audit applies them."""
    where: list[str] = []
    args: list[object] = []
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
    return (" WHERE " + " AND ".join(where) if where else ""), args
