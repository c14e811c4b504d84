"""`wave serve`: the OpenAI-compatible gateway in front of your engines."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import click
from click.core import ParameterSource
from pydantic import ValidationError

from wavefleet.agent.config import SECRET_ENV
from wavefleet.agent.secret import SecretSource
from wavefleet.cli.security_options import security_options
from wavefleet.errors import UsageError
from wavefleet.gateway.addresses import is_loopback
from wavefleet.gateway.config import AgentRef, BackendConfig, GatewayConfig, PolicyName, load_gateway_config
from wavefleet.gateway.security.options import SecurityFlags, apply_security_flags
from wavefleet.gateway.security.tls import server_tls_context

__all__ = ["gateway_keys", "parse_agent", "parse_backend", "refuse_open_bind", "serve"]


def parse_backend(spec: str) -> BackendConfig:
    """`NAME=URL[,kind=K][,models=A|B][,gpu=true]` as a backend."""
    head, *options = spec.split(",")
    name, sep, url = head.partition("=")
    if not sep or not name or not url:
        raise UsageError(
            f"--backend {spec!r}: expected NAME=URL, e.g. --backend gpu=http://desktop:8000,kind=vllm"
        )
    fields: dict[str, object] = {"name": name, "url": url}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise UsageError(f"--backend {spec!r}: option {option!r} is not KEY=VALUE")
        if key == "models":
            fields["models"] = [m for m in value.split("|") if m]
        elif key == "gpu":
            fields["gpu"] = value.lower() in ("1", "true", "yes")
        elif key in ("kind", "api_key_env", "triton_model", "host", "device"):
            fields[key] = value
        else:
            raise UsageError(
                f"--backend {spec!r}: unknown option {key!r} (known: kind, models, gpu, api_key_env, triton_model)"
            )
    try:
        return BackendConfig.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise UsageError(f"--backend {spec!r}: {problems}") from exc


def parse_agent(spec: str, secret: SecretSource | None) -> AgentRef:
    """`URL` or `NAME=URL` as a fleet agent; without a name, its host and port name it."""
    name, sep, url = spec.partition("=")
    if not sep:
        name, url = "", spec
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(f"--agent {spec!r}: expected URL or NAME=URL, e.g. --agent http://desk:9190")
    if not name:
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{parsed.hostname}-{parsed.port or 9190}").strip("-")
    try:
        return AgentRef.model_validate({"name": name, "url": url, "secret": secret})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise UsageError(f"--agent {spec!r}: {problems}") from exc


def refuse_open_bind(host: str, keys: list[str]) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if not keys and not is_loopback(host):
        raise UsageError(
            f"refusing to listen on {host} without an API key: anyone who can reach this machine could use "
            "your engines. Give --api-key KEY (or set WAVE_API_KEY, or api_keys in the config), "
            "or listen on 127.0.0.1"
        )


_OPEN = (
    "no API key: anyone who can reach this machine's loopback (every program and user on it) can use "
    "this gateway; set WAVE_API_KEY, give --api-key-file, or use --db with `wave keys create`"
)


def gateway_keys(
    config: GatewayConfig, api_key: str | None, api_key_file: Path | None, source: ParameterSource | None
) -> tuple[list[str], list[str]]:
    """The static keys (config, --api-key or WAVE_API_KEY, --api-key-file) and the warnings they call for.

    `source` says where --api-key came from: an empty one typed on the command line is a mistake
    (an unset variable expanded to nothing), not a wish to run without keys."""
    keys = [k for k in (s.resolve() for s in config.api_keys) if k]
    notes: list[str] = []
    if source is ParameterSource.COMMANDLINE:
        if not api_key:
            raise UsageError(
                '--api-key is empty (was it `--api-key "$WAVE_API_KEY"` with the variable unset?): '
                "set WAVE_API_KEY, give --api-key-file PATH, or leave --api-key out to run without keys on loopback"
            )
        notes.append(
            "a key given with --api-key shows in the process list (ps, /proc); "
            "prefer the WAVE_API_KEY variable or --api-key-file"
        )
    if api_key:
        keys.append(api_key)
    if api_key_file is not None:
        try:
            key = api_key_file.read_text().strip().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--api-key-file {api_key_file}: cannot read it ({exc})") from exc
        if not key or not key[0].strip():
            raise UsageError(f"--api-key-file {api_key_file} is empty: put the key on its first line")
        keys.append(key[0].strip())
    if not keys:
        notes.append(_OPEN)
    return keys, notes


def build_config(
    config_path: Path | None,
    host: str | None,
    port: int | None,
    backends: tuple[str, ...],
    policy: str | None,
    agents: tuple[str, ...] = (),
    agent_secret_file: Path | None = None,
) -> GatewayConfig:
    """The config file (if any) with the flags laid over it. Agents given as flags use the secret
    in `agent_secret_file`, else $WAVE_AGENT_SECRET when it is set."""
    config = load_gateway_config(config_path) if config_path else GatewayConfig()
    changes: dict[str, object] = {}
    if host is not None:
        changes["host"] = host
    if port is not None:
        changes["port"] = port
    if policy is not None:
        changes["policy"] = PolicyName(policy)
    if backends:
        given = [parse_backend(spec) for spec in backends]
        names = {b.name for b in given}
        changes["backends"] = [b for b in config.backends if b.name not in names] + given
    if agents:
        secret = (
            SecretSource(file=agent_secret_file)
            if agent_secret_file is not None
            else SecretSource(env=SECRET_ENV)
            if os.environ.get(SECRET_ENV, "").strip()
            else None
        )
        given_agents = [parse_agent(spec, secret) for spec in agents]
        taken = {a.name for a in given_agents}
        changes["agents"] = [a for a in config.agents if a.name not in taken] + given_agents
    merged = config.model_copy(update=changes)
    if not merged.backends and not merged.agents:
        raise UsageError(
            "no backends: give --backend NAME=URL, --agent URL, or a --config file that lists backends or agents"
        )
    for agent in merged.agents:
        if agent.secret is not None:
            agent.secret.resolve()  # an unset variable or unreadable file stops here, named
    return GatewayConfig.model_validate(merged.model_dump())


def with_energy_flags(
    config: GatewayConfig, *, tariff: float | None, currency: str | None, amortisation: float | None
) -> GatewayConfig:
    """The config's energy section with --tariff, --currency and --amortisation laid over it."""
    changes: dict[str, object] = {}
    if tariff is not None:
        changes["price_per_kwh"] = tariff
    if currency is not None:
        if not currency.strip():
            raise UsageError("--currency is empty: give a currency code such as EUR or USD")
        changes["currency"] = currency.strip()
    if amortisation is not None:
        changes["amortisation_per_hour"] = amortisation
    return config.model_copy(update={"energy": config.energy.model_copy(update=changes)})


