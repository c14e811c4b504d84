"""Several simulated engines in one process, for tests and for `wave sim`.

async with SimFleet([profile_a, profile_b], speed=10) as fleet:
    fleet.urls                     # {"desktop-vllm": "http://127.0.0.1:40123", ...}
    fleet.servers["desktop-vllm"].engine.num_running

with ThreadedSimFleet([profile]) as fleet:   # from synchronous code (the openai client)
    OpenAI(base_url=fleet.urls["x"] + "/v1", api_key="sim")
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from types import TracebackType

from wavefleet.sim.faults import FaultConfig
from wavefleet.sim.profile import SimProfile
from wavefleet.sim.server import SimServer

__all__ = ["SimFleet", "ThreadedSimFleet"]


class SimFleet:
    """Start one SimServer per profile on loopback (port 0 unless `ports` says otherwise)."""

    def __init__(
        self,
        profiles: Sequence[SimProfile],
        *,
        speed: float = 1.0,
        seed: int = 0,
        faults: FaultConfig | None = None,
        host: str = "127.0.0.1",
        ports: Sequence[int] | None = None,
    ) -> None:
        names = [p.name for p in profiles]
        if len(set(names)) != len(names):
            raise ValueError(f"profile names must be unique within a fleet: {names}")
        if ports is not None and len(ports) != len(profiles):
            raise ValueError("give one port per profile")
        self._host = host
        self._ports = list(ports) if ports is not None else [0] * len(profiles)
        self.servers: dict[str, SimServer] = {
            p.name: SimServer(p, speed=speed, seed=seed + 1000 * i, faults=faults)
            for i, p in enumerate(profiles)
        }
        self.urls: dict[str, str] = {}

    async def start(self) -> None:
        try:
            for server, port in zip(self.servers.values(), self._ports, strict=True):
                self.urls[server.profile.name] = await server.start(self._host, port)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for server in self.servers.values():
            await server.close()

    async def __aenter__(self) -> SimFleet:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class ThreadedSimFleet:
    """A SimFleet on its own event loop in a background thread, for synchronous callers."""

    def __init__(
        self,
        profiles: Sequence[SimProfile],
        *,
        speed: float = 1.0,
        seed: int = 0,
        faults: FaultConfig | None = None,
    ) -> None:
        self._profiles = list(profiles)
        self._speed, self._seed, self._faults = speed, seed, faults
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sim-fleet", daemon=True)
        self.fleet: SimFleet | None = None

    @property
    def urls(self) -> dict[str, str]:
        assert self.fleet is not None, "start the fleet first"
        return self.fleet.urls

    @property
    def servers(self) -> dict[str, SimServer]:
        assert self.fleet is not None, "start the fleet first"
        return self.fleet.servers

    def call(self, coroutine: object) -> object:
        """Run a coroutine on the fleet's loop and wait for its result."""
        assert asyncio.iscoroutine(coroutine)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __enter__(self) -> ThreadedSimFleet:
        self._thread.start()

        async def build() -> SimFleet:
            fleet = SimFleet(self._profiles, speed=self._speed, seed=self._seed, faults=self._faults)
            await fleet.start()
            return fleet

        try:
            self.fleet = asyncio.run_coroutine_threadsafe(build(), self._loop).result()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.fleet is not None:
            asyncio.run_coroutine_threadsafe(self.fleet.close(), self._loop).result()
        self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
