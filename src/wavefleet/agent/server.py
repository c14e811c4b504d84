"""The agent's HTTP server: OpenAI's API routed by `model` to its engines, the control API, /metrics.

    agent = Agent(config); await agent.start()
    async with aiohttp.ClientSession() as session:
        app = build_agent_app(agent, session=session, api_keys=keys, secret=secret)
        await serve_app(app, config.host, config.port, until=stop.wait)

The OpenAI half is the gateway's own app (`gateway.app.create_app`) whose backends are the
agent's engines (`EngineBackend`), so the agent forwards and streams exactly as `wave serve` does:
/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, /health and /metrics. Clients
authenticate with the shared secret or one of the config's `api_keys`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from prometheus_client.registry import Collector

from wavefleet.agent.backend import AgentMonitor, EngineBackend, EnginePolicy
from wavefleet.agent.config import AgentConfig
from wavefleet.agent.control import ControlApi
from wavefleet.agent.host import Agent
from wavefleet.agent.metrics import AgentCollector
from wavefleet.agent.units import format_bytes
from wavefleet.errors import UsageError
from wavefleet.gateway.addresses import is_loopback
from wavefleet.gateway.app import create_app
from wavefleet.gateway.config import BackendConfig, GatewayConfig, PolicyName, Timeouts
from wavefleet.gateway.energy import ENERGY_METER
from wavefleet.gateway.security.tls import mutual_tls_server_context
from wavefleet.gateway.server import serve_app, stop_on_signals
from wavefleet.telemetry.exporter import PrometheusBridge, Telemetry

__all__ = [
    "agent_gateway_config",
    "agent_keys",
    "build_agent_app",
    "engine_session",
    "run_agent",
    "serve_agent",
]

_ENGINE_FIRST_BYTE_S = 120.0  # after its model is ready, what an engine may take to answer
_ENGINE_TOTAL_S = 600.0


def agent_keys(config: AgentConfig) -> tuple[list[str], str | None]:
    """(every key the OpenAI API accepts, the shared secret). UsageError when the agent would listen
    beyond this machine without a secret."""
    secret = config.secret_value()
    keys = [key for key in (secret, *(source.resolve() for source in config.api_keys)) if key]
    if secret is None and not is_loopback(config.host):
        raise UsageError(
            f"refusing to listen on {config.host} without a shared secret: anyone who can reach this host "
            "could load, unload and use its models. Add `secret: {env: WAVE_AGENT_SECRET}` (or "
            "{file: PATH}) to the config, or listen on 127.0.0.1"
        )
    return keys, secret


def agent_gateway_config(agent: Agent) -> GatewayConfig:
    """The gateway config of the agent's OpenAI app: one backend per model, named for its engine and
    metered on the device it runs on."""
    load = agent.defaults.load_timeout
    backends = [
        BackendConfig.model_validate(
            {
                "name": m.engine,
                "url": "http://127.0.0.1/",
                "kind": m.config.kind,
                "models": [m.name],
                "device": _metered_device(agent, m.config.device),
            }
        )
        for m in agent.models.values()
    ]
    return GatewayConfig(
        host=agent.config.host,
        port=agent.config.port,
        policy=PolicyName.ROUND_ROBIN,  # one engine per model: nothing to choose (EnginePolicy routes)
        backends=backends,
        retries=0,
        # a request may first wait for its model to load
        timeouts=Timeouts(first_byte_s=load + _ENGINE_FIRST_BYTE_S, total_s=load + _ENGINE_TOTAL_S),
    )


def _metered_device(agent: Agent, device: str) -> str | None:
    """The telemetry device (`gpu<index>`) a model on one of the agent's GPUs is metered on; a
    Jetson measures its whole module (`board`). None for host RAM: the engine kind decides."""
    config = agent.config.devices.get(device)
    if config is None or config.gpu is None:
        return None
    return f"gpu{config.gpu}|board"


def build_agent_app(
    agent: Agent,
    *,
    session: aiohttp.ClientSession,
    api_keys: list[str],
    secret: str | None,
    telemetry: Telemetry | None = None,
) -> web.Application:
    """The agent's app: the gateway's OpenAI API over its engines, plus the control API; with
    `telemetry`, the host's device metrics on /metrics and /ui, and each request's energy metered."""
    backends = {m.engine: EngineBackend(agent, m.name, session) for m in agent.models.values()}
    collectors: list[Collector] = [agent.metrics.registry, AgentCollector(agent)]
    if telemetry is not None:
        collectors.append(PrometheusBridge(telemetry))
    app = create_app(
        agent_gateway_config(agent),
        AgentMonitor(agent),
        backends=dict(backends),
        policy=EnginePolicy(),
        api_keys=api_keys,
        collectors=collectors,
        telemetry=telemetry,
    )
    app.add_routes(ControlApi(agent, secret=secret, energy=app.get(ENERGY_METER)).routes())
    return app


def engine_session() -> aiohttp.ClientSession:
    """The session the agent's app sends requests to its engines on: many keep-alive connections."""
    connector = aiohttp.TCPConnector(limit=1024, limit_per_host=0, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)
    )


