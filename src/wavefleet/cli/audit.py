"""`wave audit`: query and export the audit trail: the gateway's requests, or (`--events`) what
operators did (`wave model fetch`, `quantize`, `check`).

Any key holder chooses some of what a row holds (model, request id), an OIDC issuer the subject,
so client text is shown as plain text: the table never reads it as rich markup, and control
characters (C0, DEL, C1, bidirectional overrides) are shown escaped (`\\x1b`) instead of reaching
the terminal. JSON lines keep every value as it is (C1 and bidi controls as `\\u` escapes); CSV
cells that a spreadsheet would run as a formula (starting with = + - @ tab or CR) get a leading
`'` (OWASP's CSV injection guidance).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import click
from click.core import ParameterSource
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from wavefleet.errors import UsageError
from wavefleet.files import atomic_writer
from wavefleet.gateway.security.audit import (
    AUDIT_COLUMNS,
    USAGE_COLUMNS,
    USAGE_GROUPS,
    AuditQuery,
    query_audit,
    query_usage,
)
from wavefleet.gateway.security.db import connect, resolve_db_path
from wavefleet.gateway.security.events import EVENT_COLUMNS, EventQuery, query_events
from wavefleet.terminal import fit, folding_table

__all__ = ["audit", "csv_cell", "parse_time", "plain"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# characters that move the cursor, recolour, retitle or reorder what a terminal shows
_BIDI = (0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_SHOWN_ESCAPED = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    c: f"\\u{c:04x}" for c in _BIDI
}
# in JSON text these can only stand inside strings, where \uXXXX means the same character
_JSON_ESCAPED = {c: f"\\u{c:04x}" for c in (*range(0x7F, 0xA0), *_BIDI)}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def plain(value: object) -> str:
    """`value` as text safe for a terminal: control characters shown as escapes."""
    return str(value).translate(_SHOWN_ESCAPED)


def csv_cell(value: object) -> object:
    """Text a spreadsheet would run as a formula, with a leading `'`; anything else unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


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


def _write(
    rows: Iterator[dict[str, object]],
    output_format: str,
    out: IO[str],
    columns: tuple[str, ...],
    *,
    stamped: bool = True,
) -> int:
    """Rows as JSON lines or CSV; `stamped` rows get their `ts` as an ISO `time` too."""
    count = 0
    if output_format == "jsonl":
        for row in rows:
            line = json.dumps({**row, "time": _iso(row["ts"])} if stamped else row, ensure_ascii=False)
            out.write(line.translate(_JSON_ESCAPED) + "\n")
            count += 1
    else:
        writer = csv.DictWriter(out, fieldnames=["time", *columns] if stamped else list(columns))
        writer.writeheader()
        for row in rows:
            cells = {name: _csv_text(value) for name, value in row.items()}
            writer.writerow(cells | {"time": _iso(row["ts"])} if stamped else cells)
            count += 1
    return count


def _csv_text(value: object) -> object:
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return csv_cell(value)


