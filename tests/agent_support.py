"""Agents for tests: `wave agent` in its own process over real llama-server engines.

    with serving_agent(tmp_path, [smol("a", 256)], secret="s3cret") as agent:
        agent.url                        # http://127.0.0.1:PORT (its OpenAI API is agent.url + /v1)
        agent.status()                   # GET /agent/v1/status, as JSON
        agent.log()                      # what it wrote so far

`smol(name, context)` is the bundled SmolLM2 served under `name` with one slot of `context` tokens
and one thread: the same file under two names with different contexts is two distinct models.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from helpers import free_port, http_request, start_wave, wait_until, wave_env
from wavefleet.engines.llama_server import find_llama_server
from wavefleet.errors import EngineError

SECRET_ENV = "WAVE_AGENT_SECRET"


def needs_llama_server() -> None:
    try:
        find_llama_server()
    except EngineError as exc:
        pytest.skip(f"no llama-server binary: {exc}")


def smol(name: str, context: int, **extra: Any) -> dict[str, Any]:
    """The bundled model under `name`: one slot of `context` tokens, one thread."""
    return {"name": name, "gguf": "bundled:smollm2", "context": context, "slots": 1, "threads": 1, **extra}


@dataclass
class RunningAgent:
    url: str
    secret: str | None
    process: subprocess.Popen[str]
    output: IO[str]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"} if self.secret else {}

    def status(self) -> dict[str, Any]:
        code, _, body = http_request("GET", f"{self.url}/agent/v1/status", headers=self.headers())
        assert code == 200, body
        found: dict[str, Any] = json.loads(body)
        return found

    def model(self, name: str) -> dict[str, Any]:
        return next(m for m in self.status()["models"] if m["name"] == name)

    def log(self) -> str:
        self.output.seek(0)
        return self.output.read()


@contextmanager
def serving_agent(
    folder: Path,
    models: list[dict[str, Any]],
    *,
    secret: str | None = None,
    budget: str = "2GiB",
    defaults: dict[str, Any] | None = None,
    ready_within_s: float = 60,
) -> Iterator[RunningAgent]:
    """`wave agent --config` on a free loopback port until the block ends (then SIGTERM, which
    stops its engines)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "name": folder.name,
        "port": port,
        "devices": {"cpu": {"budget": budget}},
        "models": models,
        "defaults": {
            "load_timeout": 60,
            "backoff": {"base": 0.2, "max": 1},
            "stop_timeout": 5,
            **(defaults or {}),
        },
    }
    path = folder / "agent.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    env = wave_env(**({SECRET_ENV: secret} if secret else {}))
    if not secret:
        env.pop(SECRET_ENV, None)
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile(mode="w+") as output:
        process = start_wave("agent", "--config", str(path), env=env, stdout=output, stderr=output)
        agent = RunningAgent(url=url, secret=secret, process=process, output=output)

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"wave agent exited during start-up: {agent.log()}")
            code, _, _ = http_request("GET", f"{url}/health", timeout=2) if _open(port) else (0, {}, b"")
            return code == 200

        try:
            wait_until(
                listening, timeout_s=ready_within_s, interval_s=0.1, message="wave agent did not start"
            )
            yield agent
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def _open(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
