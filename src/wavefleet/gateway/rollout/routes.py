"""The gateway's admin routes for rollouts, which `wave rollout` calls (any key the gateway accepts):

    GET  /admin/v1/rollouts          the rollout under way (live numbers), the last ones, served versions
    POST /admin/v1/rollouts          start one: a RolloutRequest as JSON; 201 with the rollout
    POST /admin/v1/rollouts/abort    roll back the one under way

Errors are OpenAI-shaped: 400 for a bad request (unknown model entry, bad criteria), 404 for an
unknown model, 409 when a rollout is under way (or none is, for abort), 503 without fleet agents.
"""

from __future__ import annotations

import json

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import ValidationError

from wavefleet.errors import BadRequestError, GatewayError, NoHealthyBackendError
from wavefleet.gateway.responses import error_response, json_response
from wavefleet.gateway.rollout.controller import RolloutController, RolloutRequest
from wavefleet.gateway.rollout.split import VersionRouter
from wavefleet.gateway.security.authn import Authenticator

__all__ = ["PREFIX", "RolloutCollector", "RolloutRoutes"]

PREFIX = "/admin/v1/rollouts"
_LIVE_METRICS = ("error_rate", "p95_ttft_ms", "mean_tpot_ms", "p95_e2el_ms")


class RolloutRoutes:
    """The routes; `controller` is set once the app's session exists (None: no fleet agents)."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator
        self.controller: RolloutController | None = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(PREFIX, self.status),
            web.post(PREFIX, self.start),
            web.post(f"{PREFIX}/abort", self.abort),
        ]

    async def _ready(self, request: web.Request) -> tuple[RolloutController, str]:
        principal = await self._authenticator.authenticate(request.headers.get("Authorization"))
        if self.controller is None:
            raise NoHealthyBackendError(
                "rollouts need fleet agents behind this gateway (`agents:` in wave.yaml, or --agent URL)"
            )
        return self.controller, principal.ident

    async def status(self, request: web.Request) -> web.Response:
        try:
            controller, _ = await self._ready(request)
            return json_response(controller.status())
        except GatewayError as exc:
            return error_response(exc)

    async def start(self, request: web.Request) -> web.Response:
        try:
            controller, who = await self._ready(request)
            try:
                body = RolloutRequest.model_validate_json(await request.read())
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
                )
                raise BadRequestError(f"bad rollout request: {problems}") from exc
            rollout = await controller.start(body, actor=who)
            return json_response(json.loads(rollout.model_dump_json()), 201)
        except GatewayError as exc:
            return error_response(exc)

    async def abort(self, request: web.Request) -> web.Response:
        try:
            controller, who = await self._ready(request)
            rollout = await controller.abort(actor=who)
            return json_response({"aborting": rollout.id, "model": rollout.model})
        except GatewayError as exc:
            return error_response(exc)


class RolloutCollector:
    """Prometheus: green's share per model under rollout and each version's requests."""

    def __init__(self, routes: RolloutRoutes, router: VersionRouter) -> None:
        self._routes = routes
        self._router = router

    def collect(self) -> list[Metric]:
        weight = GaugeMetricFamily(
            "wave_rollout_green_weight_percent",
            "green's share of the model's requests",
            labels=["model", "phase"],
        )
        requests = GaugeMetricFamily(
            "wave_rollout_version_requests", "requests each version answered in this rollout",
            labels=["model", "version", "outcome"],
        )  # fmt: skip
        live = GaugeMetricFamily(
            "wave_rollout_version_live",
            "each version's live numbers the criteria read: green's in the step, blue's in the rollout",
            labels=["model", "version", "metric"],
        )
        controller = self._routes.controller
        rollout = controller.current if controller is not None else None
        if controller is not None and rollout is not None and not rollout.phase.terminal:
            weight.add_metric([rollout.model, rollout.phase.value], rollout.green_weight)
            numbers = controller.live(rollout)
            for name, version in (("blue", rollout.blue), ("green", rollout.green)):
                stats = self._router.stats(version)
                requests.add_metric([rollout.model, name, "ok"], stats.total - stats.failed)
                requests.add_metric([rollout.model, name, "failed"], stats.failed)
                for metric in _LIVE_METRICS:
                    if metric in numbers[name]:
                        live.add_metric([rollout.model, name, metric], numbers[name][metric])
        return [weight, requests, live]
