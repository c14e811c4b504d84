"""The database file holds key digests and the audit trail: only its owner may read it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from wavefleet.gateway.security.audit import AuditWriter
from wavefleet.gateway.security.db import connect


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common 022, so files would be world-readable unless created otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_database_and_its_side_files_are_private(tmp_path: Path, usual_umask: None) -> None:
    path = tmp_path / "made" / "by" / "us" / "wave.db"
    db = connect(path)
    db.execute("INSERT INTO api_keys (key_id, name, digest, created_at) VALUES ('a', 'a', 'd', 0)")
    try:
        side = [Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert all(p.exists() for p in side)  # WAL mode, connection open
        assert {p.name: mode(p) for p in [path, *side]} == {p.name: 0o600 for p in [path, *side]}
        assert mode(tmp_path / "made" / "by" / "us") == 0o700
        assert mode(tmp_path / "made") == 0o700
    finally:
        db.close()


def test_an_existing_directory_keeps_its_mode(tmp_path: Path, usual_umask: None) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    writer = AuditWriter(shared / "audit.db")
    writer.close()
    assert mode(shared) == 0o755
    assert mode(shared / "audit.db") == 0o600
