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
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web

from wavefleet.gateway.api import EXPLAIN_HEADER, EXPLANATION, GatewayApi
from wavefleet.gateway.backends import Backend, build_backend
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.deadlines import DeadlineWatch
from wavefleet.gateway.inflight import InflightCounts
from wavefleet.gateway.metrics import GatewayMetrics
from wavefleet.gateway.model_table import ModelTable
from wavefleet.gateway.monitor.snapshot import BackendMonitor, StaticMonitor
from wavefleet.gateway.proxy import Forwarder
from wavefleet.gateway.responses import openai_errors
from wavefleet.gateway.routing.base import RoutingPolicy
from wavefleet.gateway.routing.factory import build_policy
from wavefleet.gateway.security.audit import AuditCollector
from wavefleet.gateway.security.authn import Authenticator
from wavefleet.gateway.security.gate import SecurityGate
from wavefleet.gateway.security.middleware import install as install_security
from wavefleet.gateway.security.middleware import outcome_reporter

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
) -> web.Application:
    """The gateway app. Keys: `api_keys` if given, else those the config resolves.

    With `security` (or a config whose `security` section turns anything on), the security
    layer's middleware checks every key (static ones too), limits, screens and audits; without
    it, the handlers check the static keys with the same `Authenticator`."""
    monitor = monitor or StaticMonitor()
    policy = policy or build_policy(config)
    keys = api_keys if api_keys is not None else [k for k in (s.resolve() for s in config.api_keys) if k]
    inflight = InflightCounts(b.name for b in config.backends)
    table = ModelTable(config, monitor)
    metrics = GatewayMetrics(
        monitor=monitor, backends=config.backends, inflight=inflight, listed=table.is_listed
    )
    chosen: dict[str, Backend] = dict(backends or {})
    watch = DeadlineWatch()
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
    )
    if security is None and config.security.active():
        security = SecurityGate.build(config.security, keys)
    audit = security.audit if security is not None else None
    api = GatewayApi(
        config=config,
        monitor=monitor,
        table=table,
        policy=policy,
        forwarder=forwarder,
        metrics=metrics,
        authenticator=security.authenticator if security is not None else Authenticator(static_keys=keys),
        inflight=inflight,
        report=outcome_reporter if security is not None else None,
        health_checks={"audit": audit.health} if audit is not None else None,
    )
    if audit is not None:
        metrics.registry.register(AuditCollector(audit))

    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[openai_errors])
    app.add_routes(api.routes())
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
            chosen.update({b.name: build_backend(b, session) for b in config.backends})
        forwarder.add_backends(chosen)
        await _discover(config, chosen, table)
        watch.start()
        await monitor.start()
        try:
            yield
        finally:
            await monitor.aclose()
            await watch.aclose()
            for backend in chosen.values():
                await backend.aclose()
            if session is not None:
                await session.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _add_explain(request: web.Request, response: web.StreamResponse) -> None:
    """The routing explanation the client asked for (x-wave-explain), on whatever answer it gets."""
    explanation = request.get(EXPLANATION)
    if explanation is not None:
        response.headers[EXPLAIN_HEADER] = explanation


async def _discover(config: GatewayConfig, backends: Mapping[str, Backend], table: ModelTable) -> None:
    """Read each undeclared backend's model list once, so routing works before the first poll."""
    undeclared = [b.name for b in config.backends if not b.models and b.name in backends]
    listings = await asyncio.gather(*(backends[name].models() for name in undeclared))
    table.set_discovered(dict(zip(undeclared, listings, strict=True)))
