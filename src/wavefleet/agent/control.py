"""The control API gateways use, authenticated by the agent's shared secret (`Authorization: Bearer`).

    GET  /agent/v1/status                 every device and configured model (?log_lines=N, default 20)
    GET  /agent/v1/models/{name}          one model
    POST /agent/v1/models/{name}/load     start it; {"wait": true, "timeout": "2m"} (both optional)
    POST /agent/v1/models/{name}/unload   stop it now (requests in flight on it end with an error)
    POST /agent/v1/models/{name}/drain    no new requests; stop once those in flight end ({"timeout": "30s"})

Answers are the records of `agent.status`; errors are OpenAI-shaped like the rest of the API.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

from wavefleet.agent.host import Agent
from wavefleet.agent.status import CONTROL_PREFIX
from wavefleet.agent.units import parse_duration
from wavefleet.errors import AuthenticationError, BadRequestError, GatewayError
from wavefleet.gateway.responses import error_response, json_response
from wavefleet.gateway.security.authn import bearer_token

__all__ = ["PREFIX", "ControlApi"]

PREFIX = CONTROL_PREFIX
_MAX_LOG_LINES = 200


class ControlApi:
    def __init__(self, agent: Agent, *, secret: str | None) -> None:
        self._agent = agent
        self._secret = secret.encode() if secret else None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"{PREFIX}/status", self.status),
            web.post(f"{PREFIX}/models/{{name:.+}}/load", self.load),
            web.post(f"{PREFIX}/models/{{name:.+}}/unload", self.unload),
            web.post(f"{PREFIX}/models/{{name:.+}}/drain", self.drain),
            web.get(f"{PREFIX}/models/{{name:.+}}", self.model),
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
