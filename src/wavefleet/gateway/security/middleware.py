"""The security layer as an aiohttp middleware around the gateway's handlers.

For the proxied endpoints it authenticates, admits (model, max_tokens cap, screening, limits),
lets the gateway forward, then releases the limits, settles the tokens reserved at admission
(see `tokens_to_charge`) and queues the audit row. `/v1/models` is authenticated only;
`/health` and `/metrics` pass (`/health` asks the same authenticator whether to show its error texts).

The gateway tells the middleware how a forwarded request ended by setting `request[OUTCOME]`
(status, prompt tokens, completion tokens, backend): for a stream the HTTP status is 200 even
when it ended with an in-band error, and the tokens are only known to the forwarder.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from wavefleet.errors import BadRequestError, GatewayError
from wavefleet.gateway.request_body import parse_body
from wavefleet.gateway.security.audit import AuditRecord
from wavefleet.gateway.security.gate import Admission, SecurityGate
from wavefleet.gateway.security.principal import Principal

__all__ = [
    "ADMISSION",
    "OUTCOME",
    "PARSED_BODY",
    "PRINCIPAL",
    "PROXIED",
    "Outcome",
    "install",
    "outcome_reporter",
    "security_middleware",
    "tokens_to_charge",
]

PROXIED = {
    "/v1/chat/completions": "chat/completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}
_AUTH_ONLY = frozenset({"/v1/models"})
SCREENING_HEADER = "x-wave-screening"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(kw_only=True, slots=True)
class Outcome:
    """How the gateway's forwarder ended a request."""

    status: int
    prompt_tokens: int | None
    completion_tokens: int | None
    backend: str | None


OUTCOME = web.RequestKey("wave_outcome", Outcome)
# the body as parsed here, so the gateway's handler does not parse it again
PARSED_BODY = web.RequestKey("wave_parsed_body", dict[str, Any])
ADMISSION = web.RequestKey("wave_admission", Admission)
# who is asking, once authenticated: /v1/models lists only what this principal may use
PRINCIPAL = web.RequestKey("wave_principal", Principal)


def outcome_reporter(request: web.Request) -> Callable[[int, tuple[int, int] | None, str], None]:
    """The hook the gateway's forwarder calls when a request ends (Call.report)."""

    def report(status: int, usage: tuple[int, int] | None, backend: str) -> None:
        prompt, completion = usage if usage is not None else (None, None)
        request[OUTCOME] = Outcome(
            status=status, prompt_tokens=prompt, completion_tokens=completion, backend=backend
        )

    return report


def tokens_to_charge(outcome: Outcome | None, *, client_closed: bool) -> int | None:
    """What a finished request is charged, whatever its status: the usage its outcome carries; None
    (its reservation stands) when an engine worked on it but the usage is unknown, or when the
    client closed it before the forwarder reported anything; 0 when no engine saw it."""
    if outcome is None:
        return None if client_closed else 0
    if outcome.prompt_tokens is not None or outcome.completion_tokens is not None:
        return (outcome.prompt_tokens or 0) + (outcome.completion_tokens or 0)
    return None if outcome.status < 400 or outcome.status == 499 else 0


def _error_response(error: GatewayError, verdict_header: str = "") -> web.Response:
    headers = {"Content-Type": "application/json"}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    if verdict_header:
        headers[SCREENING_HEADER] = verdict_header
    return web.Response(status=error.status, body=json.dumps(error.to_openai()).encode(), headers=headers)


async def _payload(request: web.Request) -> dict[str, Any] | None:
    """The JSON body, or None if it is not a JSON object (the gateway then answers 400/413 itself).
    aiohttp keeps the bytes read here, so the gateway's own read costs nothing."""
    try:
        return parse_body(await request.read())
    except (web.HTTPRequestEntityTooLarge, BadRequestError):
        return None


def security_middleware(gate: SecurityGate) -> Middleware:
    record_prompts = gate.audit is not None and gate.audit.prompts

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        endpoint = PROXIED.get(path) if request.method == "POST" else None
        if endpoint is None and path not in _AUTH_ONLY and path not in PROXIED:
            return await handler(request)
        started = time.time()
        principal: Principal | None = None
        admission: Admission | None = None
        payload: dict[str, Any] | None = None
        status, error = 500, None
        try:
            principal = await gate.authenticate(request.headers.get("Authorization"))
            request[PRINCIPAL] = principal
            payload = await _payload(request) if endpoint is not None else None
            if payload is not None and endpoint is not None:
                request[PARSED_BODY] = payload
                admission = gate.admission(principal, payload)
                await gate.check(admission, endpoint, payload)
                request[ADMISSION] = admission
            response = await handler(request)
            status = response.status
            return response
        except GatewayError as exc:
            status, error = exc.status, exc.code
            return _error_response(exc, admission.verdict.header if admission is not None else "")
        except web.HTTPException as exc:  # aiohttp's own answers: 405 for a GET to a POST path, ...
            status, error = exc.status, None
            raise
        except asyncio.CancelledError:
            status, error = 499, "client_closed"
            raise
        finally:
            outcome = request.get(OUTCOME)
            charge = tokens_to_charge(outcome, client_closed=status == 499)
            prompt_tokens = completion_tokens = None
            backend = None
            if outcome is not None:
                status, prompt_tokens, completion_tokens, backend = (
                    outcome.status,
                    outcome.prompt_tokens,
                    outcome.completion_tokens,
                    outcome.backend,
                )
            if admission is not None and admission.ticket is not None:
                await gate.finish(admission, charge)
            if gate.audit is not None:
                model = payload.get("model") if payload is not None else None
                gate.audit.record(
                    AuditRecord(
                        ts=started,
                        request_id=request.headers.get("x-request-id", ""),
                        principal=principal.ident if principal is not None else "unauthenticated",
                        client=request.remote or "",
                        method=request.method,
                        path=path,
                        model=model if isinstance(model, str) else None,
                        backend=backend,
                        status=status,
                        error=error,
                        prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens,
                        latency_ms=round((time.time() - started) * 1000.0, 3),
                        screening=",".join(admission.verdict.hits) if admission is not None else "",
                        prompt=admission.prompt if admission is not None and record_prompts else None,
                    )
                )

    return middleware


async def _flag_header(request: web.Request, response: web.StreamResponse) -> None:
    admission = request.get(ADMISSION)
    if admission is not None and admission.verdict.flagged:
        response.headers[SCREENING_HEADER] = admission.verdict.header


def install(app: web.Application, gate: SecurityGate) -> None:
    """Put the middleware first, the screening header on answers, and the gate's start/stop in the app's life."""
    app.middlewares.insert(0, security_middleware(gate))
    if gate.screener.enabled:
        app.on_response_prepare.append(_flag_header)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await gate.start()
        try:
            yield
        finally:
            await gate.aclose()

    app.cleanup_ctx.append(lifecycle)
