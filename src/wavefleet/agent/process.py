"""One engine process: started in a session of its own, its output kept and read, stopped whole.

    process = await EngineProcess.spawn(launch, port=8123, log_file=None)
    process.lines                  # the last output lines (a ring of `TAIL_LINES`)
    process.buffers                # the memory it logged (agent.memory.EngineBuffers)
    code = await process.exited    # its exit status (negative: killed by that signal)
    await process.stop(grace=10)   # SIGTERM to its process group, SIGKILL after `timeout`

The process leads its own process group, so stopping it stops whatever it started too. On Linux
the kernel kills it when the agent's process ends, even by SIGKILL (PR_SET_PDEATHSIG), so an
engine never outlives its agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

from wavefleet.agent.launch import ENGINE_HOST, EngineLaunch
from wavefleet.agent.memory import EngineBuffers
from wavefleet.errors import EngineError

__all__ = ["TAIL_LINES", "EngineProcess", "exit_text", "free_port"]

TAIL_LINES = 200
_LINE_LIMIT = 1 << 20  # llama.cpp's metadata dump has long lines


def free_port(host: str = ENGINE_HOST) -> int:
    """A port the OS reports free now (another program may still take it before the engine binds)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _dies_with_this_process() -> Callable[[], None] | None:
    """What the child runs before exec so the kernel kills it when this process ends (Linux)."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the child only calls it
    parent = os.getpid()

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the agent ended before the call: nobody would stop the engine
            os.kill(os.getpid(), signal.SIGKILL)

    return in_child


def exit_text(code: int) -> str:
    """'exit 3', or 'killed by SIGKILL' for a negative status."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


class EngineProcess:
    def __init__(
        self, process: asyncio.subprocess.Process, *, port: int, log: IO[bytes] | None, started: float
    ) -> None:
        self._process = process
        self.pid = process.pid
        self.port = port
        self.url = f"http://{ENGINE_HOST}:{port}"
        self.started = started  # time.monotonic() at spawn
        self.lines: deque[str] = deque(maxlen=TAIL_LINES)
        self.buffers = EngineBuffers()
        self._log = log
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(), name=f"engine-{self.pid}-output")

    @classmethod
    async def spawn(cls, launch: EngineLaunch, *, port: int, log_file: Path | None = None) -> EngineProcess:
        """Start the engine; EngineError when its program cannot be executed at all."""
        log: IO[bytes] | None = None
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            log = log_file.open("ab")
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **launch.env},
                start_new_session=True,
                preexec_fn=_dies_with_this_process(),
                limit=_LINE_LIMIT,
            )
        except OSError as exc:
            if log is not None:
                log.close()
            raise EngineError(f"cannot execute {launch.argv[0]}: {exc.strerror or exc}") from exc
        return cls(process, port=port, log=log, started=started)

    @property
    def returncode(self) -> int | None:
        return self.exited.result() if self.exited.done() else None

    def tail(self, count: int = 20) -> list[str]:
        return list(self.lines)[-count:]

    async def _read(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        try:
            while True:
                try:
                    raw = await stream.readline()
                except ValueError:  # a line over the limit: keep its start, drop the rest
                    raw = await stream.read(_LINE_LIMIT)
                if not raw:
                    break
                if self._log is not None:
                    self._log.write(raw)
                    self._log.flush()
                line = raw.decode(errors="replace").rstrip()
                if line:
                    self.lines.append(line)
                    self.buffers.feed(line)
        finally:
            code = await self._process.wait()
            if self._log is not None:
                self._log.close()
            if not self.exited.done():
                self.exited.set_result(code)

    def signal_group(self, signum: int) -> None:
        """Send `signum` to the engine's process group (it leads its own session)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    async def stop(self, *, grace: float) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit status."""
        if not self.exited.done():
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), grace)
            except TimeoutError:
                self.signal_group(signal.SIGKILL)
        code = await asyncio.shield(self.exited)
        self.signal_group(signal.SIGKILL)  # anything the engine left behind in its group
        return code
