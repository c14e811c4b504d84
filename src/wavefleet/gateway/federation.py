"""Fleet agents behind the gateway (`agents:` in wave.yaml, `wave serve --agent URL`).

Each agent is one backend: the gateway forwards OpenAI requests to the agent's own `/v1` with
the agent's shared secret, and the agent starts the model's engine on demand. An `AgentWatch`
reads every agent's control API (`GET /agent/v1/status`) each poll interval: the models it
lists (every configured one, failed ones too, so that a request for a failed model gets the
agent's account of the failure rather than "unknown model"), their states, and the requests in
flight and waiting on it, as the agent's `LoadSnapshot`.

    routing, agents = split_agents(config)          # agents as backends, and their refs by name
    watch = AgentWatch(agents, session, interval_s=1.0)
    monitor = FederatedMonitor(polling_monitor, watch)
    app = create_app(config, monitor)               # builds an AgentBackend for each agent
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

import aiohttp

from wavefleet.agent.client import AgentClient, AgentError
from wavefleet.agent.status import ENERGY_ID_HEADER, AgentStatus
from wavefleet.gateway.backends.base import BackendRequest
from wavefleet.gateway.backends.openai import OpenAIBackend
from wavefleet.gateway.config import AgentRef, GatewayConfig
from wavefleet.gateway.monitor.polling import cancel_polls, start_polls
from wavefleet.gateway.monitor.snapshot import BackendMonitor, LoadSnapshot
from wavefleet.gateway.routing.base import Candidate
from wavefleet.gateway.security.tls import client_tls_context
from wavefleet.telemetry.names import EngineState

__all__ = [
    "AgentBackend",
    "AgentWatch",
    "FederatedMonitor",
    "agent_secret",
    "agent_ssl",
    "loaded_first",
    "split_agents",
]

DOWN_AFTER = 3  # failed polls in a row before an agent that answered before counts as down


def split_agents(config: GatewayConfig) -> tuple[GatewayConfig, dict[str, AgentRef]]:
    """The config with each agent as one more backend (and no `agents`), and the agents by name.
    Calling it on its own result changes nothing."""
    if not config.agents:
        return config, {}
    agents = {agent.name: agent for agent in config.agents}
    backends = [*config.backends, *(agent.backend() for agent in config.agents)]
    return config.model_copy(update={"backends": backends, "agents": []}), agents


def agent_ssl(agent: AgentRef) -> ssl.SSLContext | None:
    """The client TLS context for the agent's `tls` settings; None for the defaults."""
    tls = agent.tls
    return client_tls_context(tls.ca, tls.cert, tls.key) if tls is not None else None


def agent_secret(agent: AgentRef) -> str | None:
    """The agent's shared secret; UsageError naming the variable or file when it cannot be read."""
    return agent.secret.resolve() if agent.secret is not None else None


def loaded_first(ranked: Sequence[Candidate], monitor: BackendMonitor) -> tuple[Candidate, ...]:
    """The policy's order, with agents where the model is ready first (with ordinary engines),
    then agents that have room to load it, then those that would have to wait for room, and
    agents where it failed last (they answer with the failure when no other replica is left):
    a cold start only when no loaded replica is left, and where it can start at once."""
    if len(ranked) < 2:  # nothing to reorder (every request to one engine, and every agent's own)
        return tuple(ranked)
    return tuple(sorted(ranked, key=lambda c: _load_rank(c, monitor)))  # stable: the policy's order stays


def _load_rank(candidate: Candidate, monitor: BackendMonitor) -> int:
    """0: ready (or not an agent), 1: an agent with room to load it, 2: an agent without, 3: an
    agent where it failed."""
    snapshot = monitor.snapshot(candidate.backend)
    if not snapshot.model_states:
        return 0
    state = dict(snapshot.model_states).get(candidate.model)
    if state == EngineState.READY.value:
        return 0
    if state == EngineState.FAILED.value:
        return 3
    return 2 if candidate.model in snapshot.no_room else 1


