"""The agent's engines as gateway backends: the on-demand layer between the gateway's forwarding
and each model's engine.

The agent's OpenAI API is the gateway's own app (`gateway.app.create_app`), with one backend per
configured model. `EngineBackend.send` first takes a lease on the model's engine, which starts it
when it is stopped and waits (bounded by the load timeout) while it loads; then it sends the
request to wherever that engine listens now. The lease is held until the reply is closed, so
idle timers and drains see the request in flight.

llama-server answers a streamed request with keep-alive and then closes the connection; a client
that sends its next request on that connection loses it. Streamed requests to llama-server
(kind llamacpp, started by the agent or at a `url:`) therefore go with `Connection: close` (no
connection is kept after them); other engines keep their connections. A request whose
connection was dropped before any answer, on an engine still running, is sent once more on a
fresh one.

When the engine dies under a request it has begun answering, the request ends at once with an
error naming the crash. A request the engine never received (the connection was refused), or
held without answering anything yet (queued for a slot, or computing its first token), waits for
the restart and is sent again; the latter once only, so a request that crashes its engine is
not sent on and on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from yarl import URL

from wavefleet.agent.host import Agent, Lease
from wavefleet.agent.units import parse_duration
from wavefleet.engines import EngineKind
from wavefleet.errors import BadRequestError, UpstreamError
from wavefleet.gateway.backends.base import Backend, BackendReply, BackendRequest
from wavefleet.gateway.backends.openai import HttpReply, translate_client_error
from wavefleet.gateway.config import PolicyName
from wavefleet.gateway.monitor.snapshot import LoadSnapshot
from wavefleet.gateway.routing.base import Decision, FleetView, Outcome, RouteRequest
from wavefleet.telemetry.names import EngineState

__all__ = ["AgentMonitor", "EngineBackend", "EnginePolicy", "keep_alive_of"]

_JSON = {"Content-Type": "application/json"}
_STREAM = {**_JSON, "Connection": "close"}
_REFUSED_RETRIES = 3  # a request the engine never received waits for its restart this many times


def keep_alive_of(body: dict[str, object]) -> float | None:
    """The request's `keep_alive` in seconds (-1 forever, 0 unload when idle); None when absent."""
    value = body.get("keep_alive")
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise BadRequestError(f"`keep_alive`: {exc}", param="keep_alive") from exc


class EngineBackend(Backend):
    """One configured model of the agent, as the gateway's forwarder sees it."""

    def __init__(self, agent: Agent, model: str, session: aiohttp.ClientSession) -> None:
        self.name = agent.engine_name(model)
        self.model = model
        self._agent = agent
        self._session = session
        closes = agent.models[model].config.kind is EngineKind.LLAMACPP
        self._stream_headers = _STREAM if closes else _JSON
        self._urls: dict[tuple[str, str], URL] = {}  # (engine address, endpoint) -> URL, parsed once

    async def send(self, request: BackendRequest) -> BackendReply:
        keep_alive = keep_alive_of(request.body)
        resent = False
        for attempt in range(_REFUSED_RETRIES + 1):
            lease = await self._agent.acquire(self.model, keep_alive=keep_alive)
            try:
                last = attempt == _REFUSED_RETRIES
                response = await self._post(lease, request, last=last, may_resend=not resent and not last)
            except _DiedBeforeAnswering:
                lease.release()  # the engine died holding it unanswered: wait for its restart
                resent = True
                continue
            except BaseException:
                lease.release()
                raise
            if response is not None:
                return _LeasedReply(response, self.name, lease)
            lease.release()  # refused by an engine that has died: wait for its restart
        raise AssertionError("unreachable: the last attempt raises or answers")

    async def _post(
        self, lease: Lease, request: BackendRequest, *, last: bool, may_resend: bool
    ) -> aiohttp.ClientResponse | None:
        """The engine's response; None when the engine refused the connection because it died.
        `_DiedBeforeAnswering` (with `may_resend`) when it died holding the request unanswered."""
        url = self._urls.get((lease.url, request.endpoint))
        if url is None:
            if len(self._urls) > 64:  # an engine restarted on many ports: forget the old ones
                self._urls.clear()
            url = self._urls[(lease.url, request.endpoint)] = URL(f"{lease.url}/v1/{request.endpoint}")
        headers = self._stream_headers if request.stream else _JSON
        try:
            try:
                return await self._session.post(url, data=request.raw, headers=headers)
            except aiohttp.ClientConnectorError:
                raise
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                died = await lease.engine_died()
                if died is not None:
                    if may_resend:
                        raise _DiedBeforeAnswering from exc
                    raise self._crashed(died, "while this request ran") from exc
                # a kept-alive connection the engine had closed: once more, on a fresh one
                return await self._session.post(url, data=request.raw, headers=headers)
        except aiohttp.ClientConnectorError as exc:
            if not last and await lease.engine_died() is not None:
                return None
            raise translate_client_error(exc, self.name) from exc
        except aiohttp.ClientError as exc:
            died = await lease.engine_died()
            if died is not None:
                if may_resend:
                    raise _DiedBeforeAnswering from exc
                raise self._crashed(died, "while this request ran") from exc
            raise translate_client_error(exc, self.name) from exc

    def _crashed(self, how: str, when: str) -> UpstreamError:
        return UpstreamError(
            f"the engine serving {self.model!r} {how} {when}; the agent restarts it "
            "(GET /agent/v1/status shows when it is back)",
            retry_after=self._agent.defaults.backoff.base,
        )