@click.command()
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="WAVE_DB",
    default=None,
    help="The gateway's database: what `wave serve --audit` writes by default, or its --audit-db "
    "[env WAVE_DB; default $XDG_DATA_HOME/wavefleet/wave.db].",
)
@click.option("--since", default=None, help="From this time: 2h (ago), 2026-11-27, 2026-11-27T13:05.")
@click.option("--until", default=None, help="Before this time (same forms).")
@click.option(
    "--key", default=None, help="Only this principal: a key id, oidc:<subject>, static or unauthenticated."
)
@click.option("--model", default=None, help="Only this model (as the client asked for it).")
@click.option("--status", type=int, default=None, help="Only this HTTP status, e.g. 401 or 429.")
@click.option(
    "--events",
    "show_events",
    is_flag=True,
    help="Operator events instead of requests: model fetch, quantize, check (who, what, verdict).",
)
@click.option(
    "--actor", default=None, help="With --events: only this actor (WAVE_ACTOR of the run, or user@host)."
)
@click.option(
    "--action",
    default=None,
    help="With --events: only this action (model.fetch), or a family of them (model).",
)
@click.option(
    "--usage",
    "show_usage",
    is_flag=True,
    help="A usage report instead of rows: requests, tokens, joules, J/token and cost per key and model "
    "(energy and cost where the gateway ran with --telemetry).",
)
@click.option(
    "--by",
    type=click.Choice(sorted(USAGE_GROUPS)),
    default="both",
    show_default=True,
    help="With --usage: one line per key, per model, or per key and model.",
)
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
    show_events: bool,
    actor: str | None,
    action: str | None,
    show_usage: bool,
    by: str,
    limit: int | None,
    output_format: str,
    out: Path | None,
) -> None:
    """Query and export the audit trail: one row per request the gateway answered, refused ones included.

    Rows hold time, who (key id or OIDC subject, never a key), client address, model, backend,
    status, tokens, latency and screening verdicts; prompts only if the gateway ran with --audit-prompts.

    With --usage: per key and model (--by), the requests, tokens, energy (J, and the idle share),
    J per completion token and cost, from the rows of a gateway that ran with --telemetry
    (`measured` says how many rows have energy; the others' energy is unknown, not zero).

    With --events: one row per operator action instead (`wave model fetch`, `quantize`, `check`, `wave rollout`):
    time, who (WAVE_ACTOR, else user@host), action, subject (the file), outcome (ok, failed,
    error) and details (what changed, the verdict's numbers).

    \b
    Examples:
      wave audit --since 1h
      wave audit --status 401 --since 2026-11-27
      wave audit --key 3f9a0c1d --format csv --out key-3f9a0c1d.csv
      wave audit --since 24h --format jsonl | jq -r 'select(.screening != "") | .screening'
      wave audit --usage --since 30d
      wave audit --usage --by model --format csv --out usage.csv
      wave audit --events --since 7d
      wave audit --events --action model.check --format jsonl
    """
    path = resolve_db_path(db)
    source, writer = _source(db, path)
    if not path.exists() and show_events:
        raise UsageError(
            f"no audit database at {path} ({source}): `wave model fetch`, `quantize` and `check` write "
            "their events to the same database (--db, WAVE_DB or this default); give `wave audit --events "
            "--db PATH` for another one"
        )
    if not path.exists():
        raise UsageError(
            f"no audit database at {path} ({source}): {writer}; to read what a gateway started "
            "with --audit-db PATH (or --db PATH --audit) wrote, give `wave audit --db PATH`"
        )
    if show_events:
        wrong = [name for name, given in (("--key", key), ("--model", model), ("--status", status)) if given]
        if wrong:
            raise UsageError(
                f"{', '.join(wrong)} filter requests, not events; with --events use --actor or --action"
            )
        if show_usage:
            raise UsageError("--usage reports requests, not events: give one of --usage or --events")
    elif actor is not None or action is not None:
        raise UsageError("--actor and --action filter events: add --events")
    if output_format == "table" and out is not None:
        raise UsageError("--out needs --format jsonl or csv")
    limit = limit if limit is not None or output_format != "table" else 200
    database = connect(path, create=False)
    database.text_factory = _lenient_text  # a row some other program wrote as invalid UTF-8 still reads
    if show_events:
        _show_events(
            database,
            EventQuery(
                since=parse_time(since) if since else None,
                until=parse_time(until) if until else None,
                actor=actor,
                action=action,
                limit=limit,
            ),
            output_format,
            out,
            path,
            source,
        )
        return
    query = AuditQuery(
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
        principal=key,
        model=model,
        status=status,
        limit=limit,
    )
    if show_usage:
        if limit is not None and click.get_current_context().get_parameter_source("limit") == (
            ParameterSource.COMMANDLINE
        ):
            raise UsageError("--limit counts rows, not usage lines: leave it out with --usage")
        _show_usage(database, query, by, output_format, out)
        return
    rows = query_audit(database, query)
    if output_format == "table":
        table = folding_table(
            "time", "who", "client", "model", "backend", "status", "tokens in/out", "ms", "screening"
        )
        count = 0
        for row in rows:
            tokens = f"{row['prompt_tokens'] if row['prompt_tokens'] is not None else '-'}/{row['completion_tokens'] if row['completion_tokens'] is not None else '-'}"
            cells = (
                _iso(row["ts"]),
                row["principal"],
                row["client"] or "",
                row["model"] or "-",
                row["backend"] or "-",
                row["status"],
                tokens,
                f"{row['latency_ms']:.1f}" if isinstance(row["latency_ms"], float) else "-",
                row["screening"] or "",
            )
            table.add_row(*(Text(plain(cell)) for cell in cells))  # Text: never parsed as markup
            count += 1
        if count:
            console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
            console.print(fit(table, console))
    else:
        count = _export(rows, output_format, out, AUDIT_COLUMNS)
    if count == 0:
        _say_why_nothing(database, path, source, writer)


def _number(value: object, digits: int = 1) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, float | int) else "-"


