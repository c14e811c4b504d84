"""Where the gateway's SQLite database lives, opening it, and its schema migrations.

One file holds the API keys, the audit trail of requests, the operator events and the rollouts (`wave.db`). Its path comes from, in order:
the `--db` option, the `WAVE_DB` environment variable, `$XDG_DATA_HOME/wavefleet/wave.db`
(`~/.local/share/wavefleet/wave.db` when XDG_DATA_HOME is unset).

Migrations are a list of named functions, applied once each, in order, and recorded in the
`_migrations` table (simonw/llm's migrations.py pattern):

    @migration
    def m001_api_keys(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE api_keys (...)")
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from wavefleet.errors import UsageError

__all__ = ["MIGRATIONS", "connect", "default_db_path", "migrate", "resolve_db_path"]

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []
migration = MIGRATIONS.append


@migration
def m001_api_keys(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            digest TEXT NOT NULL UNIQUE,
            models TEXT,
            expires_at REAL,
            rpm INTEGER,
            tpm INTEGER,
            max_concurrent INTEGER,
            max_tokens INTEGER,
            created_at REAL NOT NULL,
            revoked_at REAL
        )"""
    )


@migration
def m002_audit(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            request_id TEXT,
            principal TEXT NOT NULL,
            client TEXT,
            method TEXT,
            path TEXT,
            model TEXT,
            backend TEXT,
            status INTEGER NOT NULL,
            error TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            latency_ms REAL,
            screening TEXT,
            prompt TEXT
        )"""
    )
    db.execute("CREATE INDEX audit_ts ON audit (ts)")
    db.execute("CREATE INDEX audit_principal_ts ON audit (principal, ts)")


@migration
def m003_events(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            subject TEXT NOT NULL,
            outcome TEXT NOT NULL,
            details TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute("CREATE INDEX events_ts ON events (ts)")


@migration
def m004_audit_energy(db: sqlite3.Connection) -> None:
    """Energy (J), idle share (J) and cost per request; NULL where not measured."""
    for column in ("energy_j REAL", "idle_j REAL", "cost REAL", "currency TEXT"):
        db.execute(f"ALTER TABLE audit ADD COLUMN {column}")


@migration
def m005_rollouts(db: sqlite3.Connection) -> None:
    """`wave rollout`: each rollout's record (JSON, rewritten at every step), and the version each
    model is served by once a rollout ended (so a restarted gateway routes it the same way)."""
    db.execute(
        """CREATE TABLE rollouts (
            id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            phase TEXT NOT NULL,
            record TEXT NOT NULL,
            started_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX rollouts_started ON rollouts (started_at)")
    db.execute(
        """CREATE TABLE served_versions (
            model TEXT PRIMARY KEY,
            backend TEXT NOT NULL,
            engine_model TEXT NOT NULL,
            rollout_id TEXT NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )


def default_db_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wavefleet" / "wave.db"


def resolve_db_path(given: Path | str | None) -> Path:
    """The database path: the option, else WAVE_DB, else the user's data directory."""
    if given:
        return Path(given)
    env = os.environ.get("WAVE_DB")
    return Path(env) if env else default_db_path()


def _private_directory(directory: Path) -> None:
    """Create `directory` and its missing parents, each 0700; existing ones keep their mode."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for part in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made by another process meanwhile: theirs
            part.mkdir(mode=0o700)


def _private_file(path: Path) -> None:
    """Create `path` empty and 0600 unless it exists. SQLite takes an empty file as a new
    database and gives its -wal and -shm files the database file's mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def connect(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """Open (and migrate) the database in WAL mode, so the audit writer never blocks readers.

    It holds key digests and the audit trail, so a database created here is 0600 (and so are
    its -wal and -shm files) in directories created 0700; existing files and directories keep
    their modes."""
    if not create and not path.exists():
        raise UsageError(f"no database at {path}: give --db (or WAVE_DB) pointing at the gateway's wave.db")
    try:
        _private_directory(path.parent)
        _private_file(path)
        db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a killed process; only a power loss can drop the last ones
        db.execute("PRAGMA synchronous=NORMAL")
        migrate(db)
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"cannot open the database {path}: {exc} (is it a wave.db file?)") from exc
    except OSError as exc:
        raise UsageError(f"cannot create the database {path}: {exc}") from exc
    return db


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction; return their names."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    applied = []
    for step in MIGRATIONS:
        if step.__name__ in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            # another process may have applied it between our read and our lock
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (step.__name__,)).fetchone():
                db.execute("ROLLBACK")
                continue
            step(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (step.__name__, time.time())
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        applied.append(step.__name__)
    return applied


def select_oldest_first(
    db: sqlite3.Connection,
    *,
    table: str,
    columns: Sequence[str],
    where: Sequence[tuple[str, Sequence[object]]],
    limit: int | None,
) -> sqlite3.Cursor:
    """`columns` of `table`'s rows matching every (clause, its arguments) of `where`, oldest first."""
    sql = f"SELECT {', '.join(columns)} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(clause for clause, _ in where)
    sql += " ORDER BY ts, id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return db.execute(sql, [arg for _, args in where for arg in args])
