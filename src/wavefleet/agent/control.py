"""The control API gateways use, authenticated by the agent's shared secret (`Authorization: Bearer`).

    GET  /agent/v1/status                 every device and configured model (?log_lines=N, default 20)
    GET  /agent/v1/models/{name}          one model
    POST /agent/v1/models/{name}/load     start it; {"wait": true, "timeout": "2m"} (both optional)
    POST /agent/v1/models/{name}/unload   stop it now (requests in flight on it end with an error)
    POST /agent/v1/models/{name}/drain    no new requests; stop once those in flight end ({"timeout": "30s"})
    GET  /agent/v1/energy/{id}            the energy of the request a gateway sent with `x-wave-energy-id: id`
                                          (?wait=SECONDS, up to 60: until the agent has settled it)

Answers are the records of `agent.status`; errors are OpenAI-shaped like the rest of the API.
"""

from __future__ import annotations

import hmac
import json
import math
from typing import TYPE_CHECKING, Any

from aiohttp import web

from wavefleet.agent.host import Agent
from wavefleet.agent.status import CONTROL_PREFIX, RequestEnergyReport, valid_energy_id
from wavefleet.agent.units import parse_duration
from wavefleet.errors import AuthenticationError, BadRequestError, GatewayError, NotFoundError
from wavefleet.gateway.responses import error_response, json_response
from wavefleet.gateway.security.authn import bearer_token

__all__ = ["PREFIX", "ControlApi"]

if TYPE_CHECKING:
    from wavefleet.gateway.energy import EnergyMeter

PREFIX = CONTROL_PREFIX
_MAX_LOG_LINES = 200
_MAX_ENERGY_WAIT_S = 60.0


class ControlApi:
    """`energy` is the meter of the agent's requests (with `telemetry:` in its config)."""

    def __init__(self, agent: Agent, *, secret: str | None, energy: EnergyMeter | None = None) -> None:
        self._agent = agent
        self._secret = secret.encode() if secret else None
        self._energy = energy

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"{PREFIX}/status", self.status),
            web.post(f"{PREFIX}/models/{{name:.+}}/load", self.load),
            web.post(f"{PREFIX}/models/{{name:.+}}/unload", self.unload),
            web.post(f"{PREFIX}/models/{{name:.+}}/drain", self.drain),
            web.get(f"{PREFIX}/models/{{name:.+}}", self.model),
            web.get(f"{PREFIX}/energy/{{id}}", self.request_energy),
        ]

    def _check(self, request: web.Request) -> None:
        if self._secret is None:
            return  # no secret configured: the agent listens on loopback only
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            raise AuthenticationError(
                "missing credentials: send the agent's shared secret as `Authorization: Bearer <secret>`"
            )
        if not hmac.compare_digest(token.encode(), self._secret):
            raise AuthenticationError("the shared secret is wrong: use the one in this agent's config")

    async def status(self, request: web.Request) -> web.Response:
        try:
            self._check(request)
            lines = _int_query(request, "log_lines", 20)
            return json_response(self._agent.status(log_lines=lines).model_dump(mode="json"))
        except GatewayError as exc:
            return error_response(exc)

    async def model(self, request: web.Request) -> web.Response:
        try:
            self._check(request)
            lines = _int_query(request, "log_lines", 20)
            model = self._agent.model(request.match_info["name"])
            return json_response(self._agent.model_status(model, log_lines=lines).model_dump(mode="json"))
        except GatewayError as exc:
            return error_response(exc)

    async def load(self, request: web.Request) -> web.Response:
        try:
            self._check(request)
            body = await _body(request)
            wait = body.get("wait", True)
            if not isinstance(wait, bool):
                raise BadRequestError("`wait` must be true or false", param="wait")
            limit = _duration(body, "timeout")
            status = await self._agent.load(request.match_info["name"], wait=wait, limit_s=limit)
            return json_response(status.model_dump(mode="json"))
        except GatewayError as exc:
            return error_response(exc)

    async def unload(self, request: web.Request) -> web.Response:
        try:
            self._check(request)
            status = await self._agent.unload(request.match_info["name"])
            return json_response(status.model_dump(mode="json"))
        except GatewayError as exc:
            return error_response(exc)

    async def drain(self, request: web.Request) -> web.Response:
        try:
            self._check(request)
            body = await _body(request)
            result = await self._agent.drain(request.match_info["name"], limit_s=_duration(body, "timeout"))
            return json_response(result.model_dump(mode="json"))
        except GatewayError as exc:
            return error_response(exc)

    async def request_energy(self, request: web.Request) -> web.Response:
        try:
            self._check(request)
            energy_id = request.match_info["id"]
            if not valid_energy_id(energy_id):
                raise BadRequestError(
                    "an energy id is 1-64 letters, digits, '-', '_' or '.' (what the gateway sent as x-wave-energy-id)"
                )
            wait = _wait_query(request)
            if self._energy is None:
                raise NotFoundError(
                    "this agent measures no energy: add `telemetry: {}` to its config to meter its requests"
                )
            charge = self._energy.lookup(energy_id)
            if charge is None:
                raise NotFoundError(
                    f"no request with energy id {energy_id!r} here: it never reached this agent, or it "
                    f"settled more than {self._energy.lookup_keep_s:g} s ago"
                )
            await charge.wait_settled(wait)
            result = charge.result
            report = RequestEnergyReport(
                id=energy_id,
                settled=charge.settled,
                measured=result is not None,
                energy_j=result.energy_j if result is not None else 0.0,
                idle_j=result.idle_j if result is not None else 0.0,
                busy_s=result.busy_s if result is not None else 0.0,
                prompt_tokens=result.prompt_tokens if result is not None else 0,
                completion_tokens=result.completion_tokens if result is not None else 0,
            )
            return json_response(report.model_dump(mode="json"))
        except GatewayError as exc:
            return error_response(exc)


def _wait_query(request: web.Request) -> float:
    text = request.query.get("wait", "0")
    try:
        wait = float(text)
    except ValueError:
        wait = math.nan
    if not 0 <= wait <= _MAX_ENERGY_WAIT_S:  # NaN too
        raise BadRequestError(
            f"`wait` must be seconds from 0 to {_MAX_ENERGY_WAIT_S:g}, e.g. wait=10", param="wait"
        )
    return wait


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequestError(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequestError('the body must be a JSON object, e.g. {"timeout": "30s"}')
    return body


def _duration(body: dict[str, Any], field: str) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise BadRequestError(f"`{field}`: {exc}", param=field) from exc
    if seconds < 0:
        raise BadRequestError(f"`{field}` must be zero or more seconds", param=field)
    return seconds


def _int_query(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise BadRequestError(f"`{name}` must be a whole number of lines (0-{_MAX_LOG_LINES})", param=name)
    return min(int(text), _MAX_LOG_LINES)
