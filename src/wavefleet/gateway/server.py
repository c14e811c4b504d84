"""Running the gateway until interrupted: uvloop, one listening socket, a clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import signal
import ssl
import sys
from collections.abc import Sequence

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.markup import escape

from wavefleet.errors import UsageError
from wavefleet.gateway.app import create_app
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.monitor import PollingMonitor
from wavefleet.gateway.monitor.snapshot import BackendMonitor, StaticMonitor
from wavefleet.gateway.runner import GatewayRunner

__all__ = ["run_forever", "serve_until_stopped"]


async def serve_until_stopped(
    config: GatewayConfig,
    keys: list[str],
    monitor: BackendMonitor | None = None,
    ssl_context: ssl.SSLContext | None = None,
    poll: bool = True,
    notes: Sequence[str] = (),
) -> None:
    """Serve `config` on its host and port until SIGINT or SIGTERM.

    Without a `monitor`, backends are polled by a `PollingMonitor` on a session of its own (so
    polls never wait behind requests in the proxy's pool), or not at all with `poll=False`.
    """
    poll_session: aiohttp.ClientSession | None = None
    if monitor is None and poll:
        poll_session = aiohttp.ClientSession()
        monitor = PollingMonitor(config.backends, poll_session, interval_s=config.poll_interval_s)
    try:
        await _serve(config, keys, monitor or StaticMonitor(), ssl_context, notes)
    finally:
        if poll_session is not None:
            await poll_session.close()


async def _serve(
    config: GatewayConfig,
    keys: list[str],
    monitor: BackendMonitor,
    ssl_context: ssl.SSLContext | None,
    notes: Sequence[str],
) -> None:
    app = create_app(config, monitor, api_keys=keys)
    # handler_cancellation: a client that disconnects cancels its handler, which aborts the upstream request
    runner = GatewayRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=1024, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror}; pick another --port"
        ) from exc
    # Everything built so far lives as long as the process: move it out of the collector's way,
    # so full collections under load walk only per-request garbage (imports alone are ~100k objects).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    port = runner.addresses[0][1]  # the real one when --port 0 let the OS choose
    names = ", ".join(f"{b.name} ({b.kind.value} {b.url})" for b in config.backends)
    scheme = "https" if ssl_context else "http"
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(
        f"wave serve: {scheme}://{config.host}:{port}/v1  policy {config.policy.value}  backends: {names}",
        markup=False,
    )
    for note in notes:
        console.print(f"[yellow]warning:[/] {escape(note)}")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run_forever(
    config: GatewayConfig,
    keys: list[str],
    ssl_context: ssl.SSLContext | None = None,
    poll: bool = True,
    notes: Sequence[str] = (),
) -> None:
    """Blocking entry point for `wave serve`, on uvloop where it exists; `notes` are warnings
    printed under the start-up line."""
    main = serve_until_stopped(config, keys, None, ssl_context, poll=poll, notes=notes)
    if sys.platform != "win32":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:
        asyncio.run(main)
