"""Helpers every test file shares; tests/ is on pytest's pythonpath, so `from helpers import ...`.

    free_port()                       a TCP port on 127.0.0.1 that the OS just handed out
    wave_env(**extra)                 os.environ with this checkout's src/ first on PYTHONPATH
    run_wave(*args)                   `python -m wavefleet ARGS` to the end, as a person runs it
    start_wave(*args)                 the same, left running (a Popen the caller stops)
    invoke_wave(*args)                the same command in this process, through click's CliRunner
    serving_wave(*args)               `wave serve ARGS` on a free port while a with-block runs: its URL
    http_request(method, url, …)      one HTTP exchange: (status, headers, body bytes), errors included
    chat_body(content, **fields)      an OpenAI chat request body with one user message
    wait_until(predicate)             poll until the predicate holds or fail at a deadline
    async_wait_until(predicate)       the same inside an event loop

Fixtures (`catalog`, `redis_url`, …) live in conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from click.testing import CliRunner, Result

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

T = TypeVar("T")


def free_port() -> int:
    """A port nothing listens on right now (the OS picked it; another process could take it later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wave_env(**extra: str) -> dict[str, str]:
    """The environment for a `wave` subprocess: this checkout's code, whatever is installed."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_wave(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`wave ARGS` in its own process, run to the end; `env` replaces the environment (see wave_env)."""
    return subprocess.run(
        [sys.executable, "-m", "wavefleet", *args],
        capture_output=True,
        text=True,
        env=wave_env() if env is None else env,
        timeout=timeout,
        input=input,
        check=False,
    )


def start_wave(
    *args: str,
    env: dict[str, str] | None = None,
    stdout: Any = subprocess.PIPE,
    stderr: Any = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """`wave ARGS` in its own process, left running; the caller stops it."""
    return subprocess.Popen(
        [sys.executable, "-m", "wavefleet", *args],
        stdout=stdout,
        stderr=stderr,
        text=True,
        env=wave_env() if env is None else env,
    )


@contextmanager
def serving_wave(*args: str, env: dict[str, str] | None = None, ready_within_s: float = 60) -> Iterator[str]:
    """`wave serve --port P ARGS` in its own process; yields its URL once /health answers 200,
    and stops it (SIGTERM) when the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile(mode="w+") as log:  # a file, not a pipe: nothing blocks on a full one
        process = start_wave("serve", "--port", str(port), *args, env=env, stdout=log, stderr=log)

        def healthy() -> bool:
            if process.poll() is not None:
                log.seek(0)
                raise AssertionError(f"wave serve exited during start-up: {log.read()}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    return True
            except OSError:
                return False

        try:
            wait_until(healthy, timeout_s=ready_within_s, interval_s=0.1, message="wave serve did not start")
            yield url
        finally:
            process.terminate()
            process.wait(timeout=20)


def invoke_wave(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """`wave ARGS` in this process through click's CliRunner (exceptions land on `.exception`)."""
    from wavefleet.cli import cli

    return CliRunner().invoke(cli, list(args), env=env)


def http_request(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """One request; a JSON body unless `body` is bytes. Error statuses are returned, not raised."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def chat_body(content: str = "hello", *, model: str = "m", **fields: Any) -> dict[str, Any]:
    """`{"model": …, "messages": [one user message], **fields}` (max_tokens, stream, …)."""
    return {"model": model, "messages": [{"role": "user", "content": content}], **fields}


def wait_until(
    predicate: Callable[[], T], *, timeout_s: float = 10.0, interval_s: float = 0.01, message: str = ""
) -> T:
    """The predicate's first truthy value; AssertionError once `timeout_s` passes without one.

    For waiting on an event a test cannot be told about directly (a row written, a port open):
    the deadline bounds a hung test, it is not a timing assertion."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, message or f"not true within {timeout_s} s: {predicate}"
        time.sleep(interval_s)
    return value


async def async_wait_until(
    predicate: Callable[[], T], *, timeout_s: float = 10.0, interval_s: float = 0.01, message: str = ""
) -> T:
    """wait_until for a test inside an event loop: other tasks run while it waits."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, message or f"not true within {timeout_s} s: {predicate}"
        await asyncio.sleep(interval_s)
    return value
