"""The gateway as an aiohttp application, built from a config and a monitor.

    monitor = StaticMonitor()                 # or the polling monitor, built on its own session
    app = create_app(config, monitor)         # backends from config.backends, one pooled session
    web.run_app(app, handler_cancellation=True)

`handler_cancellation=True` matters: when a client disconnects, its handler is cancelled and the
upstream request is aborted at once instead of when the next event arrives. Tests pass
`backends=` (e.g. `FakeBackend`s) to skip HTTP to engines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

import aiohttp
from aiohttp import web
from prometheus_client.registry import Collector

from wavefleet.agent.client import AgentClient
from wavefleet.gateway.api import EXPLAIN_HEADER, EXPLANATION, GatewayApi
from wavefleet.gateway.backends import Backend, build_backend
from wavefleet.gateway.config import AgentRef, GatewayConfig
from wavefleet.gateway.deadlines import DeadlineWatch
from wavefleet.gateway.energy import ENERGY_METER, EnergyMeter
from wavefleet.gateway.federation import AgentBackend, agent_secret, agent_ssl, split_agents
from wavefleet.gateway.inflight import InflightCounts
from wavefleet.gateway.metrics import GatewayMetrics
from wavefleet.gateway.model_table import ModelTable
from wavefleet.gateway.monitor.snapshot import BackendMonitor, StaticMonitor
from wavefleet.gateway.proxy import Forwarder
from wavefleet.gateway.responses import with_fallbacks
from wavefleet.gateway.rollout.controller import RolloutController
from wavefleet.gateway.rollout.routes import RolloutCollector, RolloutRoutes
from wavefleet.gateway.rollout.split import VersionRouter
from wavefleet.gateway.rollout.store import RolloutStore
from wavefleet.gateway.routing.base import RoutingPolicy
from wavefleet.gateway.routing.factory import build_policy
from wavefleet.gateway.security.audit import AuditCollector
from wavefleet.gateway.security.authn import Authenticator
from wavefleet.gateway.security.db import resolve_db_path
from wavefleet.gateway.security.events import record_event
from wavefleet.gateway.security.gate import SecurityGate
from wavefleet.gateway.security.middleware import install as install_security
from wavefleet.gateway.security.middleware import outcome_reporter
from wavefleet.gateway.ui.board import StatusBoard
from wavefleet.gateway.ui.pages import StatusPages
from wavefleet.telemetry.exporter import Telemetry

__all__ = ["create_app", "upstream_session"]


def upstream_session(config: GatewayConfig) -> aiohttp.ClientSession:
    """One pooled session for all engines: many keep-alive connections, connect timeout only
    (the other deadlines are per request, see proxy.py)."""
    connector = aiohttp.TCPConnector(limit=4096, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.timeouts.connect_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


def create_app(
    config: GatewayConfig,
    monitor: BackendMonitor | None = None,
    *,
    backends: Mapping[str, Backend] | None = None,
    policy: RoutingPolicy | None = None,
    api_keys: list[str] | None = None,
    security: SecurityGate | None = None,
    telemetry: Telemetry | None = None,
    collectors: Sequence[Collector] = (),
    agents: Mapping[str, AgentRef] | None = None,
    versions: VersionRouter | None = None,
) -> web.Application:
    """The gateway app. Keys: `api_keys` if given, else those the config resolves. `collectors`
    add their metrics to its /metrics (the fleet agent's engines). Fleet agents (the config's
    `agents`, or `agents` for a config `split_agents` already turned into backends) are backends
    reached with their shared secret.

    The status page (/ui) shows `telemetry`'s devices when given (the caller closes it), and
    each request's energy and cost is metered from them (`app[ENERGY_METER]`, gateway/energy.py).

    With `security` (or a config whose `security` section turns anything on), the security
    layer's middleware checks every key (static ones too), limits, screens and audits; without
    it, the handlers check the static keys with the same `Authenticator`.

    `versions` splits the traffic of models under rollout (gateway/rollout/); the app makes its
    own, and with fleet agents a rollout controller that drives it, unless given one (tests)."""
    config, found = split_agents(config)
    agents = {**found, **(agents or {})}
    monitor = monitor or StaticMonitor()
    policy = policy or build_policy(config)
    keys = api_keys if api_keys is not None else [k for k in (s.resolve() for s in config.api_keys) if k]
    inflight = InflightCounts(b.name for b in config.backends)
    table = ModelTable(config, monitor, listed_only=agents)
    metrics = GatewayMetrics(
        monitor=monitor, backends=config.backends, inflight=inflight, listed=table.is_listed
    )
    chosen: dict[str, Backend] = dict(backends or {})
    versions = versions if versions is not None else VersionRouter()
    watch = DeadlineWatch()
    meter = (
        EnergyMeter(
            telemetry=telemetry,
            backends=config.backends,
            clock=watch.now,
            tariff=config.energy.tariff(),
            interval_s=config.energy.sample_interval_s,
            # the engines' own timers of prefill and decode, as the monitor last polled them
            timings=lambda backend: monitor.snapshot(backend).timings,
            registry=metrics.registry,
            agents=agents,  # they meter their own devices; the meter asks them
        )
        if telemetry is not None
        else None
    )
    forwarder = Forwarder(
        backends=chosen,
        monitor=monitor,
        policy=policy,
        metrics=metrics,
        timeouts=config.timeouts,
        retries=config.retries,
        inflight=inflight,
        watch=watch,
        retry_after_s=max(1.0, config.poll_interval_s),
        energy=meter,
        versions=versions,
    )
    if security is None and config.security.active():
        security = SecurityGate.build(config.security, keys)
    audit = security.audit if security is not None else None
    authenticator = security.authenticator if security is not None else Authenticator(static_keys=keys)
    api = GatewayApi(
        config=config,
        monitor=monitor,
        table=table,
        policy=policy,
        forwarder=forwarder,
        metrics=metrics,
        authenticator=authenticator,
        inflight=inflight,
        report=outcome_reporter if security is not None else None,
        health_checks={"audit": audit.health} if audit is not None else None,
        versions=versions,
    )
    rollouts = RolloutRoutes(authenticator)
    metrics.registry.register(RolloutCollector(rollouts, versions))
    if audit is not None:
        metrics.registry.register(AuditCollector(audit))
    for collector in collectors:
        metrics.registry.register(collector)

    board = StatusBoard(
        config=config,
        monitor=monitor,
        table=table,
        metrics=metrics,
        inflight=inflight,
        telemetry=telemetry,
        meter=meter,
    )
    pages = StatusPages(board=board, authenticator=authenticator)
    app = web.Application(client_max_size=config.max_body_bytes)
    app.add_routes(with_fallbacks([*api.routes(), *pages.routes(), *rollouts.routes()]))
    app.on_response_prepare.append(_add_explain)
    if security is not None:
        install_security(app, security)
    if config.rag is not None:
        from wavefleet.rag.seam import install_rag  # the rag parts load only where configured

        install_rag(app, config.rag, registry=metrics.registry)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        session: aiohttp.ClientSession | None = None
        if backends is None:
            session = upstream_session(config)
            chosen.update(
                {b.name: build_backend(b, session) for b in config.backends if b.name not in agents}
            )
            chosen.update(
                {name: AgentBackend(a, session, secret=agent_secret(a)) for name, a in agents.items()}
            )
        forwarder.add_backends(chosen)
        energy_session = aiohttp.ClientSession() if meter is not None and agents else None
        if meter is not None and energy_session is not None:
            meter.add_agents(
                {
                    name: AgentClient(
                        str(agent.url),
                        secret=agent_secret(agent),
                        session=energy_session,
                        timeout_s=5.0,
                        ssl_context=agent_ssl(agent),
                    )
                    for name, agent in agents.items()
                }
            )
        await _discover(config, chosen, table)
        watch.start()
        await monitor.start()
        if meter is not None:
            await meter.start()
        controller = await _rollouts(config, agents, chosen, table, versions) if agents else None
        rollouts.controller = controller
        try:
            yield
        finally:
            if controller is not None:
                await controller.aclose()
                await controller.close()
            if meter is not None:
                await meter.aclose()
            if energy_session is not None:
                await energy_session.close()
            await monitor.aclose()
            await watch.aclose()
            for backend in chosen.values():
                await backend.aclose()
            if session is not None:
                await session.close()

    app.cleanup_ctx.append(lifecycle)
    if meter is not None:
        app[ENERGY_METER] = meter
    return app


async def _rollouts(
    config: GatewayConfig,
    agents: Mapping[str, AgentRef],
    backends: Mapping[str, Backend],
    table: ModelTable,
    versions: VersionRouter,
) -> RolloutController:
    """The rollout controller, with the rollout under way (if any) resumed or rolled back."""
    path = config.rollout.db or config.security.db or resolve_db_path(None)
    path = path.expanduser()
    session = aiohttp.ClientSession()
    clients = {
        name: AgentClient(
            str(agent.url), secret=agent_secret(agent), session=session, ssl_context=agent_ssl(agent)
        )
        for name, agent in agents.items()
    }
    controller = RolloutController(
        store=RolloutStore.open(path),
        router=versions,
        agents=clients,
        backends=backends,
        table=table,
        events=lambda event: record_event(path, event),
        session=session,
    )
    await controller.resume()
    return controller


async def _add_explain(request: web.Request, response: web.StreamResponse) -> None:
    """The routing explanation the client asked for (x-wave-explain), on whatever answer it gets."""
    if EXPLAIN_HEADER not in request.headers:  # not asked for (a header lookup costs less than a state miss)
        return
    explanation = request.get(EXPLANATION)
    if explanation is not None:
        response.headers[EXPLAIN_HEADER] = explanation


async def _discover(config: GatewayConfig, backends: Mapping[str, Backend], table: ModelTable) -> None:
    """Read each undeclared backend's model list once, so routing works before the first poll."""
    undeclared = [b.name for b in config.backends if not b.models and b.name in backends]
    listings = await asyncio.gather(*(backends[name].models() for name in undeclared))
    table.set_discovered(dict(zip(undeclared, listings, strict=True)))
