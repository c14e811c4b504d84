"""Shared fixtures. Tests use real parts: real files, real servers on loopback, real tools."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wavefleet.catalog import Catalog

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The bundled catalog, loaded once for the session (a frozen value: tests read it only)."""
    return Catalog.load()


class RedisServer:
    """A real redis-server of our own on a unix socket (no port to collide on), restartable in place."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.sock = work / "redis.sock"
        self.url = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is missing: `./dev test` installs it (Debian package redis-server)")
        argv = ["redis-server", "--port", "0", "--unixsocket", str(self.sock), "--dir", str(self.work)]
        proc = self.proc = subprocess.Popen(
            [*argv, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
        self.sock.unlink(missing_ok=True)

    def restart(self) -> None:
        """Stop and start again on the same socket: an empty server, as after a crash without persistence."""
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a real redis-server of our own (see RedisServer)."""
    return redis_server.url