@click.command(
    epilog="""\b
Examples:
  wave serve --backend main=http://127.0.0.1:8000
  wave serve --backend gpu=http://desktop:8000,kind=vllm,models=llama-3.1-8b \\
             --backend cpu=http://xps13:8081,kind=llamacpp --policy least-loaded
  WAVE_API_KEY=sk-... wave serve --config wave.yaml --host 0.0.0.0
  WAVE_AGENT_SECRET=... wave serve --agent http://desk:9190 --agent http://xps13:9190
  curl -H "Authorization: Bearer $WAVE_API_KEY" localhost:8080/v1/models
"""
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Gateway config (wave.yaml).",
)
@click.option(
    "--host", default=None, help="Address to listen on [default: 127.0.0.1; others need an API key]."
)
@click.option("--port", type=int, default=None, help="Port to listen on [default: 8080].")
@click.option(
    "--backend",
    "backends",
    multiple=True,
    metavar="NAME=URL[,kind=K][,models=A|B]",
    help="An engine to route to (repeatable). kind: vllm, llamacpp, sglang, tgi, nim, triton, openai. "
    "Without models=, the engine's /v1/models is read; an engine that lists none takes any model name.",
)
@click.option(
    "--agent",
    "agents",
    multiple=True,
    metavar="[NAME=]URL",
    help="A fleet agent (`wave agent`) to route to (repeatable): every model it lists, started on demand. "
    "Its shared secret comes from --agent-secret-file or WAVE_AGENT_SECRET.",
)
@click.option(
    "--agent-secret-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Read the shared secret of the --agent agents from this file's first line.",
)
@click.option(
    "--policy",
    type=click.Choice([p.value for p in PolicyName]),
    default=None,
    help="Routing policy [default: least-loaded].",
)
@click.option(
    "--no-poll",
    is_flag=True,
    help="Do not poll the engines' health and load: every backend counts as healthy and idle.",
)
@click.option(
    "--api-key",
    envvar="WAVE_API_KEY",
    show_envvar=True,
    default=None,
    help="Key clients must send as a bearer token. Prefer the WAVE_API_KEY variable or --api-key-file: "
    "a key on the command line shows in the process list.",
)
@click.option(
    "--api-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Read the bearer key from this file's first line (e.g. made with `openssl rand -hex 32`).",
)
@click.option(
    "--telemetry",
    "telemetry_on",
    is_flag=True,
    help="Read this host's devices (NVIDIA GPUs, RAPL CPU, Jetson) for the status page at /ui.",
)
@click.option(
    "--telemetry-fake",
    metavar="NAME|FILE",
    default=None,
    help="With --telemetry: replay a recorded GPU instead of NVML (as `wave telemetry --fake`).",
)
@click.option(
    "--tariff",
    type=click.FloatRange(min=0),
    metavar="PRICE",
    default=None,
    help="With --telemetry: electricity price per kWh, for each request's cost (config: energy.price_per_kwh).",
)
@click.option(
    "--currency",
    metavar="CODE",
    default=None,
    help="Currency of --tariff and --amortisation, e.g. EUR (config: energy.currency) [default: USD].",
)
@click.option(
    "--amortisation",
    type=click.FloatRange(min=0),
    metavar="PER_HOUR",
    default=None,
    help="With --telemetry: this host's hardware cost per hour, charged for the device time each "
    "request held (config: energy.amortisation_per_hour).",
)
@security_options
def serve(
    config_path: Path | None,
    host: str | None,
    port: int | None,
    backends: tuple[str, ...],
    agents: tuple[str, ...],
    agent_secret_file: Path | None,
    policy: str | None,
    no_poll: bool,
    api_key: str | None,
    api_key_file: Path | None,
    telemetry_on: bool,
    telemetry_fake: str | None,
    tariff: float | None,
    currency: str | None,
    amortisation: float | None,
    security: SecurityFlags,
) -> None:
    """Run the OpenAI-compatible gateway: /v1/chat/completions, /v1/completions, /v1/embeddings,
    /v1/models, /health and /metrics, routing each request across your engines by live load.

    Each engine's health and load are polled in its own metrics dialect (every poll_interval_s);
    flags override the config file. The answer's `x-wave-backend` header names the engine that served.
    A live status page is at /ui, behind the same keys (docs/ui.md). With --telemetry, each
    request's energy and cost go into the audit trail and /metrics (docs/telemetry.md).
    """
    from wavefleet.gateway.server import run_forever

    config = build_config(config_path, host, port, backends, policy, agents, agent_secret_file)
    config = config.model_copy(update={"security": apply_security_flags(config.security, security)})
    source = click.get_current_context().get_parameter_source("api_key")
    keys, notes = gateway_keys(config, api_key, api_key_file, source)
    tls_files = security.tls_files()
    tls = server_tls_context(*tls_files) if tls_files is not None else None
    credentials = config.security.db is not None or config.security.oidc is not None
    refuse_open_bind(config.host, keys if keys or not credentials else ["(stored keys or OIDC)"])
    if credentials:
        notes = [note for note in notes if note != _OPEN]
    if telemetry_fake is not None and not telemetry_on:
        raise UsageError("--telemetry-fake replays a GPU for --telemetry: give both, or neither")
    priced = [
        name for name, given in (("--tariff", tariff), ("--amortisation", amortisation)) if given is not None
    ]
    if priced and not telemetry_on:
        raise UsageError(
            f"{' and '.join(priced)} price the energy --telemetry measures: add --telemetry, or leave them out"
        )
    config = with_energy_flags(config, tariff=tariff, currency=currency, amortisation=amortisation)
    if not telemetry_on:
        run_forever(config, keys, ssl_context=tls, poll=not no_poll, notes=notes)
        return
    from wavefleet.cli.telemetry import fake_nvml_api
    from wavefleet.telemetry.discovery import discover

    found = discover(nvml=fake_nvml_api(telemetry_fake))
    if not found.telemetry.collectors:
        elsewhere = (
            "; requests through fleet agents get the energy those with `telemetry:` measure"
            if config.agents
            else ""
        )
        notes = [
            *notes,
            "--telemetry found no device here: no NVIDIA GPU, RAPL counter or Jetson "
            f"(`wave telemetry` says why for each, and estimates a CPU from its TDP){elsewhere}",
        ]
    try:
        run_forever(config, keys, ssl_context=tls, poll=not no_poll, notes=notes, telemetry=found.telemetry)
    finally:
        found.telemetry.close()
