"""Shared fixtures. Tests use real parts: real files, real servers on loopback, real tools."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server of our own, on a unix socket in tmp_path (no port to collide on)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: `./dev test` installs it (Debian package redis-server)")
    sock = tmp_path / "redis.sock"
    argv = ["redis-server", "--port", "0", "--unixsocket", str(sock), "--dir", str(tmp_path)]
    proc = subprocess.Popen(
        [*argv, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.02)
    try:
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
