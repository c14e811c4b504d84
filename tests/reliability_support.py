"""Real processes for the security and reliability tests: the fake engine of
reliability_engine.py and `wave serve` itself, each on a port the OS picked.

Test files import it by name (tests/ is on pytest's pythonpath): `import reliability_support as support`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from helpers import free_port, http_request, wave_env

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


class EngineProcess:
    """reliability_engine.py in its own process."""

    def __init__(self, name: str, *args: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "reliability_engine.py"), "--name", name, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=wave_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"engine {name} did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def fault(self, fault: str) -> dict[str, Any]:
        status, _, body = http_request("POST", f"{self.url}/admin/fault", {"fault": fault})
        assert status == 200
        result: dict[str, Any] = json.loads(body)
        return result

    def bodies(self) -> list[bytes]:
        _, _, body = http_request("GET", f"{self.url}/admin/bodies")
        return [base64.b64decode(b) for b in json.loads(body)]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.kill()


class GatewayProcess:
    """`wave serve` in its own process (python -m wavefleet serve ...), ready when it answers /health."""

    def __init__(self, *args: str, log: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wavefleet", "serve", "--port", str(self.port), *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=wave_env(),
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wave serve exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    raise RuntimeError("wave serve did not listen within 30 s") from None
                time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.log is not subprocess.DEVNULL:
            self.log.close()  # type: ignore[union-attr]
        return int(self.proc.returncode)
