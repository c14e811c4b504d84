"""`wave up`: an OpenAI-compatible endpoint on this machine in one command, no GPU needed."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from wavefleet.models.bundled import DEFAULT_CTX
from wavefleet.up import DEFAULT_SLOTS

__all__ = ["up"]


@click.command(name="up")
@click.option(
    "--model",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Your own GGUF model file [default: the bundled SmolLM2-135M-Instruct Q4_1].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the gateway listens on.")
@click.option("--port", type=int, default=8080, show_default=True, help="Gateway port; 0 picks a free one.")
@click.option(
    "--api-key",
    envvar="WAVE_API_KEY",
    default=None,
    help="Key clients send [default: a new random key per run].",
)
@click.option(
    "--threads", type=int, default=None, help="CPU threads for llama.cpp [default: physical cores]."
)
@click.option(
    "--ctx", type=int, default=DEFAULT_CTX, show_default=True, help="Context window of each slot, in tokens."
)
@click.option(
    "--slots",
    type=int,
    default=DEFAULT_SLOTS,
    show_default=True,
    help="Requests the engine runs at once (llama-server's continuous batching).",
)
def up(
    model: Path | None, host: str, port: int, api_key: str | None, threads: int | None, ctx: int, slots: int
) -> None:
    """Start llama.cpp's llama-server with a small bundled model, and the gateway's API in front of it.

    Works on any machine, without a GPU and without downloads: the model ships with Wavefleet.
    Prints the URL, the API key, and a curl and an openai-client example to paste.

    \b
    Examples:
      wave up                                  # bundled SmolLM2-135M on http://127.0.0.1:8080/v1
      wave up --model ~/models/qwen2.5-1.5b-instruct-q4_k_m.gguf --ctx 8192
      wave up --port 0 --api-key "$WAVE_API_KEY"
      wave up --host 0.0.0.0                   # reachable from your LAN (key required, printed)

    The engine runs --slots requests at once (batched); more wait their turn. A crashed engine is
    restarted. On a machine with an NVIDIA GPU and a CUDA build, the model runs on GPU 0.
    Ctrl-C stops both.
    """
    from wavefleet.gateway.server import run_blocking
    from wavefleet.up import UpOptions, run_up

    options = UpOptions(
        model=model, host=host, port=port, api_key=api_key, threads=threads, ctx=ctx, slots=slots
    )
    run_blocking(run_up(options, Console(highlight=False)))