def _show_usage(
    database: sqlite3.Connection, query: AuditQuery, by: str, output_format: str, out: Path | None
) -> None:
    lines = list(query_usage(database, dataclasses.replace(query, limit=None), by=by))
    if output_format != "table":
        count = _export(iter(lines), output_format, out, USAGE_COLUMNS, stamped=False)
    else:
        heads = {"key": ("key",), "model": ("model",), "both": ("key", "model")}[by]
        table = folding_table(
            *heads, "requests", "tokens in/out", "measured", "energy J", "idle J", "J/token", "cost"
        )
        for line in lines:
            names = [line["principal"] if h == "key" else line["model"] for h in heads]
            cost = (
                f"{_number(line['cost'], 6)} {line['currency']}"
                if line["cost"] is not None
                else (str(line["currency"]) if line["currency"] else "-")
            )
            cells = (
                *(n if n is not None else "-" for n in names),
                line["requests"],
                f"{line['prompt_tokens'] or 0}/{line['completion_tokens'] or 0}",
                line["measured"],
                _number(line["energy_j"]),
                _number(line["idle_j"]),
                _number(line["j_per_token"], 3),
                cost,
            )
            table.add_row(*(Text(plain(cell)) for cell in cells))
        count = len(lines)
        if count:
            console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
            console.print(fit(table, console))
    if count == 0:
        Console(stderr=True, highlight=False).print("no requests match: nothing to report.")


def _export(
    rows: Iterator[dict[str, object]],
    output_format: str,
    out: Path | None,
    columns: tuple[str, ...],
    *,
    stamped: bool = True,
) -> int:
    if out is None:
        return _write(rows, output_format, sys.stdout, columns, stamped=stamped)
    with atomic_writer(out) as handle:
        count = _write(rows, output_format, handle, columns, stamped=stamped)
    Console(stderr=True, highlight=False).print(f"{count} rows written to {escape(str(out))}")
    return count


def _details(details: object) -> str:
    """An event's details on one line: `key=value` pairs, nested values as compact JSON."""
    if not isinstance(details, dict):
        return str(details)
    parts = []
    for name, value in details.items():
        text = (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        )
        parts.append(f"{name}={text}")
    return " ".join(parts)


def _show_events(
    database: sqlite3.Connection,
    query: EventQuery,
    output_format: str,
    out: Path | None,
    path: Path,
    source: str,
) -> None:
    rows = query_events(database, query)
    if output_format != "table":
        count = _export(rows, output_format, out, EVENT_COLUMNS)
    else:
        table = folding_table("time", "who", "action", "subject", "outcome", "details")
        count = 0
        for row in rows:
            cells = (_iso(row["ts"]), row["actor"], row["action"], row["subject"], row["outcome"])
            table.add_row(*(Text(plain(cell)) for cell in (*cells, _details(row["details"]))))
            count += 1
        if count:
            console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
            console.print(fit(table, console))
    if count:
        return
    total, first, last = database.execute("SELECT count(*), min(ts), max(ts) FROM events").fetchone()
    message = (
        f"no events in {path} ({source}): `wave model fetch`, `quantize` and `check` write them "
        "(to --db, WAVE_DB or this default)"
        if not total
        else f"no events match: {path} holds {total} event{'' if total == 1 else 's'}, from {_iso(first)} to {_iso(last)}."
    )
    Console(stderr=True, highlight=False).print(escape(message))


def _source(given: Path | None, path: Path) -> tuple[str, str]:
    """Where the database path came from, and which `wave serve` writes there, for messages."""
    origin = click.get_current_context().get_parameter_source("db")
    if given is None:
        return "the default: WAVE_DB is not set", "`wave serve --audit` writes here"
    if origin == ParameterSource.ENVIRONMENT:
        return "from WAVE_DB", "`wave serve --audit` with the same WAVE_DB writes here"
    return "from --db", f"`wave serve --audit-db {path}` writes here"


def _say_why_nothing(database: sqlite3.Connection, path: Path, source: str, writer: str) -> None:
    total, first, last = database.execute("SELECT count(*), min(ts), max(ts) FROM audit").fetchone()
    console = Console(stderr=True, highlight=False)
    if not total:
        console.print(
            escape(
                f"the audit trail in {path} ({source}) is empty: no gateway has written to it yet. "
                f"{writer}; to read what a gateway started with --audit-db PATH (or --db PATH "
                "--audit) wrote, give `wave audit --db PATH`."
            )
        )
    else:
        console.print(
            escape(
                f"no rows match: the trail in {path} holds {total} rows, from {_iso(first)} to {_iso(last)}."
            )
        )