async def serve_agent(
    config: AgentConfig,
    *,
    until: Callable[[], Awaitable[object]],
    on_listening: Callable[[Agent, int], None] | None = None,
    agent: Agent | None = None,
    telemetry: Telemetry | None = None,
) -> None:
    """Start the agent, serve it on the config's host and port until `until()` is done, stop every engine."""
    keys, secret = agent_keys(config)
    tls = config.tls
    context = mutual_tls_server_context(tls.cert, tls.key, tls.client_ca) if tls is not None else None
    agent = agent or Agent(config)
    await agent.start()
    try:
        async with engine_session() as session:
            app = build_agent_app(agent, session=session, api_keys=keys, secret=secret, telemetry=telemetry)

            def listening(port: int) -> None:
                if on_listening is not None:
                    on_listening(agent, port)

            await serve_app(
                app, config.host, config.port, until=until, on_listening=listening, ssl_context=context
            )
    finally:
        await agent.aclose()


def _banner(agent: Agent, port: int) -> None:
    config = agent.config
    lines = [
        f"wave agent {config.name}: {'https' if config.tls else 'http'}://{config.host}:{port}/v1 (OpenAI API), "
        f"control {port}/agent/v1/status"
        + (" (mutual TLS)" if config.tls is not None and config.tls.client_ca is not None else "")
    ]
    for device in agent.devices.values():
        lines.append(
            f"  device {device.name}: budget {format_bytes(device.budget)} of {format_bytes(device.total)} ({device.source})"
        )
    for model in agent.models.values():
        where = "external " + str(model.config.url) if model.external else f"{model.config.device}"
        lines.append(
            f"  model {model.name}: {model.config.kind.value} on {where}, {model.config.context} x "
            f"{model.config.slots} slots, estimate {format_bytes(model.estimate.total)}"
            + (", pinned" if model.config.pinned else "")
            + (f" ({model.state.value}: {model.detail})" if model.state.value == "failed" else "")
        )
    if agent.config.secret_value() is None:
        lines.append(
            "  warning: no shared secret: every program on this machine can use and control the agent; "
            "set WAVE_AGENT_SECRET or `secret:` in the config"
        )
    print("\n".join(lines), file=sys.stderr, flush=True)


def run_agent(config: AgentConfig, *, telemetry: Telemetry | None = None) -> None:
    """Blocking entry point for `wave agent`: serve until SIGINT or SIGTERM; events go to stderr.
    `telemetry` (the caller closes it) is this host's collectors, when the config asks for them."""
    from wavefleet.gateway.server import run_blocking

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s agent: %(message)s", "%H:%M:%S"))
    log = logging.getLogger("wavefleet.agent")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    agent_keys(config)  # a refusal comes before anything starts

    async def main() -> None:
        with stop_on_signals() as stop:
            await serve_agent(config, until=stop.wait, on_listening=_banner, telemetry=telemetry)

    try:
        run_blocking(main())
    finally:
        log.removeHandler(handler)
