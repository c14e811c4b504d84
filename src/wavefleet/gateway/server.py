"""Running the gateway until interrupted: uvloop, one listening socket, a clean shutdown.

`wave serve` runs `serve_until_stopped`; `wave up` (wavefleet/up.py) builds its own app in front
of the embedded engine and serves it with the same two helpers:

    with stop_on_signals() as stop:                      # SIGINT or SIGTERM sets `stop`
        await serve_app(app, host, port, until=stop.wait, on_listening=print_banner)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any

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

__all__ = ["run_blocking", "run_forever", "serve_app", "serve_until_stopped", "stop_on_signals"]


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event that SIGINT or SIGTERM sets, for as long as the block runs (on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _ignore_port(port: int) -> None:
    return None


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    *,
    until: Callable[[], Awaitable[object]],
    ssl_context: ssl.SSLContext | None = None,
    on_listening: Callable[[int], None] = _ignore_port,
) -> None:
    """Serve `app` on `host:port` until what `until()` returns is done (its exception, if any, is
    raised), then shut the server down. `on_listening` gets the port bound (the OS's choice for port 0).

    A port that cannot be bound is a UsageError naming it."""
    # handler_cancellation: a client that disconnects cancels its handler, which aborts the upstream request
    runner = GatewayRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port, or --port 0 for any free one"
            ) from exc
        # Everything built so far lives as long as the process: move it out of the collector's way,
        # so full collections under load walk only per-request garbage (imports alone are ~100k objects).
        gc.collect()
        gc.freeze()
        on_listening(runner.addresses[0][1])
        await until()
    finally:
        await runner.cleanup()


async def serve_until_stopped(
    config: GatewayConfig,
    keys: list[str],
    *,
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
    app = create_app(config, monitor or StaticMonitor(), api_keys=keys)

    def announce(port: int) -> None:
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
        with stop_on_signals() as stop:
            await serve_app(
                app, config.host, config.port, until=stop.wait, ssl_context=ssl_context, on_listening=announce
            )
    finally:
        if poll_session is not None:
            await poll_session.close()


def run_blocking(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` to the end on uvloop where it exists (not on Windows), else on asyncio's loop."""
    if sys.platform != "win32":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:
        asyncio.run(main)


def run_forever(
    config: GatewayConfig,
    keys: list[str],
    *,
    ssl_context: ssl.SSLContext | None = None,
    poll: bool = True,
    notes: Sequence[str] = (),
) -> None:
    """Blocking entry point for `wave serve`; `notes` are warnings printed under the start-up line."""
    run_blocking(serve_until_stopped(config, keys, ssl_context=ssl_context, poll=poll, notes=notes))
