"""Forwarding one request: try the ranked backends in turn until one answers, then relay its answer.

A backend that fails before the client received a byte (cannot connect, 5xx, garbage, no
answer within `timeouts.first_byte_s`) is recorded as a failure and the next ranked backend is
tried, up to `retries` more. Once bytes went out, failures arrive in-band: an OpenAI error
event ends the stream. Each attempt has one deadline, moved as the answer
progresses: first byte, then the idle gap between events, never past the total. They are kept
by one shared `DeadlineWatch` (deadlines.py), not a timer per request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from aiohttp import web

from wavefleet.agent.status import ENERGY_ID_HEADER
from wavefleet.errors import GatewayError, NoHealthyBackendError, UpstreamError, UpstreamTimeoutError
from wavefleet.gateway.backends.base import Backend, BackendReply, BackendRequest, Endpoint
from wavefleet.gateway.config import Timeouts
from wavefleet.gateway.deadlines import Deadline, DeadlineWatch
from wavefleet.gateway.energy import ENERGY, Charge, EnergyMeter
from wavefleet.gateway.inflight import InflightCounts
from wavefleet.gateway.metrics import GatewayMetrics, RequestSeries
from wavefleet.gateway.monitor.snapshot import BackendMonitor
from wavefleet.gateway.responses import error_response
from wavefleet.gateway.rollout.split import VersionRouter
from wavefleet.gateway.routing.base import Candidate, Outcome, RouteRequest, RoutingPolicy
from wavefleet.gateway.streaming import SseSplitter, StreamState, error_event, parse_usage

__all__ = ["Call", "Forwarder"]


@dataclass(kw_only=True, slots=True)
class Call:
    """One client request, parsed once."""

    endpoint: Endpoint
    payload: dict[str, Any]
    raw: bytes
    stream: bool
    inject_usage: bool  # the gateway adds stream_options.include_usage and strips its answer
    route: RouteRequest
    started: float  # loop time at arrival
    deadline: float  # loop time by which everything must be done (timeouts.total_s)
    # told how the request ended (status, usage, backend): the security layer's limits and audit
    report: Callable[[int, tuple[int, int] | None, str], None] | None = None
    key: str = ""  # who asked (the principal's ident), for the energy counters
    charge: Charge | None = None  # its energy, when the gateway meters it
    every_version: bool = False  # a rollout's (green, blue): blue is tried whatever `retries` says


class _Headers:
    """Response headers per backend, built once."""

    def __init__(self, backend: str) -> None:
        self.json = {"Content-Type": "application/json", "x-wave-backend": backend}
        self.sse = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "x-wave-backend": backend,
        }


class Forwarder:
    """Sends a call to its ranked backends in turn and relays the answer (see the module's docstring).

    `backends` may be empty at first: the app hands them over with `add_backends` once its
    session exists. The forwarder counts each attempt in `inflight` while it runs.
    """

    def __init__(
        self,
        *,
        backends: dict[str, Backend],
        monitor: BackendMonitor,
        policy: RoutingPolicy,
        metrics: GatewayMetrics,
        timeouts: Timeouts,
        retries: int,
        inflight: InflightCounts,
        watch: DeadlineWatch,
        retry_after_s: float = 1.0,
        energy: EnergyMeter | None = None,
        versions: VersionRouter | None = None,
    ) -> None:
        self._watch = watch
        self._versions = versions  # told each outcome on a version under rollout
        self._energy = energy
        self._retry_after = retry_after_s
        self._backends = backends
        self._monitor = monitor
        self._policy = policy
        self._metrics = metrics
        self._timeouts = timeouts
        self._retries = retries
        self._inflight = inflight
        self._headers = {name: _Headers(name) for name in backends}

    def now(self) -> float:
        """The event loop's clock (what call deadlines are measured on)."""
        return self._watch.now()

    def add_backends(self, backends: dict[str, Backend]) -> None:
        """Use these backends (the app builds them at start-up, once its session exists)."""
        self._backends = backends
        self._headers = {name: _Headers(name) for name in backends}

    async def forward(
        self, request: web.Request, call: Call, ranked: tuple[Candidate, ...]
    ) -> web.StreamResponse:
        """Answer `call` from the first backend in `ranked` that answers; an error answer if none does.

        Each backend's circuit breaker is asked right before sending (`monitor.available`), so a
        half-open breaker's single probe is granted only to a request that really goes there.
        """
        if self._energy is None or not self._energy.meters_any():
            return await self._forward(request, call, ranked)
        # at a fleet agent: the gateway that sent it asks for its energy by this id
        given = request.headers.get(ENERGY_ID_HEADER)
        call.charge = charge = self._energy.charge(key=call.key, energy_id=given)
        request[ENERGY] = charge
        try:
            return await self._forward(request, call, ranked)
        finally:
            charge.close(self.now())

    async def _forward(
        self, request: web.Request, call: Call, ranked: tuple[Candidate, ...]
    ) -> web.StreamResponse:
        tries_left = max(self._retries + 1, len(ranked)) if call.every_version else self._retries + 1
        last: tuple[GatewayError, Candidate] | None = None
        for candidate in ranked:
            name = candidate.backend
            if not self._monitor.available(name):
                continue
            tries_left -= 1
            self._inflight.add(name)
            if call.charge is not None:
                call.charge.begin(name, candidate.model, self.now())
            try:
                return await self._attempt(
                    request, call, candidate, tries_left == 0 or candidate is ranked[-1]
                )
            except asyncio.CancelledError:
                self._monitor.release(name)  # a half-open breaker's probe has no outcome to wait for
                raise
            except (UpstreamError, UpstreamTimeoutError) as exc:
                self._monitor.record_outcome(name, False)
                if self._versions is not None:
                    self._versions.observe(candidate, at=call.started, ok=False)
                self._metrics.retries.labels(name).inc()
                self._metrics.error(
                    model=candidate.model, backend=name, status=exc.status, message=exc.message
                )
                last = (exc, candidate)
            finally:
                self._inflight.remove(name)
            if tries_left == 0:
                break
        if last is None:
            names = ", ".join(c.backend for c in ranked)
            if call.report is not None:
                call.report(NoHealthyBackendError.status, None, "")
            refused = NoHealthyBackendError(
                f"no backend for {call.route.requested_model!r} accepts requests now "
                f"(circuit breakers open: {names}); GET /health says why",
                retry_after=self._retry_after,
            )
            self._metrics.error(
                model=ranked[0].model, backend="", status=refused.status, message=refused.message
            )
            return error_response(refused)
        error, candidate = last
        self._metrics.series(candidate.model, candidate.backend).count(str(error.status))
        if call.report is not None:
            call.report(error.status, None, candidate.backend)
        return error_response(error, candidate.backend)

    def _body(self, call: Call, model: str) -> bytes:
        if call.payload.get("model") == model:
            if not call.inject_usage:
                return call.raw
            if "stream_options" not in call.payload:
                # add the field to the client's bytes instead of serialising the body again
                raw = call.raw.rstrip()
                return raw[:-1] + b',"stream_options":{"include_usage":true}}'
        payload = dict(call.payload)
        payload["model"] = model
        if call.inject_usage:
            payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    async def _attempt(
        self, request: web.Request, call: Call, candidate: Candidate, final: bool
    ) -> web.StreamResponse:
        backend = self._backends[candidate.backend]
        raw = self._body(call, candidate.model)
        body = (
            call.payload
            if call.payload.get("model") == candidate.model
            else {**call.payload, "model": candidate.model}
        )
        outgoing = BackendRequest(
            endpoint=call.endpoint,
            body=body,
            raw=raw,
            stream=call.stream,
            request_id=call.route.request_id,
            energy_id=call.charge.energy_id if call.charge is not None else "",
        )
        series = self._metrics.series(candidate.model, candidate.backend)
        timeouts = self._timeouts
        reply: BackendReply | None = None
        phase = "first byte"
        deadline = self._watch.arm(min(self._watch.now() + timeouts.first_byte_s, call.deadline))
        try:
            reply = await backend.send(outgoing)
            if reply.status >= 500 and not final:
                detail = (await reply.read())[:300].decode(errors="replace")
                raise UpstreamError(f"backend {backend.name!r} answered {reply.status}: {detail}")
            if reply.streaming and reply.status == 200:
                phase = "first event"
                return await self._relay_stream(request, call, candidate, reply, series, deadline)
            phase = "whole body"
            deadline.when = call.deadline
            answer = await reply.read()
        except (asyncio.CancelledError, ConnectionError):
            if self._watch.expired(deadline):
                waited = timeouts.first_byte_s if phase != "whole body" else timeouts.total_s
                raise UpstreamTimeoutError(
                    f"backend {backend.name!r} sent no {phase} within {waited:g} s (see timeouts in the gateway config)"
                ) from None
            series.count("499")  # the client went away; closing the reply below aborts the upstream request
            raise
        finally:
            self._watch.disarm(deadline)
            if reply is not None:
                reply.close()
        return await self._json_reply(request, call, candidate, reply, answer, series)

    async def _json_reply(
        self,
        request: web.Request,
        call: Call,
        candidate: Candidate,
        reply: BackendReply,
        body: bytes,
        series: RequestSeries,
    ) -> web.Response:
        """Send a whole reply, then do the bookkeeping (the client need not wait for metrics)."""
        name = candidate.backend
        usage = None
        if reply.status == 200:
            # garbage raises here, before anything was sent: the next backend may be tried
            usage = parse_usage(_json_object(body, name).get("usage"))
            headers: dict[str, str] = self._headers[name].json
        else:
            headers = {"Content-Type": reply.content_type or "application/json", "x-wave-backend": name}
            if reply.retry_after:
                headers["Retry-After"] = reply.retry_after
        response = web.Response(body=body, status=reply.status, headers=headers)
        try:
            await response.prepare(request)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            series.count("499")
            raise
        self._monitor.record_outcome(name, reply.status < 500)
        detail = body[:300].decode(errors="replace") if reply.status >= 500 else ""
        self._finish(call, candidate, series, str(reply.status), self._watch.now(), usage, None, detail)
        return response

    async def _relay_stream(
        self,
        request: web.Request,
        call: Call,
        candidate: Candidate,
        reply: BackendReply,
        series: RequestSeries,
        deadline: Deadline,
    ) -> web.StreamResponse:
        now_of = self._watch.now
        idle_s, total = self._timeouts.idle_s, call.deadline
        name = candidate.backend
        state = StreamState(strip_usage=call.inject_usage)
        splitter = SseSplitter()
        told = False  # the policy has heard of the first token
        response: web.StreamResponse | None = None
        status = "200"
        try:
            try:
                async for chunk in reply.chunks():
                    now = now_of()
                    data = state.filter(splitter.feed(chunk), now)
                    if state.first_event_at is not None and not told:
                        # at once, not at the end: a policy that learns from first tokens (wave
                        # bounds the prefill backlog it believes by them) learns seconds sooner
                        told = True
                        self._policy.observe_first_token(
                            name, call.route, state.first_event_at - call.started
                        )
                    if data:
                        if response is None:
                            response = web.StreamResponse(status=200, headers=self._headers[name].sse)
                            await response.prepare(request)
                        await response.write(data)
                        deadline.when = now + idle_s if now + idle_s < total else total
                    if state.done:
                        break
                data = state.filter(splitter.flush(), now_of())
                if not state.done and not state.finished and state.error is None:
                    # the body ended (a close-delimited one can end anywhere) before the answer did
                    truncated = UpstreamError(
                        f"backend {name!r} ended its stream before the answer was complete "
                        "(no finish_reason and no [DONE])"
                    )
                    if response is None and not data:
                        raise truncated  # nothing sent yet: another backend may be tried
                    status = str(truncated.status)
                    data += error_event(truncated.to_openai())
            except (UpstreamError, UpstreamTimeoutError) as exc:
                if response is None:
                    raise  # nothing sent yet: another backend may be tried
                status = str(exc.status)
                data = error_event(exc.to_openai())
            if response is None:
                if not data:
                    raise UpstreamError(f"backend {name!r} ended its stream without sending an event")
                response = web.StreamResponse(status=200, headers=self._headers[name].sse)
                await response.prepare(request)
            if data:
                await response.write(data)
            self._watch.disarm(deadline)  # the upstream is done: no deadline can fire from here on
        except asyncio.CancelledError:
            if response is None or not self._watch.expired(deadline):
                self._observe_stream(series, state)
                if not self._watch.expired(deadline):
                    # the client went away: what was streamed until then is charged and audited
                    streamed = state.usage or self._streamed_so_far(call, state)
                    if call.charge is not None:
                        call.charge.finish(
                            now_of(),
                            first_token=state.first_event_at,
                            usage=streamed,
                            token_times=_event_times(state) if call.charge.wants_token_times else (),
                        )
                    if call.report is not None:
                        call.report(499, streamed, name)
                raise  # the client went away, or the first-event deadline passed (a retry may follow)
            # the idle gap or the total time ran out mid-stream: say so in-band, then end the stream
            status = "504"
            self._watch.disarm(deadline)
            message = (
                f"backend {name!r} sent no event for {idle_s:g} s mid-stream, "
                "or the request ran past its total time (see timeouts in the gateway config)"
            )
            await response.write(error_event(UpstreamTimeoutError(message).to_openai()))
        if status == "200" and state.error is not None:
            status = "500"  # the engine's own in-band error, passed on as it came
        self._monitor.record_outcome(name, status == "200")
        await response.write_eof()
        self._observe_stream(series, state)
        ttft = state.first_event_at - call.started if state.first_event_at is not None else None
        detail = state.error.decode(errors="replace").strip() if state.error is not None else ""
        self._finish(
            call,
            candidate,
            series,
            status,
            now_of(),
            state.usage,
            ttft,
            detail,
            _event_times(state) if call.charge is not None and call.charge.wants_token_times else None,
            first_token_told=told,
        )
        return response

    @staticmethod
    def _streamed_so_far(call: Call, state: StreamState) -> tuple[int, int] | None:
        """(prompt, completion) tokens of a stream cut short, estimated: the prompt at 4 characters
        a token, one token per event after the first (engines stream a token an event, after a
        role-only first one). None when nothing was streamed."""
        if state.events == 0:
            return None
        return call.route.prompt_tokens, max(0, state.events - 1)

    def _observe_stream(self, series: RequestSeries, state: StreamState) -> None:
        itl, observe = series.itl, self._metrics.itl.observe
        for gap in state.gaps:
            observe(itl, gap)

    def _finish(
        self,
        call: Call,
        candidate: Candidate,
        series: RequestSeries,
        status: str,
        now: float,
        usage: tuple[int, int] | None,
        ttft: float | None,
        detail: str = "",
        token_times: list[float] | None = None,
        *,
        first_token_told: bool = False,
    ) -> None:
        metrics, duration = self._metrics, now - call.started
        if call.charge is not None:
            first = call.started + ttft if ttft is not None else None
            call.charge.finish(now, first_token=first, usage=usage, token_times=token_times or ())
        if call.report is not None:
            call.report(int(status), usage, candidate.backend)
        series.count(status)
        if int(status) >= 500:
            metrics.error(
                model=candidate.model,
                backend=candidate.backend,
                status=int(status),
                message=detail or f"backend {candidate.backend!r} answered {status}",
            )
        metrics.e2e.observe(series.e2e, duration)
        if self._versions is not None:
            tokens = usage[1] if usage is not None else 0
            tpot = (duration - ttft) / (tokens - 1) if ttft is not None and tokens > 1 else None
            ok = int(status) < 500
            # timed by arrival: a window holds the requests sent in it (not those sent before a
            # step began that waited, e.g. for green to load in a swap)
            self._versions.observe(
                candidate, at=call.started, ok=ok, ttft_s=ttft, tpot_s=tpot, e2e_s=duration
            )
        if ttft is not None:
            metrics.ttft.observe(series.ttft, ttft)
            if not first_token_told:
                self._policy.observe_first_token(candidate.backend, call.route, ttft)
        prompt, completion = usage if usage is not None else (call.route.prompt_tokens, 0)
        if usage is not None:
            series.prompt_tokens.inc(prompt)
            series.completion_tokens.inc(completion)
        self._policy.observe_finish(
            candidate.backend,
            call.route,
            Outcome(status in ("200", "201"), prompt, completion, ttft, duration),
        )


def _event_times(state: StreamState) -> list[float]:
    """When each chunk of events reached the client (the energy meter places generated tokens there)."""
    if state.first_event_at is None:
        return []
    return list(accumulate(state.gaps, initial=state.first_event_at))


def _json_object(body: bytes, backend: str) -> dict[str, Any]:
    """A 200 reply's JSON object; UpstreamError for anything else (truncated, garbled, not an object).

    Parsed whole: about 6 us for a chat completion, 8 ms for a 680 KB embeddings reply (32 x 1024
    floats), which is small beside computing those embeddings.
    """
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamError(
            f"backend {backend!r} answered 200 with something that is not a JSON object: {body[:120]!r}"
        )
    return parsed