class AgentBackend(OpenAIBackend):
    """OpenAI's API at an agent's address, authenticated with its shared secret (and, with `tls`
    settings, a session of its own with that TLS context)."""

    def __init__(self, agent: AgentRef, session: aiohttp.ClientSession, *, secret: str | None) -> None:
        context = agent_ssl(agent)
        self._own: aiohttp.ClientSession | None = None
        if context is not None:
            self._own = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=1024, limit_per_host=0),
                timeout=session.timeout,
            )
        super().__init__(agent.backend(), self._own or session)
        if secret:
            self._headers["Authorization"] = f"Bearer {secret}"

    def headers_for(self, request: BackendRequest) -> dict[str, str]:
        """With the request's energy id when the gateway meters it: the agent files its energy under it."""
        if not request.energy_id:
            return self._headers
        return {**self._headers, ENERGY_ID_HEADER: request.energy_id}

    async def aclose(self) -> None:
        if self._own is not None:
            await self._own.close()


class AgentWatch:
    """Every agent's state, from its control API (a `BackendMonitor` for the agents' backends)."""

    def __init__(
        self,
        agents: Mapping[str, AgentRef],
        session: aiohttp.ClientSession,
        *,
        interval_s: float,
        secrets: Mapping[str, str | None],
        timeout_s: float = 2.0,
    ) -> None:
        self._clients = {
            name: AgentClient(
                str(agent.url),
                secret=secrets.get(name),
                session=session,
                timeout_s=timeout_s,
                ssl_context=agent_ssl(agent),
            )
            for name, agent in agents.items()
        }
        self._interval_s = interval_s
        self._snapshots = {
            name: LoadSnapshot(backend=name, healthy=False, error="not polled yet") for name in agents
        }
        self.statuses: dict[str, AgentStatus] = {}
        self._answered: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def names(self) -> list[str]:
        return list(self._clients)

    def snapshot(self, backend: str) -> LoadSnapshot:
        return self._snapshots.get(backend) or LoadSnapshot(backend=backend)

    def available(self, backend: str) -> bool:
        return self.snapshot(backend).healthy

    def record_outcome(self, backend: str, ok: bool) -> None:
        return None

    def release(self, backend: str) -> None:
        return None

    async def start(self) -> None:
        """Poll every agent once, then each on its own task."""
        if not self._tasks:
            self._tasks = await start_polls(
                list(self._clients), self.poll, self._poll_forever, label="wave-agent-watch"
            )

    async def aclose(self) -> None:
        await cancel_polls(self._tasks)
        self._tasks = []

    async def _poll_forever(self, name: str) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.poll(name)

    async def poll(self, name: str) -> LoadSnapshot:
        """Read one agent's status now and replace its snapshot; never raises for agent trouble."""
        previous = self._snapshots[name]
        try:
            status = await self._clients[name].status(log_lines=0)
        except AgentError as exc:
            failures = previous.poll_failures + 1
            healthy = name in self._answered and previous.healthy and failures < DOWN_AFTER
            snapshot = replace(
                previous, healthy=healthy, error=str(exc), poll_failures=failures, updated_at=time.monotonic()
            )
        else:
            self._answered.add(name)
            self.statuses[name] = status
            serving = [m for m in status.models if m.state is not EngineState.FAILED]
            snapshot = LoadSnapshot(
                backend=name,
                healthy=True,
                running=sum(m.inflight for m in serving),
                waiting=sum(m.waiting for m in serving),
                slots_total=sum(m.slots for m in serving) or None,
                models=tuple(m.name for m in status.models),
                model_states=tuple((m.name, m.state.value) for m in status.models),
                no_room=tuple(m.name for m in status.models if not m.room),
            )
        self._snapshots[name] = snapshot
        return snapshot


class FederatedMonitor:
    """The engines' monitor and the agents' watch as one `BackendMonitor`, by backend name."""

    def __init__(self, engines: BackendMonitor, agents: AgentWatch) -> None:
        self._engines = engines
        self._agents = agents
        self._agent_names = set(agents.names())

    def _for(self, backend: str) -> BackendMonitor:
        return self._agents if backend in self._agent_names else self._engines

    def snapshot(self, backend: str) -> LoadSnapshot:
        return self._for(backend).snapshot(backend)

    def available(self, backend: str) -> bool:
        return self._for(backend).available(backend)

    def record_outcome(self, backend: str, ok: bool) -> None:
        self._for(backend).record_outcome(backend, ok)

    def release(self, backend: str) -> None:
        self._for(backend).release(backend)

    async def start(self) -> None:
        await asyncio.gather(self._engines.start(), self._agents.start())

    async def aclose(self) -> None:
        await self._agents.aclose()
        await self._engines.aclose()
