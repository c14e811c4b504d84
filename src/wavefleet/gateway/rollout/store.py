"""Rollouts in the gateway's SQLite database (`wave.db`, tables `rollouts` and `served_versions`).

The controller saves the whole record after every step, in one short transaction, so a gateway
killed at any moment restarts from the last step it finished. When a rollout ends, the version
that serves the model from then on is written in the same transaction as the ending record:
there is never a finished rollout without its one promoted version.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from wavefleet.errors import UsageError
from wavefleet.gateway.rollout.state import Phase, Rollout, Version
from wavefleet.gateway.security.db import connect

__all__ = ["RolloutStore"]

_TERMINAL = tuple(p.value for p in Phase if p.terminal)


class RolloutStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    def open(cls, path: Path) -> RolloutStore:
        return cls(connect(path))

    def close(self) -> None:
        self._db.close()

    def save(self, rollout: Rollout, *, served: Version | None = None) -> None:
        """Write `rollout` (and, when it ended, `served`: the model's version from now on)."""
        rollout.updated_at = time.time()
        row = (rollout.id, rollout.model, rollout.phase.value, rollout.model_dump_json(), rollout.started_at)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO rollouts (id, model, phase, record, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET phase = excluded.phase, record = excluded.record, "
                "updated_at = excluded.updated_at",
                (*row, rollout.updated_at),
            )
            if served is not None:
                self._db.execute(
                    "INSERT INTO served_versions (model, backend, engine_model, rollout_id, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(model) DO UPDATE SET backend = excluded.backend, "
                    "engine_model = excluded.engine_model, rollout_id = excluded.rollout_id, "
                    "updated_at = excluded.updated_at",
                    (rollout.model, served.backend, served.model, rollout.id, rollout.updated_at),
                )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise UsageError(f"cannot save rollout {rollout.id} to the database: {exc}") from exc

    def active(self) -> list[Rollout]:
        """Rollouts not ended, oldest first (one at most, unless the database was edited by hand)."""
        marks = ", ".join("?" * len(_TERMINAL))
        rows = self._db.execute(
            f"SELECT record FROM rollouts WHERE phase NOT IN ({marks}) ORDER BY started_at", _TERMINAL
        )
        return [Rollout.model_validate_json(row[0]) for row in rows]

    def recent(self, limit: int = 10) -> list[Rollout]:
        """The last `limit` rollouts, newest first."""
        rows = self._db.execute("SELECT record FROM rollouts ORDER BY started_at DESC LIMIT ?", (limit,))
        return [Rollout.model_validate_json(row[0]) for row in rows]

    def served(self) -> dict[str, Version]:
        """The version each model is served by since its last rollout ended."""
        rows = self._db.execute("SELECT model, backend, engine_model FROM served_versions")
        return {model: Version(backend=backend, model=engine) for model, backend, engine in rows}
