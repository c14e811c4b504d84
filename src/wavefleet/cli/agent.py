"""`wave agent`: the fleet agent on this host, and `wave agent status` to see what it runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
from rich.console import Console

from wavefleet.errors import UsageError

__all__ = ["agent"]

DEFAULT_URL = "http://127.0.0.1:9190"


@click.group(
    name="agent",
    invoke_without_command=True,
    epilog="""\b
Examples:
  wave agent --config agent.yaml                 # serve until Ctrl-C (SIGTERM stops it too)
  WAVE_AGENT_SECRET=$(cat agent.secret) wave agent --config agent.yaml --host 0.0.0.0
  wave agent status                              # the engines of the agent on this host
  wave agent status --url http://desk:9190 --secret-file agent.secret
  wave agent status --url https://desk:9190 --tls-ca ca.pem --tls-cert gw.pem --tls-key gw.key
""",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The agent's config (agent.yaml): devices, models, defaults.",
)
@click.option("--host", default=None, help="Address to listen on [default: the config's, else 127.0.0.1].")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="Port [default: the config's, else 9190]."
)
@click.pass_context
def agent(ctx: click.Context, config_path: Path | None, host: str | None, port: int | None) -> None:
    """Run the fleet agent: an OpenAI API on this host whose models start when a request names them.

    One engine process per loaded model (llama-server by default), kept within each device's memory
    budget: idle models are evicted cheapest first to make room, unloaded after their ttl, and a
    crashed engine is restarted with backoff. The control API (/agent/v1/...) lists every model with
    its state and memory, and loads, unloads and drains them; it and the OpenAI API take the shared
    secret (WAVE_AGENT_SECRET or `secret:` in the config) as a bearer token.
    """
    if ctx.invoked_subcommand is not None:
        return
    if config_path is None:
        raise UsageError(
            "give --config agent.yaml (docs/agent.md has a two-model example), or `wave agent status`"
        )
    from wavefleet.agent.config import load_agent_config
    from wavefleet.agent.server import run_agent

    config = load_agent_config(config_path)
    changes: dict[str, object] = {}
    if host is not None:
        changes["host"] = host
    if port is not None:
        changes["port"] = port
    config = config.model_copy(update=changes)
    if config.telemetry is None:
        run_agent(config)
        return
    from wavefleet.cli.telemetry import fake_nvml_api
    from wavefleet.telemetry.discovery import discover

    found = discover(nvml=fake_nvml_api(config.telemetry.fake), cpu_tdp_w=config.telemetry.tdp_w())
    for note in found.notes:
        click.echo(f"  telemetry: {note}", err=True)
    if not found.telemetry.collectors:
        click.echo(
            "  telemetry: found no device to measure: requests are not metered here "
            "(`cpu_tdp:` or `cpu:` under `telemetry:` estimates a CPU from its TDP)",
            err=True,
        )
    try:
        run_agent(config, telemetry=found.telemetry)
    finally:
        found.telemetry.close()


@agent.command(name="status")
@click.option(
    "--url",
    envvar="WAVE_AGENT_URL",
    show_envvar=True,
    default=DEFAULT_URL,
    show_default=True,
    help="The agent's address.",
)
@click.option(
    "--secret-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Read the shared secret from this file's first line [default: $WAVE_AGENT_SECRET].",
)
@click.option(
    "--log-lines",
    type=click.IntRange(0, 200),
    default=0,
    show_default=True,
    help="Engine output lines per model.",
)
@click.option("--json", "as_json", is_flag=True, help="The control API's answer as JSON.")
@click.option(
    "--tls-ca",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="For an https agent: the CA that signed its certificate [default: the system's].",
)
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A client certificate, for an agent that requires one (client_ca); with --tls-key.",
)
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Its key.")
def status(
    url: str,
    secret_file: Path | None,
    log_lines: int,
    as_json: bool,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Print the host's engines: state, memory (estimated and measured), slots, load time, restarts."""
    import aiohttp

    from wavefleet.agent.client import AgentClient
    from wavefleet.agent.config import SECRET_ENV, SecretSource
    from wavefleet.agent.status import AgentStatus
    from wavefleet.agent.view import status_view

    if secret_file is not None:
        secret: str | None = SecretSource(file=secret_file).resolve()
    else:
        import os

        secret = os.environ.get(SECRET_ENV, "").strip() or None

    if (tls_cert is None) != (tls_key is None):
        raise UsageError("give --tls-cert and --tls-key together (the client certificate and its key)")
    context = None
    if tls_ca is not None or tls_cert is not None:
        from wavefleet.gateway.security.tls import client_tls_context

        context = client_tls_context(tls_ca, tls_cert, tls_key)

    async def fetch() -> AgentStatus:
        async with aiohttp.ClientSession() as session:
            client = AgentClient(url, secret=secret, session=session, ssl_context=context)
            return await client.status(log_lines=log_lines)

    found = asyncio.run(fetch())
    console = Console(highlight=False)
    if as_json:
        click.echo(json.dumps(found.model_dump(mode="json"), indent=2))
        return
    console.print(status_view(found, console))
