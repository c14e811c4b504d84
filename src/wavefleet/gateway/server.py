"""Running the gateway until interrupted: uvloop, one listening socket, a clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys

from aiohttp import web
from rich.console import Console

from wavefleet.gateway.app import create_app
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.monitor.snapshot import BackendMonitor, StaticMonitor

__all__ = ["run_forever", "serve_until_stopped"]


async def serve_until_stopped(
    config: GatewayConfig, keys: list[str], monitor: BackendMonitor | None = None
) -> None:
    """Serve `config` on its host and port until SIGINT or SIGTERM."""
    app = create_app(config, monitor or StaticMonitor(), api_keys=keys)
    # handler_cancellation: a client that disconnects cancels its handler, which aborts the upstream request
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=1024)
    await site.start()
    # Everything built so far lives as long as the process: move it out of the collector's way,
    # so full collections under load walk only per-request garbage (imports alone are ~100k objects).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    names = ", ".join(f"{b.name} ({b.kind.value} {b.url})" for b in config.backends)
    Console(stderr=True, highlight=False).print(
        f"wave serve: http://{config.host}:{config.port}/v1  policy {config.policy.value}  backends: {names}"
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run_forever(config: GatewayConfig, keys: list[str]) -> None:
    """Blocking entry point for `wave serve`, on uvloop where it exists."""
    if sys.platform != "win32":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve_until_stopped(config, keys))
    else:
        asyncio.run(serve_until_stopped(config, keys))
