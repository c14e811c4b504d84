"""`wave audit`: query and export the gateway's audit trail."""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import click
from rich.console import Console
from rich.table import Table

from wavefleet.errors import UsageError
from wavefleet.files import atomic_writer
from wavefleet.gateway.security.audit import AUDIT_COLUMNS, AuditQuery, query_audit
from wavefleet.gateway.security.db import connect, resolve_db_path

__all__ = ["audit", "parse_time"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: float | None = None) -> float:
    """`2h` (that long ago), `2026-11-27`, `2026-11-27T13:05` (UTC unless an offset is given)."""
    now = time.time() if now is None else now
    if text[:-1].replace(".", "", 1).isdigit() and text[-1:] in _UNITS:
        return now - float(text[:-1]) * _UNITS[text[-1]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{text!r} is not a time: use e.g. 2h (ago), 2026-11-27 or 2026-11-27T13:05"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(ts: object) -> str:
    return (
        datetime.fromtimestamp(float(ts), UTC).isoformat(timespec="milliseconds")
        if isinstance(ts, float | int)
        else ""
    )


def _write(rows: Iterator[dict[str, object]], output_format: str, out: IO[str]) -> int:
    count = 0
    if output_format == "jsonl":
        for row in rows:
            out.write(json.dumps({**row, "time": _iso(row["ts"])}, ensure_ascii=False) + "\n")
            count += 1
    else:
        writer = csv.DictWriter(out, fieldnames=["time", *AUDIT_COLUMNS])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "time": _iso(row["ts"])})
            count += 1
    return count


@click.command()
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="WAVE_DB",
    default=None,
    help="The gateway's database (its --audit-db) [env WAVE_DB].",
)
@click.option("--since", default=None, help="From this time: 2h (ago), 2026-11-27, 2026-11-27T13:05.")
@click.option("--until", default=None, help="Before this time (same forms).")
@click.option(
    "--key", default=None, help="Only this principal: a key id, oidc:<subject>, static or unauthenticated."
)
@click.option("--model", default=None, help="Only this model (as the client asked for it).")
@click.option("--status", type=int, default=None, help="Only this HTTP status, e.g. 401 or 429.")
@click.option("--limit", type=int, default=None, help="At most this many rows (table: 200 unless given).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "jsonl", "csv"]),
    default="table",
    show_default=True,
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write here (whole or not at all).",
)
def audit(
    db: Path | None,
    since: str | None,
    until: str | None,
    key: str | None,
    model: str | None,
    status: int | None,
    limit: int | None,
    output_format: str,
    out: Path | None,
) -> None:
    """Query and export the audit trail: one row per request the gateway answered, refused ones included.

    Rows hold time, who (key id or OIDC subject, never a key), client address, model, backend,
    status, tokens, latency and screening verdicts; prompts only if the gateway ran with --audit-prompts.

    \b
    Examples:
      wave audit --since 1h
      wave audit --status 401 --since 2026-11-27
      wave audit --key 3f9a0c1d --format csv --out key-3f9a0c1d.csv
      wave audit --since 24h --format jsonl | jq -r 'select(.screening != "") | .screening'
    """
    path = resolve_db_path(db)
    query = AuditQuery(
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
        principal=key,
        model=model,
        status=status,
        limit=limit if limit is not None or output_format != "table" else 200,
    )
    rows = query_audit(connect(path, create=False), query)
    if output_format == "table":
        if out is not None:
            raise UsageError("--out needs --format jsonl or csv")
        table = Table(
            "time", "who", "client", "model", "backend", "status", "tokens in/out", "ms", "screening"
        )
        for row in rows:
            tokens = f"{row['prompt_tokens'] if row['prompt_tokens'] is not None else '-'}/{row['completion_tokens'] if row['completion_tokens'] is not None else '-'}"
            table.add_row(
                _iso(row["ts"]),
                str(row["principal"]),
                str(row["client"] or ""),
                str(row["model"] or "-"),
                str(row["backend"] or "-"),
                str(row["status"]),
                tokens,
                f"{row['latency_ms']:.1f}" if isinstance(row["latency_ms"], float) else "-",
                str(row["screening"] or ""),
            )
        Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(table)
        return
    if out is None:
        _write(rows, output_format, sys.stdout)
        return
    with atomic_writer(out) as handle:
        count = _write(rows, output_format, handle)
    Console(stderr=True, highlight=False).print(f"{count} rows written to {out}")
