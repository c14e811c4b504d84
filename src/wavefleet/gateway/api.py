"""The HTTP API: OpenAI's endpoints, /health and /metrics.

Request bodies are parsed once with `json.loads`; only the fields the gateway acts on are
checked (model, the prompt field, stream, stream_options, max_tokens): the rest passes to the
engine untouched, which is the engine's to judge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from itertools import count
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from wavefleet.errors import (
    BadRequestError,
    BodyTooLargeError,
    GatewayError,
    NoHealthyBackendError,
    RateLimitError,
)
from wavefleet.gateway.backends.base import Endpoint
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.federation import loaded_first
from wavefleet.gateway.health import HealthCheck
from wavefleet.gateway.inflight import InflightCounts
from wavefleet.gateway.metrics import GatewayMetrics
from wavefleet.gateway.model_table import ModelTable
from wavefleet.gateway.monitor.snapshot import BackendMonitor
from wavefleet.gateway.proxy import Call, Forwarder
from wavefleet.gateway.request_body import parse_body
from wavefleet.gateway.responses import error_response, json_response
from wavefleet.gateway.rollout.split import VersionRouter
from wavefleet.gateway.routing.base import Candidate, FleetView, RouteRequest, RoutingPolicy
from wavefleet.gateway.security.authn import Authenticator
from wavefleet.gateway.security.middleware import PARSED_BODY, PRINCIPAL
from wavefleet.gateway.security.principal import Principal

__all__ = ["EXPLAIN_HEADER", "EXPLANATION", "GatewayApi", "estimate_prompt"]

EXPLAIN_HEADER = "x-wave-explain"  # asked for with `x-wave-explain: 1`; answered with predicted times
EXPLANATION = web.RequestKey("wave_explanation", str)

_PROMPT_FIELD: dict[Endpoint, str] = {
    "chat/completions": "messages",
    "completions": "prompt",
    "embeddings": "input",
}
_PREFIX_CHARS = 4096  # the wave policy's prefix index reads up to 64 blocks of 64 characters


def estimate_prompt(endpoint: Endpoint, payload: dict[str, Any]) -> tuple[int, str]:
    """(prompt tokens, leading text): an estimate at 4 characters a token, no tokenizer."""
    value = payload.get(_PROMPT_FIELD[endpoint])
    if endpoint == "chat/completions":
        texts: list[str] = []
        for message in value or []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(
                    p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
                )
    elif isinstance(value, str):
        texts = [value]
    elif isinstance(value, list):
        texts = [v for v in value if isinstance(v, str)] or [str(value)]
    else:
        texts = []
    chars = sum(len(t) for t in texts)
    prefix = "".join(texts)[:_PREFIX_CHARS] if texts else ""
    return max(1, chars // 4), prefix


def _check_fields(endpoint: Endpoint, payload: dict[str, Any]) -> None:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequestError(
            "`model` must be a non-empty string: a model, alias or group (GET /v1/models lists them)",
            param="model",
        )
    field = _PROMPT_FIELD[endpoint]
    value = payload.get(field)
    if endpoint == "chat/completions":
        if not isinstance(value, list) or not value:
            raise BadRequestError(
                "`messages` must be a non-empty list of {role, content} objects", param="messages"
            )
        for index, message in enumerate(value):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise BadRequestError(
                    f"`messages[{index}]` must be an object with a string `role`", param=f"messages[{index}]"
                )
    elif not isinstance(value, str | list) or (isinstance(value, list) and not value):
        raise BadRequestError(f"`{field}` must be a string or a non-empty list", param=field)
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequestError("`stream` must be true or false", param="stream")
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequestError(
            '`stream_options` must be an object like {"include_usage": true}', param="stream_options"
        )
    for name in ("max_tokens", "max_completion_tokens"):
        limit = payload.get(name)
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise BadRequestError(f"`{name}` must be a positive integer", param=name)


class GatewayApi:
    """The request handlers, built from the gateway's parts (no global state).

    Every caller is checked by `authenticator`: here, or already by the security layer's
    middleware when it runs (it leaves the principal on the request). `report` is the security
    layer's outcome hook, per request, given exactly when that layer runs.
    """

    def __init__(
        self,
        *,
        config: GatewayConfig,
        monitor: BackendMonitor,
        table: ModelTable,
        policy: RoutingPolicy,
        forwarder: Forwarder,
        metrics: GatewayMetrics,
        authenticator: Authenticator,
        inflight: InflightCounts,
        report: Callable[[web.Request], Callable[[int, tuple[int, int] | None, str], None]] | None = None,
        health_checks: Mapping[str, HealthCheck] | None = None,
        versions: VersionRouter | None = None,
    ) -> None:
        self._config = config
        self._versions = versions
        self._monitor = monitor
        self._table = table
        self._policy = policy
        self._forwarder = forwarder
        self._metrics = metrics
        self._authenticator = authenticator
        self._report = report
        self._health_checks = dict(health_checks or {})  # parts besides backends: the audit writer
        self._view = FleetView(monitor, {b.name: b for b in config.backends}, inflight)
        self._ids = count(1)
        self._retry_after = max(1.0, config.poll_interval_s)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/v1/completions", self.completions),
            web.post("/v1/embeddings", self.embeddings),
            web.get("/v1/models", self.models),
            web.get("/health", self.health),
            web.get("/metrics", self.metrics),
        ]

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, "chat/completions")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, "completions")

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, "embeddings")

    async def _proxy(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        started = self._forwarder.now()
        requested = ""  # the model asked for, once the body is known to name one
        try:
            if self._report is None:  # no security layer in front: the key is checked here
                principal = await self._authenticator.authenticate(request.headers.get("Authorization"))
                raw = await self._read_body(request)
                payload = parse_body(raw)
            else:
                principal = await self._principal(request)
                raw = await self._read_body(request)
                parsed = request.get(PARSED_BODY)  # parsed already by the security layer
                payload = parsed if parsed is not None else parse_body(raw)
            _check_fields(endpoint, payload)
            stream = payload.get("stream") is True and endpoint != "embeddings"
            options = payload.get("stream_options")
            wants_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
            prompt_tokens, prefix = estimate_prompt(endpoint, payload)
            requested = str(payload["model"])
            # a model under rollout (or pinned by one), by its name or an alias, goes to its
            # versions, not through the policy
            served = self._table.served_name(requested)
            versions = (
                self._versions.route(served) if self._versions is not None and served is not None else None
            )
            route = RouteRequest(
                requested_model=requested,
                candidates=versions if versions is not None else self._resolve(requested),
                prompt_tokens=prompt_tokens,
                max_tokens=payload.get("max_tokens") or payload.get("max_completion_tokens"),
                stream=stream,
                prefix_text=prefix,
                session=payload.get("user")
                if isinstance(payload.get("user"), str)
                else request.headers.get("x-session-id"),
                request_id=f"wave-{next(self._ids)}",
            )
            if versions is not None:
                ranked = versions
                self._metrics.decision(ranked[0].backend, "rollout")
            else:
                decision = self._policy.choose(route, self._view)
                if decision.scores and request.headers.get(EXPLAIN_HEADER, "0") not in ("", "0"):
                    request[EXPLANATION] = (
                        decision.explanation()
                    )  # app.py's on_response_prepare sets the header
                if not decision.ranked:
                    self._metrics.decision("", decision.reason)
                    if decision.retry_after_s is not None:  # the policy sheds load: try again later
                        raise RateLimitError(
                            f"every backend for {requested!r} is busy ({decision.reason}); retry later",
                            retry_after=decision.retry_after_s,
                        )
                    backends = sorted({c.backend for c in route.candidates})
                    raise NoHealthyBackendError(
                        f"no backend for {requested!r} can take requests now ({decision.reason}); "
                        f"candidates: {', '.join(backends)} (GET /health says why)",
                        retry_after=self._retry_after,
                    )
                ranked = loaded_first(decision.ranked, self._monitor)
                self._metrics.decision(ranked[0].backend, decision.reason)
            call = Call(
                endpoint=endpoint,
                payload=payload,
                raw=raw,
                stream=stream,
                inject_usage=stream and not wants_usage,
                route=route,
                started=started,
                deadline=started + self._config.timeouts.total_s,
                report=self._report(request) if self._report is not None else None,
                key=principal.ident,
                every_version=versions is not None and len(versions) > 1,
            )
            return await self._forwarder.forward(request, call, ranked)
        except GatewayError as exc:
            self._metrics.series("", "").count(str(exc.status))
            if exc.status >= 500:
                self._metrics.error(model=requested, backend="", status=exc.status, message=exc.message)
            return error_response(exc)

    def _resolve(self, requested: str) -> tuple[Candidate, ...]:
        """The table's candidates for `requested`, where a group member under rollout (or pinned
        by one) takes part as the one version its split picks for this request."""
        candidates = self._table.resolve(requested)
        if self._versions is None:
            return candidates
        picked: dict[str, tuple[Candidate, ...] | None] = {}
        out: list[Candidate] = []
        for candidate in candidates:
            if candidate.model not in picked:
                picked[candidate.model] = routed = self._versions.route(candidate.model)
                if routed is not None:
                    out.append(replace(routed[0], preference=candidate.preference))
            if picked[candidate.model] is None:
                out.append(candidate)
        return tuple(out)

    async def _principal(self, request: web.Request) -> Principal:
        """Who is asking: as the security layer found, else from the authenticator (401 raises)."""
        principal = request.get(PRINCIPAL)
        if principal is None:
            principal = await self._authenticator.authenticate(request.headers.get("Authorization"))
        return principal

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self._config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLargeError(self._too_large(request.content_length))
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise BodyTooLargeError(self._too_large(None)) from exc

    def _too_large(self, size: int | None) -> str:
        given = f" ({size} bytes)" if size is not None else ""
        return f"the request body{given} is over the gateway's limit of {self._config.max_body_bytes} bytes (max_body_bytes)"

    async def models(self, request: web.Request) -> web.Response:
        try:
            principal = await self._principal(request)
        except GatewayError as exc:
            return error_response(exc)
        entries = [entry for entry in self._table.listing() if principal.may_use(str(entry["id"]))]
        return json_response({"object": "list", "data": entries})

    async def _caller_known(self, request: web.Request) -> bool:
        """Whether the request carries credentials the gateway accepts (or it accepts everyone)."""
        try:
            await self._authenticator.authenticate(request.headers.get("Authorization"))
        except GatewayError:
            return False
        return True

    async def health(self, request: web.Request) -> web.Response:
        """Backends' and parts' states for anyone (monitoring sends no key); error texts only to
        callers with a valid key, or to everyone when the gateway has no keys at all."""
        detail = await self._caller_known(request)
        backends = {}
        for backend in self._config.backends:
            snap = self._monitor.snapshot(backend.name)
            backends[backend.name] = {
                "healthy": snap.healthy,
                "breaker": snap.breaker,
                "models": list(self._table.models_of(backend.name)),
            }
            if snap.model_states:  # a fleet agent: each model's state (stopped, ready, ...)
                backends[backend.name]["states"] = dict(snap.model_states)
            if detail:
                backends[backend.name]["error"] = snap.error
        up = sum(1 for b in backends.values() if b["healthy"])
        status = "ok" if up == len(backends) else "degraded" if up else "down"
        body: dict[str, object] = {"status": status, "backends": backends}
        parts = {name: check() for name, check in self._health_checks.items()}
        if parts:
            body["parts"] = {name: part.to_json(detail=detail) for name, part in parts.items()}
        if not all(part.ok for part in parts.values()):
            body["status"] = "failing"  # serving, but not as promised (e.g. no audit rows)
            return json_response(body, 503)
        return json_response(body, 200 if up else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
