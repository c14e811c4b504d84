"""The rollout controller: an asyncio task in the gateway that moves one rollout through its phases.

It runs inside the gateway because the gateway owns what a rollout acts on: the traffic split,
the retry on blue, and the live metrics of each version. The agents it drives (load, drain) are
reached over their control API. `wave rollout` is a thin client of the gateway's admin routes.

    controller = RolloutController(store=..., router=..., agents=..., backends=..., table=..., events=...)
    await controller.resume()                  # at start-up: continue or roll back what was under way
    rollout = await controller.start(request)  # validates, saves, and runs it on its own task
    await controller.abort(actor="ops")        # rolls the running one back
    await controller.aclose()                  # at shutdown: the saved step is where a restart resumes

After a restart a rollout that was placing or smoke-testing green (no user traffic on it yet)
rolls back; one in a canary step runs that step again from its start; one promoting or draining
goes on to done; one rolling back finishes rolling back. Every step writes an audit row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from pydantic import Field, field_validator

from wavefleet.agent.client import AgentClient, AgentError
from wavefleet.agent.units import format_bytes
from wavefleet.errors import BadRequestError, ConflictError, GatewayError, ModelNotFoundError, UsageError
from wavefleet.gateway.backends.base import Backend, BackendRequest, Endpoint
from wavefleet.gateway.model_table import ModelTable
from wavefleet.gateway.rollout.live import (
    DEFAULT_CRITERIA,
    Outcome,
    Window,
    blue_baseline,
    default_min_requests,
    judge,
    parse_live_criteria,
)
from wavefleet.gateway.rollout.split import Split, VersionRouter
from wavefleet.gateway.rollout.state import (
    Check,
    Phase,
    Placement,
    Rollout,
    SmokeSettings,
    ThinTraffic,
    Verdict,
    Version,
    _Record,
)
from wavefleet.gateway.rollout.store import RolloutStore
from wavefleet.gateway.security.events import Event, EventOutcome
from wavefleet.telemetry.names import EngineState

__all__ = ["RolloutController", "RolloutRequest"]

log = logging.getLogger("wavefleet.rollout")

EventSink = Callable[[Event], None]


class RolloutRequest(_Record):
    """What `wave rollout start` asks for (the admin route's body)."""

    model: str = Field(min_length=1)
    to: str = Field(min_length=1, description="green: AGENT/ENTRY or ENTRY, a model entry of an agent")
    canary: list[int] = Field(default_factory=lambda: [10, 50, 100])
    bake_s: float = Field(default=30.0, gt=0)
    criteria: str = DEFAULT_CRITERIA
    drain_timeout_s: float = Field(default=30.0, ge=0)
    retry_on_blue: bool = True
    min_requests: int | None = Field(
        default=None, ge=0, description="green's requests per step; None: derived from the criteria"
    )
    max_bake_s: float = Field(default=600.0, gt=0)
    not_enough_traffic: ThinTraffic = "rollback"
    smoke: SmokeSettings = Field(default_factory=SmokeSettings)
    actor: str = ""

    @field_validator("canary")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        if not steps or any(not 0 < s <= 100 for s in steps):
            raise ValueError("canary steps are percents from 1 to 100, e.g. 10,50,100")
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)) or steps[-1] != 100:
            raise ValueError("canary steps must rise and end at 100, e.g. 10,50,100")
        return steps

    @field_validator("criteria")
    @classmethod
    def _criteria(cls, text: str) -> str:
        try:
            parse_live_criteria(text)
        except UsageError as exc:  # its message names the bad criterion and the live metrics
            raise ValueError(str(exc)) from exc
        return text


class _Aborted(Exception):
    """The operator asked to abort."""


class _Failed(Exception):
    """A step's verdict was no: roll back, saying why."""


