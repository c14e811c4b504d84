"""Runs the embedded engine as a child process and keeps it running.

    supervisor = EngineSupervisor(settings)
    await supervisor.start(progress)     # spawn, wait for /health 200 (EngineError if it can't)
    supervisor.url                       # http://127.0.0.1:PORT, the same across restarts
    await supervisor.failed              # resolves with EngineError once restarts are used up
    await supervisor.stop()              # SIGTERM to its process group, SIGKILL after a grace period

The supervisor binds the listening socket itself and hands it to each engine process, so the
port never changes when the engine restarts and connections made meanwhile wait in the backlog.
The engine runs in its own process group (killed as a group) and also exits by itself when the
supervisor disappears, so no engine outlives `wave up`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import aiohttp

from wavefleet.engine.settings import EngineSettings
from wavefleet.errors import EngineError

__all__ = ["EngineSupervisor"]

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class EngineSupervisor:
    def __init__(
        self,
        settings: EngineSettings,
        *,
        host: str = "127.0.0.1",
        max_restarts: int = 3,
        backoff_s: float = 0.5,
        stable_after_s: float = 60.0,
        ready_timeout_s: float = 180.0,
        stop_grace_s: float = 5.0,
        on_event: Progress = _quiet,
    ) -> None:
        self.settings = settings
        self._host = host
        self._max_restarts = max_restarts
        self._backoff_s = backoff_s
        self._stable_after_s = stable_after_s
        self._ready_timeout_s = ready_timeout_s
        self._stop_grace_s = stop_grace_s
        self._on_event = on_event
        self._socket: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._log_path: Path | None = None
        self.restarts = 0  # restarts since the engine was last stable
        self.failed: asyncio.Future[None] | None = None

    @property
    def url(self) -> str:
        if self._socket is None:
            raise EngineError("the engine has not been started")
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    async def start(self, progress: Progress = _quiet) -> None:
        """Start the engine and return once it answers `/health` with 200."""
        self.failed = asyncio.get_running_loop().create_future()
        self._socket = socket.create_server((self._host, 0), backlog=128)
        self._socket.set_inheritable(True)
        handle, name = tempfile.mkstemp(prefix="wave-engine-", suffix=".log")
        os.close(handle)
        self._log_path = Path(name)
        try:
            await self._spawn_until_ready(progress)
        except BaseException:
            await self.stop()
            raise
        self._watcher = asyncio.create_task(self._watch(), name="wave-engine-supervisor")

    async def stop(self) -> None:
        """Stop the engine (its whole process group) and release the port. Safe to call twice."""
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._terminate()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    # -- internals ---------------------------------------------------------------------------

    def _command(self) -> list[str]:
        assert self._socket is not None
        s = self.settings
        return [
            sys.executable,
            "-m",
            "wavefleet.engine.server",
            "--model",
            str(s.model_path),
            "--name",
            s.model_name,
            "--ctx",
            str(s.n_ctx),
            "--threads",
            str(s.n_threads),
            "--fd",
            str(self._socket.fileno()),
            "--parent-pid",
            str(os.getpid()),
        ]

    async def _spawn(self) -> None:
        assert self._socket is not None and self._log_path is not None
        with self._log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self._command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(self._socket.fileno(),),
                start_new_session=True,  # its own process group: a Ctrl-C in the terminal reaches us, not it
            )

    async def _spawn_until_ready(self, progress: Progress) -> None:
        attempt = 0
        while True:
            progress(f"starting llama.cpp with {self.settings.model_name}")
            await self._spawn()
            try:
                await self._wait_ready(progress)
                return
            except _EngineExited as exc:
                attempt += 1
                if attempt > self._max_restarts:
                    raise EngineError(self._gave_up(f"the engine stopped while starting ({exc})")) from None
                delay = self._backoff_s * 2 ** (attempt - 1)
                progress(f"engine stopped while starting ({exc}); retrying in {delay:g} s")
                await asyncio.sleep(delay)

    async def _wait_ready(self, progress: Progress) -> None:
        assert self._process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ready_timeout_s
        timeout = aiohttp.ClientTimeout(total=2.0)
        told = False
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if self._process.returncode is not None:
                    raise _EngineExited(_exit_text(self._process.returncode))
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.url}/health") as response:
                        if response.status == 200:
                            return
                        if response.status == 500:  # the model itself failed to load: retrying won't help
                            detail = (await response.text())[:400]
                            raise EngineError(
                                f"the engine could not load {self.settings.model_path}: {detail}"
                            )
                        if not told:
                            progress(f"loading {self.settings.model_path.name}")
                            told = True
                if loop.time() > deadline:
                    raise EngineError(self._gave_up(f"not ready after {self._ready_timeout_s:g} s"))
                await asyncio.sleep(0.1)

    async def _watch(self) -> None:
        """Restart the engine whenever it exits, with growing backoff, until restarts run out."""
        loop = asyncio.get_running_loop()
        assert self.failed is not None
        try:
            while not self._stopping:
                assert self._process is not None
                started = loop.time()
                code = await self._process.wait()
                if self._stopping:
                    return
                if loop.time() - started >= self._stable_after_s:
                    self.restarts = 0
                if self.restarts >= self._max_restarts:
                    raise EngineError(self._gave_up(f"the engine {_exit_text(code)}"))
                self.restarts += 1
                delay = self._backoff_s * 2 ** (self.restarts - 1)
                self._on_event(
                    f"engine {_exit_text(code)}; restart {self.restarts}/{self._max_restarts} in {delay:g} s"
                )
                await asyncio.sleep(delay)
                await self._spawn_until_ready(self._on_event)
                self._on_event("engine is back")
        except EngineError as exc:
            if not self.failed.done():
                self.failed.set_exception(exc)

    async def _terminate(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, self._stop_grace_s), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(process.wait(), wait_s)
                return
            except TimeoutError:
                continue

    def _gave_up(self, why: str) -> str:
        tail = ""
        if self._log_path is not None and self._log_path.exists():
            lines = self._log_path.read_text(errors="replace").strip().splitlines()[-8:]
            tail = ("\nlast engine output:\n  " + "\n  ".join(lines)) if lines else ""
        return (
            f"embedded engine failed: {why}, after {self.restarts} restart(s) "
            f"(model {self.settings.model_path}, --ctx {self.settings.n_ctx}, --threads {self.settings.n_threads})"
            f"{tail}\nfix: check the model file and free memory, or try a smaller --ctx"
        )


class _EngineExited(Exception):
    pass


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
