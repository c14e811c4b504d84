"""Serving an app until told to stop: the helper `wave serve` and `wave up` share."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web

from wavefleet.errors import UsageError
from wavefleet.gateway.server import serve_app


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _hello)
    return app


def test_serves_until_told_then_frees_the_port() -> None:
    async def main() -> None:
        bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        serving = asyncio.create_task(
            serve_app(_app(), "127.0.0.1", 0, until=stop.wait, on_listening=bound.set_result)
        )
        port = await asyncio.wait_for(bound, 10)
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as reply:
            assert await reply.text() == "hello"
        stop.set()
        await asyncio.wait_for(serving, 10)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0

    asyncio.run(main())


def test_a_taken_port_is_a_usage_error_naming_it() -> None:
    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}.*--port 0"):
                await serve_app(_app(), "127.0.0.1", port, until=asyncio.Event().wait)

    asyncio.run(main())


def test_the_error_of_what_it_waits_for_is_raised() -> None:
    async def main() -> None:
        async def engine_failed() -> None:
            raise RuntimeError("engine gone")

        with pytest.raises(RuntimeError, match="engine gone"):
            await serve_app(_app(), "127.0.0.1", 0, until=engine_failed)

    asyncio.run(main())
