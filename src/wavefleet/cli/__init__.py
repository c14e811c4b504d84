"""The `wave` command: one click group, one module per subcommand, imported only when used.

Subcommands load lazily so `wave --help` and `wave plan` stay fast: the gateway's and the
engine's heavy imports happen only for `wave serve` and `wave up`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click
from rich.console import Console
from rich.markup import escape

from wavefleet import __version__
from wavefleet.errors import WaveError

__all__ = ["cli", "main"]

# name -> (module under wavefleet.cli, attribute, one-line help shown by `wave --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "plan": ("plan", "plan", "MoSCoW plan for your fleet: priorities, placements, findings, roadmap."),
    "size": ("size", "size", "Size a model on a device: memory fit, KV cache, context, concurrency, speed."),
    "catalog": (
        "catalog",
        "catalog",
        "Browse the sourced catalog of hardware, models, quantizations, services.",
    ),
    "render": ("render", "render", "Render deployable artifacts per host from the plan."),
    "serve": ("serve", "serve", "Run the OpenAI-compatible gateway in front of your engines."),
    "up": ("up", "up", "Start llama-server (4 slots) with the gateway in front (works anywhere)."),
    "agent": ("agent", "agent", "Run this host's engines on demand within its memory; `status` shows them."),
    "bench": ("bench", "bench", "Load-test an OpenAI-compatible endpoint with standard metrics."),
    "sim": ("sim", "sim", "Start simulated engines that behave like real GPUs and CPUs."),
    "keys": ("keys", "keys", "Create, list and revoke the gateway's API keys."),
    "audit": ("audit", "audit", "Query and export the audit trail: requests, and operators' events."),
    "model": (
        "model",
        "model",
        "Fetch, quantize and check GGUF model files: the steps a CI job runs before a rollout.",
    ),
    "rollout": (
        "rollout",
        "rollout",
        "Blue-green model updates on the gateway: canary steps, automatic promote or roll back.",
    ),
    "telemetry": (
        "telemetry",
        "telemetry",
        "This host's GPU, CPU and Jetson power and readings, once or served to Prometheus.",
    ),
    "rag": ("rag", "rag", "Retrieval over your own documents: ingest, search, cited answers, eval."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if _available(name))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not _available(cmd_name):
            return None
        module_name, attribute, _ = COMMANDS[cmd_name]
        module = importlib.import_module(f"wavefleet.cli.{module_name}")
        command = getattr(module, attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _available(name: str) -> bool:
    return importlib.util.find_spec(f"wavefleet.cli.{COMMANDS[name][0]}") is not None


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="wave")
def cli() -> None:
    """Wavefleet: run your own AI platform across a few machines of your own.

    \b
    The parts form one flow:
      wave plan     inventory + catalog -> sizing -> MoSCoW priorities, placements, roadmap
      wave render   plan -> compose files, NGINX, Prometheus, Grafana, LXC, Vault, gateway config
      wave serve    OpenAI-compatible gateway routing across vLLM, llama.cpp, SGLang, Triton, NIM
      wave up       the gateway plus llama.cpp's llama-server and a small bundled model
      wave bench    load tests with vLLM's metric definitions; wave sim: engines without GPUs

    Start with `wave up` to get an endpoint on this machine, or `wave plan` to see your fleet's plan.
    """


def main() -> None:
    """Entry point: run the CLI and turn Wavefleet errors into a message and an exit code."""
    try:
        # Without standalone mode click returns a command's `Exit` status instead of raising it.
        status = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        Console(stderr=True).print("aborted")
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except WaveError as exc:
        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    if isinstance(status, int) and status:
        sys.exit(status)