class _DiedBeforeAnswering(Exception):
    """The engine died holding the request before answering anything (queued or computing)."""


class _LeasedReply(HttpReply):
    """An engine's reply that releases its lease when closed, and names a crash mid-answer."""

    def __init__(self, response: aiohttp.ClientResponse, backend: str, lease: Lease) -> None:
        super().__init__(response, backend)
        self._lease = lease

    async def read(self) -> bytes:
        try:
            return await super().read()
        except UpstreamError as exc:
            raise await self._named(exc) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in super().chunks():
                yield chunk
        except UpstreamError as exc:
            raise await self._named(exc) from exc

    async def _named(self, exc: UpstreamError) -> UpstreamError:
        died = await self._lease.engine_died()
        if died is None:
            return exc
        return UpstreamError(
            f"the engine serving {self._lease.model.name!r} {died} mid-answer; the agent restarts it "
            "(GET /agent/v1/status shows when it is back)"
        )

    def close(self) -> None:
        super().close()
        self._lease.release()


class EnginePolicy:
    """The agent's routing policy: each model has exactly one engine, so the candidates go as they
    are, healthy or not. The engine's backend then answers for a model that failed, drains or
    loads past its timeout with what the agent knows (host, reason, what to do); a policy that
    left out unhealthy engines would answer "no healthy backend" instead."""

    name = PolicyName.ROUND_ROBIN  # what the agent's gateway config names; one engine: one order

    def choose(self, request: RouteRequest, view: FleetView) -> Decision:
        return Decision(request.candidates, "own-engine")

    def observe_first_token(self, backend: str, request: RouteRequest, ttft_s: float) -> None:
        return None

    def observe_finish(self, backend: str, request: RouteRequest, outcome: Outcome) -> None:
        return None


class AgentMonitor:
    """The gateway's view of the agent's engines (a `BackendMonitor`): every configured model is
    listed and may be asked for, a failed one counts unhealthy; nothing is polled."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._by_engine = {m.engine: m for m in agent.models.values()}

    def snapshot(self, backend: str) -> LoadSnapshot:
        model = self._by_engine.get(backend)
        if model is None:
            return LoadSnapshot(backend=backend, healthy=False, error="no such engine")
        failed = model.state is EngineState.FAILED
        return LoadSnapshot(
            backend=backend,
            healthy=not failed,
            running=model.inflight,
            slots_total=model.config.slots,
            models=(model.name,),
            error=model.last_error if failed else "",
        )

    def available(self, backend: str) -> bool:
        return backend in self._by_engine  # a stopped model starts when asked; a failed one says why

    def record_outcome(self, backend: str, ok: bool) -> None:
        return None

    def release(self, backend: str) -> None:
        return None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