class RolloutController:
    def __init__(
        self,
        *,
        store: RolloutStore,
        router: VersionRouter,
        agents: Mapping[str, AgentClient],
        backends: Mapping[str, Backend],
        table: ModelTable,
        events: EventSink,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._session = session  # the agents' clients' own, closed with the controller
        self._store = store
        self._router = router
        self._agents = agents
        self._backends = backends
        self._table = table
        self._events = events
        self._current: Rollout | None = None
        self._task: asyncio.Task[None] | None = None
        self._abort = asyncio.Event()
        self._abort_actor = ""
        self._lock = asyncio.Lock()
        self._blue_since = 0.0  # loop time: blue's baseline counts from the rollout's (re)start
        self._step_since = 0.0  # loop time the canary step began

    # --- the admin side -----------------------------------------------------------------------

    @property
    def current(self) -> Rollout | None:
        return self._current

    def status(self) -> dict[str, Any]:
        """The rollout under way (with its live numbers) and the last ones."""
        active = self._current
        body: dict[str, Any] = {"active": None, "recent": []}
        if active is not None and not active.phase.terminal:
            body["active"] = self._describe(active)
        body["recent"] = [self._describe(r, live=False) for r in self._store.recent(5)]
        body["served"] = {m: str(v) for m, v in self._store.served().items()}
        return body

    def _describe(self, rollout: Rollout, *, live: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(rollout.model_dump_json())
        out["green_weight"] = rollout.green_weight
        out["step"] = rollout.step_name()
        if live and self._router.split(rollout.model) is not None:
            out["live"] = self.live(rollout)
            out["baseline"] = blue_baseline(self._router.stats(rollout.blue), self._blue_since)[1]
        return out

    def live(self, rollout: Rollout) -> dict[str, dict[str, float]]:
        """Green's live numbers since its step began, and blue's baseline (live.blue_baseline)."""
        blue, _ = blue_baseline(self._router.stats(rollout.blue), self._blue_since)
        return {
            "green": _finite(self._router.stats(rollout.green).summary(self._step_since)),
            "blue": _finite(blue),
        }

    async def start(self, request: RolloutRequest, *, actor: str) -> Rollout:
        """Check the request against the fleet, save the rollout and run it; errors name the fix."""
        async with self._lock:
            if self._current is not None and not self._current.phase.terminal:
                raise ConflictError(
                    f"rollout {self._current.id} of {self._current.model!r} is under way "
                    f"({self._current.step_name()}); wait for it or `wave rollout abort` it first"
                )
            blue = self._blue_of(request.model)
            green = await self._green_of(request.to, blue)
            rollout = Rollout(
                model=request.model,
                blue=blue,
                green=green,
                actor=request.actor or actor,
                steps=request.canary,
                bake_s=request.bake_s,
                criteria=request.criteria,
                drain_timeout_s=request.drain_timeout_s,
                retry_on_blue=request.retry_on_blue,
                min_requests=(
                    request.min_requests
                    if request.min_requests is not None
                    else default_min_requests(parse_live_criteria(request.criteria))
                ),
                max_bake_s=request.max_bake_s,
                not_enough_traffic=request.not_enough_traffic,
                smoke=request.smoke,
            )
            self._store.save(rollout)
            self._audit(rollout, "start", EventOutcome.OK, {"blue": str(blue), "green": str(green)})
            self._launch(rollout)
            return rollout

    async def abort(self, *, actor: str) -> Rollout:
        rollout = self._current
        if rollout is None or rollout.phase.terminal:
            raise ConflictError("no rollout is under way; `wave rollout status` lists the last ones")
        self._abort_actor = actor
        self._abort.set()
        return rollout

    async def resume(self) -> None:
        """Pin the models ended rollouts left, then continue (or roll back) the one under way."""
        for model, version in self._store.served().items():
            if version.backend in self._agents:
                self._router.pin(model, version)
            else:
                log.warning("rollout: %s was served by %s, which this gateway no longer has", model, version)
        for rollout in self._store.active():
            if self._current is not None and not self._current.phase.terminal:
                rollout.phase, rollout.reason = Phase.ABORTED, "another rollout was under way"
                self._store.save(rollout)
                continue
            if rollout.phase in (Phase.PLACING, Phase.SMOKE):
                rollout.reason = "the gateway restarted before green took user traffic"
                rollout.phase = Phase.ROLLING_BACK
            self._audit(rollout, "resume", EventOutcome.OK, {"phase": rollout.phase.value})
            self._launch(rollout)

    async def aclose(self) -> None:
        """Stop the task where it is: the saved step is where the next start resumes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def close(self) -> None:
        """Close the database and the agents' session (after `aclose`)."""
        self._store.close()
        if self._session is not None:
            await self._session.close()

    async def wait(self) -> Rollout | None:
        """The current rollout once its task ended (tests, `--wait`)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)
        return self._current

    # --- checking a request -------------------------------------------------------------------

    def _blue_of(self, model: str) -> Version:
        pinned = self._router.pinned(model)
        if pinned is not None:
            return pinned
        try:
            candidates = self._table.resolve(model)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"cannot roll out {model!r}: {exc.message}", param="model") from exc
        backends = sorted({c.backend for c in candidates})
        agents = [c for c in candidates if c.backend in self._agents]
        if len(candidates) != 1 or not agents:
            raise BadRequestError(
                f"a rollout replaces a model served by exactly one fleet agent; {model!r} is served by "
                f"{', '.join(backends)} (agents here: {', '.join(self._agents) or 'none'})",
                param="model",
            )
        return Version(backend=agents[0].backend, model=agents[0].model)

    async def _green_of(self, spec: str, blue: Version) -> Version:
        """Green from SPEC: AGENT/ENTRY, ENTRY (blue's agent first), or the GGUF file of an entry."""
        head, _, rest = spec.partition("/")
        if rest and head in self._agents:
            where, entry = [head], rest
        else:
            where, entry = [blue.backend, *(a for a in self._agents if a != blue.backend)], spec
        listed: dict[str, list[str]] = {}
        for agent in where:
            try:
                status = await self._agents[agent].status(log_lines=0)
            except AgentError as exc:
                listed[agent] = [f"(unreachable: {exc})"]
                continue
            found = status.model(entry) or next(
                (m for m in status.models if m.gguf == entry and m.name != blue.model), None
            )
            if found is not None:
                version = Version(backend=agent, model=found.name)
                if version == blue:
                    raise BadRequestError(
                        f"{spec!r} is blue itself ({blue}): give the new version's model entry", param="to"
                    )
                return version
            listed[agent] = [m.name for m in status.models]
        known = "; ".join(f"{a}: {', '.join(names)}" for a, names in listed.items())
        raise BadRequestError(
            f"no fleet agent has a model entry {entry!r} (by name or GGUF file) to roll out to: add it "
            "to the agent's agent.yaml `models:` (the new GGUF, context or flags under a new name) and "
            f"restart the agent, then give --to AGENT/NAME. Entries now: {known}",
            param="to",
        )

    # --- running ----------------------------------------------------------------------------

    def _launch(self, rollout: Rollout) -> None:
        self._current = rollout
        self._abort = asyncio.Event()
        self._blue_since = self._step_since = asyncio.get_running_loop().time()
        if rollout.phase not in (Phase.ROLLING_BACK, Phase.DONE):
            self._router.set_split(
                rollout.model,
                Split(
                    blue=rollout.blue,
                    green=rollout.green,
                    weight=rollout.green_weight,
                    retry_on_blue=rollout.retry_on_blue,
                ),
            )
        else:
            self._router.set_split(
                rollout.model,
                Split(blue=rollout.blue, green=rollout.green, weight=0, retry_on_blue=True),
            )
        self._task = asyncio.create_task(self._run(rollout), name=f"rollout-{rollout.id}")

    def _enter(self, rollout: Rollout, phase: Phase, *, served: Version | None = None) -> None:
        rollout.phase = phase
        split = self._router.split(rollout.model)
        if split is not None:
            split.weight = rollout.green_weight
        self._store.save(rollout, served=served)

    async def _run(self, rollout: Rollout) -> None:
        try:
            try:
                await self._forward(rollout)
            except (_Aborted, _Failed) as exc:
                if isinstance(exc, _Aborted):
                    rollout.reason = f"aborted by {self._abort_actor or 'an operator'}"
                else:
                    rollout.reason = str(exc)
                self._enter(rollout, Phase.ROLLING_BACK)
            if rollout.phase is Phase.ROLLING_BACK:
                await self._roll_back(rollout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an agent gone, a database error: roll back rather than stay half-done
            log.exception("rollout %s failed", rollout.id)
            rollout.reason = f"the controller failed: {exc}"
            with contextlib.suppress(Exception):
                self._enter(rollout, Phase.ROLLING_BACK)
                await self._roll_back(rollout)

    async def _forward(self, rollout: Rollout) -> None:
        if rollout.phase is Phase.PLACING:
            await self._place(rollout)
            self._enter(rollout, Phase.SMOKE)
        if rollout.phase is Phase.SMOKE:
            await self._smoke(rollout)
            rollout.step_index = 0
            self._enter(rollout, Phase.CANARY)
        while rollout.phase is Phase.CANARY:
            self._audit(rollout, "step", EventOutcome.OK, {"green_weight": rollout.green_weight})
            await self._bake(rollout)
            if rollout.step_index + 1 < len(rollout.steps):
                rollout.step_index += 1
                self._enter(rollout, Phase.CANARY)
            else:
                self._enter(rollout, Phase.PROMOTING, served=rollout.green)
        if rollout.phase is Phase.PROMOTING:
            self._audit(rollout, "promote", EventOutcome.OK, {"served": str(rollout.green)})
            self._enter(rollout, Phase.DRAINING)
        if rollout.phase is Phase.DRAINING:
            self._router.end_split(rollout.model, rollout.green)  # no new request reaches blue
            details = await self._drain(rollout.blue, rollout.drain_timeout_s) if not rollout.swapped else {}
            rollout.reason = rollout.reason or "promoted: every step passed"
            self._enter(rollout, Phase.DONE, served=rollout.green)
            self._audit(rollout, "done", EventOutcome.OK, {"drained": str(rollout.blue), **details})

    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise _Aborted

    async def _place(self, rollout: Rollout) -> None:
        placement = await self._placement(rollout)
        rollout.placement = placement
        self._enter(rollout, Phase.PLACING)
        self._audit(rollout, "place", EventOutcome.OK, {"mode": placement.mode, "why": placement.why})
        self._check_abort()
        if placement.mode == "swap":
            await self._drain(rollout.blue, rollout.drain_timeout_s)
        client = self._agents[rollout.green.backend]
        try:
            status = await client.load(rollout.green.model, wait=True, timeout_s=rollout.smoke.timeout_s)
        except AgentError as exc:
            raise _Failed(f"green {rollout.green} did not load: {exc}") from exc
        if status.state is not EngineState.READY:
            raise _Failed(
                f"green {rollout.green} did not load: {status.state.value} {status.detail} {status.last_error}".strip()
            )

    async def _placement(self, rollout: Rollout) -> Placement:
        green, blue = rollout.green, rollout.blue
        if green.backend != blue.backend:
            return Placement(
                mode="beside", why=f"green is on another host ({green.backend}) than blue ({blue.backend})"
            )
        status = await self._agents[green.backend].status(log_lines=0)
        mine = status.model(green.model)
        if mine is None:
            raise _Failed(f"agent {green.backend} no longer lists {green.model}")
        if mine.external:
            return Placement(
                mode="beside", why="green is an engine running on its own: it takes no memory here"
            )
        if mine.state is EngineState.READY:
            return Placement(mode="beside", why="green is loaded already")
        device = next((d for d in status.devices if d.name == mine.memory.device), None)
        need = mine.memory.estimate
        if device is None:
            return Placement(mode="beside", why=f"green's device {mine.memory.device} reports no budget")
        free = device.budget - device.reserved
        text = (
            f"green needs {format_bytes(need)} on {device.name} ({mine.memory.estimate_basis or 'estimate'}); "
            f"{format_bytes(free)} of its {format_bytes(device.budget)} budget is free beside what is loaded"
        )
        if need <= free:
            return Placement(mode="beside", why=text)
        return Placement(
            mode="swap",
            why=text + ": blue is drained first, so the model has a gap of drain + load time "
            "in which requests wait for green",
        )

    async def _smoke(self, rollout: Rollout) -> None:
        self._check_abort()
        green = rollout.green
        backend = self._backends[green.backend]
        settings = rollout.smoke
        checks: list[Check] = [Check(name="ready", passed=True)]
        messages = [{"role": "user", "content": "Say hello."}]
        chat: dict[str, Any] = {"model": green.model, "messages": messages, "max_tokens": settings.max_tokens}
        checks.append(await _probe(backend, "chat", "chat/completions", chat, settings.timeout_s))
        stream = {**chat, "stream": True}
        checks.append(await _probe(backend, "stream", "chat/completions", stream, settings.timeout_s))
        if settings.embedding:
            embed: dict[str, Any] = {"model": green.model, "input": "hello"}
            checks.append(await _probe(backend, "embedding", "embeddings", embed, settings.timeout_s))
        for prompt, expected in settings.expect:
            body: dict[str, Any] = {
                "model": green.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": settings.max_tokens,
                "temperature": 0,
            }
            checks.append(
                await _probe(
                    backend, f"expect {expected!r}", "chat/completions", body, settings.timeout_s, expected
                )
            )
        passed = all(c.passed for c in checks)
        rollout.verdicts.append(Verdict(step="smoke", passed=passed, checks=checks))
        self._store.save(rollout)
        failed = [c for c in checks if not c.passed]
        self._audit(
            rollout,
            "smoke",
            EventOutcome.OK if passed else EventOutcome.FAILED,
            {"checks": [c.model_dump() for c in checks]},
        )
        if failed:
            raise _Failed("smoke test failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))

    async def _bake(self, rollout: Rollout) -> None:
        """Run one canary step until its window has its evidence (live.Window: its bake and its
        requests, at most max_bake_s; at once when green's failures decide), then judge it;
        raises _Failed on a no."""
        loop = asyncio.get_running_loop()
        began = self._step_since = loop.time()
        blue_since = self._blue_since
        green_stats = self._router.stats(rollout.green)
        window = Window(
            began=began,
            bake_s=rollout.bake_s,
            max_bake_s=rollout.max_bake_s,
            min_requests=rollout.min_requests,
        )
        criteria = parse_live_criteria(rollout.criteria)
        while (outcome := window.decide(criteria, green_stats, loop.time())) is Outcome.WAIT:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._abort.wait(), timeout=0.25)
            self._check_abort()
        green = green_stats.summary(began)
        blue, basis = blue_baseline(self._router.stats(rollout.blue), blue_since)
        checks = judge(criteria, green, blue)
        if outcome is Outcome.NOT_ENOUGH_TRAFFIC:
            seen = green_stats.count(began)
            checks.insert(
                0,
                Check(
                    name=f"min_requests>={rollout.min_requests}",
                    passed=rollout.not_enough_traffic == "judge",
                    value=float(seen),
                    detail=f"not enough traffic: {seen} green requests in {window.longest:g} s"
                    + ("; judged on them" if rollout.not_enough_traffic == "judge" else ""),
                ),
            )
        passed = all(c.passed for c in checks)
        rollout.verdicts.append(
            Verdict(
                step=rollout.step_name(),
                passed=passed,
                green=_finite(green),
                blue=_finite(blue),
                baseline=basis,
                checks=checks,
            )
        )
        self._store.save(rollout)
        self._audit(
            rollout,
            "verdict",
            EventOutcome.OK if passed else EventOutcome.FAILED,
            {
                "step": rollout.step_name(),
                "checks": [c.model_dump() for c in checks],
                "green": _finite(green),
            },
        )
        if not passed:
            broken = [
                c.detail or f"{c.name} (measured {c.value:g})"
                for c in checks
                if not c.passed and c.value is not None
            ]
            raise _Failed(f"{rollout.step_name()} failed: " + ", ".join(broken))

    async def _drain(self, version: Version, timeout_s: float) -> dict[str, object]:
        """Drain `version` on its agent (in-flight requests finish, at most `timeout_s`), then it unloads."""
        client = self._agents[version.backend]
        if (await client.model(version.model)).external:
            return {"drain": "an engine running on its own: left running, no longer routed to"}
        result = await client.drain(version.model, timeout_s=timeout_s)
        return {"waited_s": round(result.waited, 3), "cut": result.cut}

    async def _roll_back(self, rollout: Rollout) -> None:
        """All traffic to blue (loading it again after a swap), drain green, pin blue."""
        split = self._router.split(rollout.model)
        if split is not None:
            split.weight = 0
        if rollout.swapped:
            with contextlib.suppress(AgentError):
                await self._agents[rollout.blue.backend].load(rollout.blue.model, wait=True)
        details: dict[str, object] = {}
        try:
            details = await self._drain(rollout.green, rollout.drain_timeout_s)
        except AgentError as exc:
            details = {"drain_error": str(exc)}
        self._router.end_split(rollout.model, rollout.blue)
        aborted = rollout.reason.startswith("aborted")
        self._enter(rollout, Phase.ABORTED if aborted else Phase.ROLLED_BACK, served=rollout.blue)
        self._audit(rollout, "rollback", EventOutcome.FAILED, {"reason": rollout.reason, **details})

    def _audit(self, rollout: Rollout, step: str, outcome: EventOutcome, details: dict[str, object]) -> None:
        event = Event(
            actor=rollout.actor,
            action=f"rollout.{step}",
            subject=rollout.model,
            outcome=outcome,
            details={
                "rollout": rollout.id,
                "phase": rollout.phase.value,
                "green_weight": rollout.green_weight,
                **details,
            },
        )
        try:
            self._events(event)
        except Exception:  # an audit row that cannot be written must not stop a rollback
            log.exception("rollout %s: cannot write the audit row for %s", rollout.id, step)


async def _probe(
    backend: Backend,
    name: str,
    endpoint: Endpoint,
    body: dict[str, Any],
    timeout_s: float,
    expected: str | None = None,
) -> Check:
    """One private request straight to green's backend (no public route reaches it), checked."""
    stream = bool(body.get("stream"))
    raw = json.dumps(body).encode()
    try:
        async with asyncio.timeout(timeout_s):
            reply = await backend.send(BackendRequest(endpoint=endpoint, body=body, raw=raw, stream=stream))
            try:
                if stream:
                    data = b"".join([chunk async for chunk in reply.chunks()])
                else:
                    data = await reply.read()
            finally:
                reply.close()
    except (GatewayError, TimeoutError, OSError) as exc:
        return Check(name=name, passed=False, detail=f"no answer: {exc}")
    if reply.status != 200:
        return Check(
            name=name, passed=False, detail=f"HTTP {reply.status}: {data[:200].decode(errors='replace')}"
        )
    if stream:
        ok = b"data:" in data and b"[DONE]" in data
        return Check(name=name, passed=ok, detail="" if ok else "the stream did not end with [DONE]")
    try:
        answer = json.loads(data)
        if endpoint == "embeddings":
            vector = answer["data"][0]["embedding"]
            ok = isinstance(vector, list) and bool(vector)
            return Check(name=name, passed=ok, detail="" if ok else "no embedding vector")
        content = answer["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return Check(name=name, passed=False, detail=f"not an OpenAI answer: {exc}")
    if not isinstance(content, str):
        return Check(name=name, passed=False, detail="the answer has no text")
    if expected is not None and expected.lower() not in content.lower():
        return Check(name=name, passed=False, detail=f"the answer {content[:120]!r} lacks {expected!r}")
    return Check(name=name, passed=True)


def _finite(summary: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in summary.items() if not math.isnan(v)}
