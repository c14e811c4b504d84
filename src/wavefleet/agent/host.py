"""The fleet agent's core: one engine process per loaded model, started on demand, kept within each
device's memory, unloaded when idle, restarted when it crashes.

    agent = Agent(config)
    await agent.start()                         # estimates, devices; pinned models start loading
    lease = await agent.acquire("smollm2")      # starts it if stopped; waits (bounded) until ready
    ... send the request to lease.url ...
    lease.release()                             # its idle timer starts when nothing is in flight
    await agent.drain("smollm2", timeout=30)    # no new requests; stop once the running ones end
    await agent.aclose()                        # every engine stopped

Each model's engine runs under a supervising task, through the states

    stopped -> starting -> ready -> (draining ->) stopping -> stopped        and failed

Starting makes room first: the model's estimate (the sizing engine's, per device) must fit both
the device's budget, less what the other models hold, and what the device really has free. If it
does not, idle models are evicted cheapest first (the shortest to load again, then the least
recently used; never a pinned one, never one with requests in flight), and the agent waits until
the device's free memory has really come back. Loads on one device go one at a time.

A ready engine is polled for health; when it exits or stops answering, it is restarted after
min(base x 2^(n-1), max) seconds, and marked failed after `max_restarts` restarts in a row
(a load that succeeds and stays up `stable_after` seconds starts the count again). Requests it
had begun answering end at once with an error naming the crash; requests not yet sent, or held
unanswered (agent.backend), wait for the restart, within the load timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp

from wavefleet import __version__
from wavefleet.agent.config import AgentConfig, ModelConfig, resolve_gguf
from wavefleet.agent.devices import DeviceMemory, HostMemory, MemoryReading, open_gpu
from wavefleet.agent.launch import EngineLaunch, engine_launch
from wavefleet.agent.memory import CPU_RUNTIME_BYTES, MemoryEstimate, estimate_llama_server, fixed_estimate
from wavefleet.agent.metrics import AgentMetrics
from wavefleet.agent.process import EngineProcess, exit_text, free_port
from wavefleet.agent.status import (
    AgentStatus,
    ColdStart,
    DeviceStatus,
    DrainResult,
    MemoryStatus,
    ModelStatus,
)
from wavefleet.agent.units import format_bytes
from wavefleet.engines import EngineKind
from wavefleet.engines.llama_server import LlamaServerBinary, find_llama_server
from wavefleet.errors import EngineError, ModelFailedError, ModelNotFoundError, ModelNotReadyError, UsageError
from wavefleet.plan.gguf_file import read_gguf
from wavefleet.telemetry.names import EngineState

__all__ = ["Agent", "Lease", "ManagedModel", "eviction_order"]

_log = logging.getLogger("wavefleet.agent")
REAP_INTERVAL_S = 0.25  # how often idle timers are checked
UNHEALTHY_AFTER = 3  # health polls failed in a row before a ready engine counts as dead
_POLL_FIRST_S, _POLL_MAX_S = 0.01, 0.1  # health polls while loading: fast at first (cold-start time)
EVENTS_KEPT = 200


@dataclass(frozen=True, kw_only=True, slots=True)
class _Phases:
    memory: float
    process: float
    load: float
    first_token: float

    @property
    def total(self) -> float:
        return self.memory + self.process + self.load + self.first_token


class _StartFailure(Exception):
    """The engine did not come up: it exited, never answered, or failed its probe."""


class _NoRoom(Exception):
    """No memory for the model: `never` when it cannot fit even with the device empty."""

    def __init__(self, text: str, *, never: bool) -> None:
        super().__init__(text)
        self.never = never


@dataclass(kw_only=True, slots=True)
class _Device:
    name: str
    gpu: int | None
    memory: DeviceMemory
    total: int
    budget: int
    source: str
    lock: asyncio.Lock


class ManagedModel:
    """One configured model and everything the agent knows of its engine."""

    def __init__(
        self, config: ModelConfig, *, engine: str, estimate: MemoryEstimate, needs: dict[str, int]
    ) -> None:
        self.config = config
        self.name = config.name
        self.engine = engine  # its backend name in the agent's OpenAI app, and the metric's engine label
        self.estimate = estimate
        self.needs = needs  # bytes per device: its own, and host RAM for a GPU model's host share
        self.external = config.url is not None
        self._external_url = str(config.url).rstrip("/").removesuffix("/v1") if config.url is not None else ""
        self.state = EngineState.READY if self.external else EngineState.STOPPED
        self.detail = "an engine running on its own" if self.external else "not loaded"
        self.process: EngineProcess | None = None
        self.launch: EngineLaunch | None = None
        self.task: asyncio.Task[None] | None = None
        self.holds_memory = False
        self.inflight = 0
        self.waiting = 0
        self.last_used = time.monotonic()
        self.keep_alive: float | None = None
        self.loads = 0
        self.restarts = 0
        self.failures_in_row = 0
        self.next_start_at: float | None = None
        self.last_exit: str | None = None
        self.last_error = ""
        self.cold_start: _Phases | None = None
        self.ready_at: float | None = None
        self.buffers: dict[str, int] | None = None  # logged: {"device": ..., "host": ...}
        self.process_bytes: int | None = None
        self.log_tail: list[str] = []  # the last engine's output, kept after it stops
        self.stopped_because = ""  # why it is stopped: an unload's reason, or no room

    @property
    def url(self) -> str:
        if self.external:
            return self._external_url
        assert self.process is not None
        return self.process.url

    def load_timeout(self, default: float) -> float:
        return self.config.load_timeout if self.config.load_timeout is not None else default

    def ttl(self, default: float) -> float:
        """Idle seconds before an unload: the last request's keep_alive, else its own, else the default."""
        return self.keep_alive if self.keep_alive is not None else self.config.ttl_or(default)

    def measured(self, device: str) -> int:
        """What it logged on `device` (with the process's own runtime), 0 when unknown."""
        if self.buffers is None:
            return 0
        device_part = self.config.device == device
        logged = self.buffers["device"] if device_part else self.buffers["host"]
        runtime = self.estimate.parts.get("runtime", 0) if device_part else CPU_RUNTIME_BYTES
        return logged + runtime

    def reservation(self, device: str) -> int:
        """What the agent holds for it on `device`: the larger of its estimate and what it logged."""
        if not self.holds_memory or device not in self.needs:
            return 0
        return max(self.needs[device], self.measured(device))

    @property
    def draining(self) -> bool:
        return self.state is EngineState.DRAINING

    def evictable(self) -> bool:
        return (
            self.state is EngineState.READY
            and not self.external
            and not self.config.pinned
            and self.inflight == 0
            and self.waiting == 0
        )


class Lease:
    """One request's hold on a ready engine: it counts as in flight until released."""

    __slots__ = ("_agent", "_done", "model", "process", "url")

    def __init__(self, agent: Agent, model: ManagedModel) -> None:
        self._agent = agent
        self._done = False
        self.model = model
        self.process = model.process  # the engine it was sent to (None for an external one)
        self.url = model.url

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._agent._release(self.model)

    async def engine_died(self, within: float = 0.5) -> str | None:
        """How the engine this request went to ended, if it has within `within` seconds; else None."""
        if self.process is None:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.process.exited), within)
        code = self.process.returncode
        return exit_text(code) if code is not None else None


class Agent:
    """See the module's docstring. `devices` replaces the devices read from this host (tests)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        devices: Mapping[str, DeviceMemory] | None = None,
        binary: LlamaServerBinary | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.config = config
        self.defaults = config.defaults
        self.metrics = metrics or AgentMetrics()
        self._given_devices = dict(devices or {})
        self._binary = binary
        self.devices: dict[str, _Device] = {}
        self.models: dict[str, ManagedModel] = {}
        self.events: deque[str] = deque(maxlen=EVENTS_KEPT)
        self._changed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._closing = False

    # --- life of the agent ------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the devices and estimate every model; pinned models start loading. UsageError for a
        model file or device that cannot be used, naming it."""
        self._open_devices()
        if self._binary is None and any(
            m.kind is EngineKind.LLAMACPP and m.command is None and m.url is None for m in self.config.models
        ):
            self._binary = find_llama_server(self.config.llama_server)
        names: set[str] = set()
        unreadable: dict[str, str] = {}
        for config in self.config.models:
            try:
                estimate = await asyncio.to_thread(self._estimate, config)
            except UsageError as exc:  # one bad model file must not keep the others from serving
                estimate, unreadable[config.name] = MemoryEstimate(device=0, basis="none"), str(exc)
            needs = self._needs(config, estimate)
            engine = _engine_name(config.name, names)
            names.add(engine)
            self.models[config.name] = ManagedModel(config, engine=engine, estimate=estimate, needs=needs)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=2))
        for model in self.models.values():
            never = unreadable.get(model.name) or self._never_fits(model)
            if never:
                self._fail(model, never)
        self._reaper = asyncio.create_task(self._reap(), name="agent-idle-timers")
        for model in self.models.values():
            if model.config.pinned and model.state is EngineState.STOPPED:
                self._start_supervisor(model, "pinned: loaded at start")

    async def aclose(self) -> None:
        """Stop every engine (SIGTERM, then SIGKILL after the stop timeout) and the agent's tasks."""
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.wait({self._reaper})
        await asyncio.gather(*(self._unload(m, "shutdown", count=False) for m in self.models.values()))
        if self._session is not None:
            await self._session.close()

    def _open_devices(self) -> None:
        for name, device in self.config.devices.items():
            memory = self._given_devices.get(name)
            if memory is None:
                if device.gpu is None:
                    memory = HostMemory()
                else:
                    try:
                        memory = open_gpu(device.gpu)
                    except RuntimeError as exc:
                        raise UsageError(f"device {name} (gpu: {device.gpu}): {exc}") from exc
            reading = memory.read()
            total = device.total if device.total is not None else reading.total
            self.devices[name] = _Device(
                name=name,
                gpu=device.gpu,
                memory=memory,
                total=total,
                budget=device.budget_of(total),
                source=reading.source if device.total is None else "agent.yaml",
                lock=asyncio.Lock(),
            )

    def _estimate(self, config: ModelConfig) -> MemoryEstimate:
        if config.url is not None:
            return MemoryEstimate(device=0, basis="an engine running on its own: not counted")
        if config.memory is not None:
            return fixed_estimate(config.memory, "memory: in agent.yaml")
        assert config.gguf is not None
        summary = read_gguf(resolve_gguf(config.gguf))
        device = self.config.devices[config.device]
        return estimate_llama_server(
            summary,
            context=config.context,
            slots=config.slots,
            gpu_layers=config.n_gpu_layers,
            on_gpu=device.gpu is not None,
        )

    def _needs(self, config: ModelConfig, estimate: MemoryEstimate) -> dict[str, int]:
        if config.url is not None:
            return {}
        needs = {config.device: estimate.device}
        ram = self.config.ram_device()
        if estimate.host and ram is not None and ram != config.device:
            needs[ram] = estimate.host
        return needs

    # --- requests -----------------------------------------------------------------------------------

    async def acquire(
        self, name: str, *, keep_alive: float | None = None, limit_s: float | None = None
    ) -> Lease:
        """A lease on `name`'s ready engine: started if stopped, waited for if starting (at most
        `limit_s`, default the load timeout). ModelNotReadyError (503) naming what it waited for."""
        model = self.model(name)
        limit = model.load_timeout(self.defaults.load_timeout) if limit_s is None else limit_s
        deadline = time.monotonic() + limit
        model.waiting += 1
        try:
            while True:
                state = model.state
                if state is EngineState.READY:
                    model.inflight += 1
                    model.last_used = time.monotonic()
                    if keep_alive is not None:
                        model.keep_alive = keep_alive
                    return Lease(self, model)
                if state is EngineState.FAILED:
                    raise ModelFailedError(self._failed_text(model))
                if state is EngineState.DRAINING:
                    raise ModelNotReadyError(
                        f"model {name!r} is draining on host {self.config.name!r} and takes no new requests; "
                        "it is stopped once its running requests end",
                        retry_after=5,
                    )
                if state is EngineState.STOPPED:
                    if self._closing:
                        raise ModelNotReadyError(
                            f"model {name!r}: the agent on host {self.config.name!r} is shutting down"
                        )
                    self._start_supervisor(model, "a request")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ModelNotReadyError(
                        f"model {name!r} on host {self.config.name!r} was not ready within {limit:g} s "
                        "(the load timeout); "
                        f"it was waiting for {model.detail}",
                        retry_after=self._retry_after(model),
                    )
                await self._wait_change(left)
        finally:
            model.waiting -= 1

    def _release(self, model: ManagedModel) -> None:
        model.inflight -= 1
        model.last_used = time.monotonic()
        if model.inflight == 0:
            self._notify()
            if model.ttl(self.defaults.ttl) == 0 and model.evictable():
                self._begin_unload(model, self._idle_reason(model), note="no request in flight")

    def model(self, name: str) -> ManagedModel:
        found = self.models.get(name)
        if found is None:
            raise ModelNotFoundError(
                f"model {name!r} is not configured on this agent; configured: {', '.join(self.models)}",
                param="model",
            )
        return found

    def engine_name(self, model: str) -> str:
        return self.models[model].engine

    # --- control ------------------------------------------------------------------------------------

    async def load(self, name: str, *, wait: bool = True, limit_s: float | None = None) -> ModelStatus:
        """Start `name` if it is not loaded (a failed model is tried again, its count reset) and,
        with `wait`, return once it is ready, failed, or stopped for lack of memory."""
        model = self.model(name)
        limit = model.load_timeout(self.defaults.load_timeout) if limit_s is None else limit_s
        deadline = time.monotonic() + limit
        if model.state is EngineState.FAILED:
            model.failures_in_row = 0
            model.next_start_at = None
            model.state = EngineState.STOPPED
            model.detail = "asked to load again after failing"
            self._event(f"{name}: load asked after failing; trying again")
        while model.state in (EngineState.STOPPING, EngineState.DRAINING):
            if not await self._wait_change(deadline - time.monotonic()):
                break
        if model.state is EngineState.STOPPED:
            self._start_supervisor(model, "the control API")
        while wait and model.state is EngineState.STARTING:
            if not await self._wait_change(deadline - time.monotonic()):
                break
        return self.model_status(model)

    async def unload(self, name: str) -> ModelStatus:
        """Stop `name`'s engine now; requests in flight on it end with an error."""
        model = self.model(name)
        if model.external:
            raise UsageError(f"model {name!r} is an engine running on its own: the agent cannot unload it")
        await self._unload(model, "unload")
        return self.model_status(model)

    async def drain(self, name: str, *, limit_s: float | None = None) -> DrainResult:
        """Take no new requests for `name`, wait (at most `limit_s`) for those in flight, then stop it."""
        model = self.model(name)
        if model.external:
            raise UsageError(f"model {name!r} is an engine running on its own: the agent cannot drain it")
        limit = self.defaults.drain_timeout if limit_s is None else limit_s
        began = time.monotonic()
        if model.state is EngineState.READY:
            self._set(model, EngineState.DRAINING, f"draining: {model.inflight} request(s) in flight")
            self._event(f"{name}: draining ({model.inflight} in flight, at most {limit:g} s)")
            while model.inflight and model.draining:
                if not await self._wait_change(began + limit - time.monotonic()):
                    break
        cut = model.inflight if model.draining else 0
        await self._unload(model, "drain")
        return DrainResult(model=name, state=model.state, waited=time.monotonic() - began, cut=cut)

    # --- supervision ----------------------------------------------------------------------------

    def _start_supervisor(self, model: ManagedModel, why: str) -> None:
        self._set(model, EngineState.STARTING, f"starting ({why})")
        self._event(f"{model.name}: starting ({why})")
        model.task = asyncio.create_task(self._supervise(model), name=f"engine-{model.name}")

    async def _supervise(self, model: ManagedModel) -> None:
        try:
            while True:
                if model.next_start_at is not None:
                    delay = model.next_start_at - time.monotonic()
                    if delay > 0:
                        self._set(
                            model,
                            EngineState.STARTING,
                            f"restart {model.failures_in_row} of {self.defaults.max_restarts} in "
                            f"{delay:.1f} s, after {model.last_error}",
                        )
                        await asyncio.sleep(delay)
                    model.next_start_at = None
                try:
                    process = await self._bring_up(model)
                except _NoRoom as no_room:
                    self.metrics.loads.labels(model.name, "no_memory").inc()
                    model.last_error = model.stopped_because = f"not started: {no_room}"
                    self._event(f"{model.name}: not started: {no_room}")
                    if no_room.never:
                        self._fail(model, str(no_room))
                    return
                except _StartFailure as failure:
                    self.metrics.loads.labels(model.name, "failed").inc()
                    if not await self._after_failure(model, str(failure)):
                        return
                    continue
                reason = await self._serve(model, process)
                if model.state is EngineState.DRAINING or self._closing:
                    return
                if not await self._after_failure(model, reason):
                    return
        finally:
            await self._teardown(model)

    async def _after_failure(self, model: ManagedModel, reason: str) -> bool:
        """Record a crash or failed start; True when the engine is to be started again."""
        self._set(model, EngineState.STARTING, f"restarting after {reason}")  # no request goes to it now
        if model.process is not None:
            model.log_tail = model.process.tail(40)
            model.last_exit = exit_text(await model.process.stop(grace=self.defaults.stop_timeout))
            model.process = None
        model.last_error = reason
        model.failures_in_row += 1
        if model.failures_in_row > self.defaults.max_restarts:
            self._fail(
                model,
                f"{reason}; {model.failures_in_row} starts in a row failed (max_restarts "
                f"{self.defaults.max_restarts})",
            )
            return False
        model.restarts += 1
        self.metrics.restarts.labels(model.name).inc()
        delay = self.defaults.backoff.delay(model.failures_in_row)
        model.next_start_at = time.monotonic() + delay
        self._event(
            f"{model.name}: {reason}; restart {model.failures_in_row} of {self.defaults.max_restarts} "
            f"in {delay:g} s"
        )
        return True

    def _fail(self, model: ManagedModel, reason: str) -> None:
        model.last_error = reason
        self._set(model, EngineState.FAILED, f"failed: {reason}")
        self._event(f"{model.name}: failed: {reason}")
        model.next_start_at = None

    async def _teardown(self, model: ManagedModel) -> None:
        process, model.process = model.process, None
        if process is not None:
            if model.state is not EngineState.FAILED:
                self._set(model, EngineState.STOPPING, model.detail)
            model.log_tail = process.tail(40)
            code = await process.stop(grace=self.defaults.stop_timeout)
            model.last_exit = exit_text(code)
        model.holds_memory = False
        model.ready_at = None
        model.task = None
        if model.state is not EngineState.FAILED:
            self._set(model, EngineState.STOPPED, model.stopped_because or "not loaded")
        self._notify()

    async def _bring_up(self, model: ManagedModel) -> EngineProcess:
        """Make room, start the engine and wait until it answers its probe; `model` ends ready."""
        began = time.monotonic()
        limit = model.load_timeout(self.defaults.load_timeout)
        devices = [self.devices[name] for name in sorted(model.needs)]
        async with contextlib.AsyncExitStack() as held:
            for device in devices:
                if device.lock.locked():
                    self._set(model, EngineState.STARTING, f"its turn on {device.name} (one load at a time)")
                await held.enter_async_context(device.lock)
            await self._make_room(model, deadline=began + limit)
            roomed = time.monotonic()
            port = free_port()
            launch = engine_launch(
                model.config, port=port, binary=self._binary, gpu=self.devices[model.config.device].gpu
            )
            model.launch = launch
            self._set(
                model, EngineState.STARTING, f"the engine process to start ({launch.argv[0].split('/')[-1]})"
            )
            log_file = self.config.log_dir / f"{_safe(model.name)}.log" if self.config.log_dir else None
            try:
                process = await EngineProcess.spawn(launch, port=port, log_file=log_file)
            except EngineError as exc:
                raise _StartFailure(str(exc)) from exc
            model.process = process
            phases = await self._until_ready(model, process, launch, roomed, limit=limit)
        self._ready(model, process, _Phases(memory=roomed - began, **phases))
        return process

    async def _until_ready(
        self,
        model: ManagedModel,
        process: EngineProcess,
        launch: EngineLaunch,
        roomed: float,
        *,
        limit: float,
    ) -> dict[str, float]:
        """Poll health until the engine answers at all (process), then 200 (load), then probe it."""
        assert self._session is not None
        health = f"{process.url}{launch.health_path}"
        deadline = roomed + limit
        answered: float | None = None
        interval = _POLL_FIRST_S
        while True:
            status = await self._poll(health, within=1.0)
            now = time.monotonic()
            if status is not None and answered is None:
                answered = now
                self._set(model, EngineState.STARTING, f"the engine to load its model (pid {process.pid})")
            if status == 200:
                break
            if process.exited.done():
                raise _StartFailure(self._died_text(process, "while loading"))
            if now >= deadline:
                process.signal_group(signal.SIGKILL)
                raise _StartFailure(
                    f"the engine was not ready within {limit:g} s (the load timeout); "
                    f"{'it answered health checks with ' + str(status) if status else 'it never answered'}"
                )
            await asyncio.wait({process.exited}, timeout=interval)
            interval = min(interval * 1.5, _POLL_MAX_S)
        healthy = time.monotonic()
        self._set(model, EngineState.STARTING, "its probe request (max_tokens 1)")
        try:
            async with self._session.post(
                f"{process.url}{launch.probe_path}",
                json=launch.probe,
                timeout=aiohttp.ClientTimeout(total=max(deadline - healthy, 5.0)),
            ) as reply:
                body = await reply.read()
                if reply.status != 200:
                    raise _StartFailure(
                        f"its probe request answered {reply.status}: {body[:200].decode(errors='replace')}"
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            if process.exited.done() or await _exits_soon(process):
                raise _StartFailure(self._died_text(process, "during its probe request")) from exc
            raise _StartFailure(f"its probe request failed: {type(exc).__name__}: {exc}") from exc
        probed = time.monotonic()
        answered = answered or healthy
        return {"process": answered - roomed, "load": healthy - answered, "first_token": probed - healthy}

    def _ready(self, model: ManagedModel, process: EngineProcess, phases: _Phases) -> None:
        model.loads += 1
        model.cold_start = phases
        model.ready_at = model.last_used = time.monotonic()
        model.holds_memory = True
        if process.buffers.seen:
            model.buffers = {"device": process.buffers.device_bytes(), "host": process.buffers.host_bytes()}
            if self.devices[model.config.device].gpu is None:  # a CPU engine: all of it is host memory
                model.buffers = {"device": model.buffers["device"] + model.buffers["host"], "host": 0}
        model.process_bytes = self.devices[model.config.device].memory.process_bytes(process.pid)
        self.metrics.loads.labels(model.name, "ready").inc()
        for phase in ("memory", "process", "load", "first_token", "total"):
            self.metrics.cold_start.labels(model.name, phase).observe(getattr(phases, phase))
        self._set(model, EngineState.READY, f"serving on port {process.port} (pid {process.pid})")
        self._event(
            f"{model.name}: ready in {phases.total:.2f} s (memory {phases.memory:.2f}, process "
            f"{phases.process:.2f}, load {phases.load:.2f}, first token {phases.first_token:.2f}); "
            + _memory_text(model)
        )

    async def _serve(self, model: ManagedModel, process: EngineProcess) -> str:
        """Watch a ready engine until it exits or stops answering; why it ended."""
        assert model.launch is not None
        health = f"{process.url}{model.launch.health_path}"
        misses = 0
        while True:
            await asyncio.wait({process.exited}, timeout=self.defaults.health_interval)
            if process.exited.done():
                return self._died_text(process, "while serving")
            if (
                model.failures_in_row
                and model.ready_at is not None
                and time.monotonic() - model.ready_at >= self.defaults.stable_after
            ):
                model.failures_in_row = 0
            if model.process_bytes is None or self.devices[model.config.device].gpu is not None:
                model.process_bytes = self.devices[model.config.device].memory.process_bytes(process.pid)
            status = await self._poll(health, within=2.0)
            misses = 0 if status == 200 else misses + 1
            if misses >= UNHEALTHY_AFTER:
                process.signal_group(signal.SIGKILL)
                await asyncio.shield(process.exited)
                return f"the engine stopped answering its health checks ({UNHEALTHY_AFTER} in a row) and was killed"

    async def _poll(self, url: str, *, within: float) -> int | None:
        """The status of a GET, or None when nothing answered."""
        assert self._session is not None
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=within)) as reply:
                await reply.read()
                return reply.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    def _died_text(self, process: EngineProcess, when: str) -> str:
        code = process.returncode
        how = exit_text(code) if code is not None else "stopped answering"
        last = next((line for line in reversed(process.lines) if line.strip()), "")
        return f"the engine {how} {when}" + (f" (its last line: {last[-200:]})" if last else "")

    # --- memory ---------------------------------------------------------------------------------

    def _never_fits(self, model: ManagedModel) -> str:
        for name, need in model.needs.items():
            device = self.devices[name]
            if need > device.budget:
                return (
                    f"it needs {format_bytes(need)} on {name} ({model.estimate.basis}) but the device's budget is "
                    f"{format_bytes(device.budget)}: lower its context or slots, or raise the budget"
                )
        return ""

    def has_room(self, model: ManagedModel) -> bool:
        """Whether `model` is loaded or could load now: on each device it needs, its estimate fits
        the budget beside what the models that cannot be evicted hold (evicting idle ones is fine)."""
        if model.external or model.state in (EngineState.READY, EngineState.DRAINING):
            return True
        if model.state is EngineState.FAILED:
            return False
        for name, need in model.needs.items():
            kept = sum(
                m.reservation(name) for m in self.models.values() if m is not model and not m.evictable()
            )
            if need > self.devices[name].budget - kept:
                return False
        return True

    def _committed(self, device: str, but: ManagedModel | None = None) -> int:
        return sum(m.reservation(device) for m in self.models.values() if m is not but)

    async def _make_room(self, model: ManagedModel, *, deadline: float) -> None:
        never = self._never_fits(model)
        if never:
            raise _NoRoom(never, never=True)
        while True:
            short = self._shortages(model)
            if not short:
                model.holds_memory = True
                return
            victim = self._cheapest_idle(short)
            if victim is not None:
                device = next(name for name in short if name in victim.needs)
                self._set(model, EngineState.STARTING, f"{victim.name} to be evicted from {device}")
                await self._unload(victim, "memory", note=f"to make room for {model.name} on {device}")
                await self._memory_back(model, short)
                continue
            pinned = self._pinned_block(model, short)
            if pinned:
                raise _NoRoom(pinned, never=False)
            self._set(model, EngineState.STARTING, self._room_text(model, short))
            if time.monotonic() >= deadline:
                raise _NoRoom(f"gave up waiting for {model.detail}", never=False)
            await self._wait_change(min(deadline - time.monotonic(), 1.0))

    def _shortages(self, model: ManagedModel) -> dict[str, tuple[int, int, MemoryReading]]:
        """Devices where `model` does not fit now: (need, free in the budget, the device's reading)."""
        short = {}
        for name, need in model.needs.items():
            device = self.devices[name]
            in_budget = device.budget - self._committed(name, but=model)
            reading = device.memory.read()
            if need > min(in_budget, reading.free):
                short[name] = (need, in_budget, reading)
        return short

    def _cheapest_idle(self, short: Mapping[str, object]) -> ManagedModel | None:
        """The idle model cheapest to evict from a short device (see `eviction_order`)."""
        order = eviction_order(m for m in self.models.values() if any(d in m.needs for d in short))
        return order[0] if order else None

    def _pinned_block(self, model: ManagedModel, short: Mapping[str, tuple[int, int, MemoryReading]]) -> str:
        """Why `model` cannot fit while the pinned models stay, or '' when evictions could make room."""
        for name, (need, _, _) in short.items():
            device = self.devices[name]
            pinned = [
                m for m in self.models.values() if m is not model and m.config.pinned and m.reservation(name)
            ]
            held = sum(m.reservation(name) for m in pinned)
            if pinned and need > device.budget - held:
                return (
                    f"it needs {format_bytes(need)} on {name}; pinned models hold {format_bytes(held)} "
                    f"({', '.join(m.name for m in pinned)}) of its {format_bytes(device.budget)} budget"
                )
        return ""

    def _room_text(self, model: ManagedModel, short: Mapping[str, tuple[int, int, MemoryReading]]) -> str:
        name, (need, in_budget, reading) = next(iter(short.items()))
        busy = [
            f"{m.name} ({_why_kept(m)})"
            for m in self.models.values()
            if m is not model and m.reservation(name) and not m.evictable()
        ]
        return (
            f"memory on {name}: it needs {format_bytes(need)}; {format_bytes(max(in_budget, 0))} is free in the "
            f"budget and {format_bytes(reading.free)} on the device"
            + (f"; busy: {', '.join(busy)}" if busy else "; other programs use the device")
        )

    async def _memory_back(
        self, model: ManagedModel, short: Mapping[str, tuple[int, int, MemoryReading]]
    ) -> None:
        """After an eviction, wait (at most `memory_recovery`) until each short device has room really free."""
        until = time.monotonic() + self.defaults.memory_recovery
        while time.monotonic() < until:
            if all(self.devices[name].memory.read().free >= need for name, (need, _, _) in short.items()):
                return
            self._set(model, EngineState.STARTING, "the evicted engine's memory to come back")
            await asyncio.sleep(0.25)

    # --- unloading ------------------------------------------------------------------------------

    def _begin_unload(
        self, model: ManagedModel, reason: str, *, note: str = "", count: bool = True
    ) -> asyncio.Task[None] | None:
        """Mark `model` stopping and cancel its supervisor (whose last act stops the engine)."""
        task = model.task
        if task is None or model.external:
            return None
        if model.state is not EngineState.STOPPING:
            if count:
                self.metrics.evictions.labels(model.name, reason).inc()
            self._event(f"{model.name}: unloading ({reason}{': ' + note if note else ''})")
            model.stopped_because = f"unloaded ({reason}{': ' + note if note else ''})"
            self._set(model, EngineState.STOPPING, f"unloading ({reason})")
            task.cancel()
        return task

    async def _unload(self, model: ManagedModel, reason: str, *, note: str = "", count: bool = True) -> None:
        task = self._begin_unload(model, reason, note=note, count=count)
        if task is not None:
            await asyncio.wait({task})

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            now = time.monotonic()
            for model in self.models.values():
                ttl = model.ttl(self.defaults.ttl)
                if ttl >= 0 and model.evictable() and now - model.last_used >= ttl:
                    idle = now - model.last_used
                    self._begin_unload(model, self._idle_reason(model), note=f"idle {idle:.1f} s")

    @staticmethod
    def _idle_reason(model: ManagedModel) -> str:
        return "keep_alive" if model.keep_alive is not None else "idle"

    # --- state and waiting ----------------------------------------------------------------------

    def _set(self, model: ManagedModel, state: EngineState, detail: str) -> None:
        model.state, model.detail = state, detail
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, within: float) -> bool:
        """Wait until a model's state changes or a request ends, at most `within` s; False on timeout."""
        return await self._wait_change(within)

    async def _wait_change(self, within: float) -> bool:
        """Wait until something changes (a state, a request ending), at most `within` s; False on timeout."""
        if within <= 0:
            return False
        try:
            await asyncio.wait_for(self._changed.wait(), within)
        except TimeoutError:
            return False
        return True

    def _event(self, text: str) -> None:
        stamped = f"{time.strftime('%H:%M:%S')} {text}"
        self.events.append(stamped)
        _log.info(text)

    def _retry_after(self, model: ManagedModel) -> float:
        """Seconds until the model may be ready: its backoff left, plus its last load time (else 5 s)."""
        load = model.cold_start.total if model.cold_start else 5.0
        backoff = model.next_start_at - time.monotonic() if model.next_start_at is not None else 0.0
        return max(1.0, backoff + load)

    def _failed_text(self, model: ManagedModel) -> str:
        """Which model failed where, why (the reason and the engine's last log line), and what to do."""
        tail = model.log_tail[-1] if model.log_tail else ""
        host = self.config.name
        return (
            f"model {model.name!r} failed on host {host!r}: {model.last_error}"
            + (f" (engine's last line: {tail[-200:]})" if tail and tail not in model.last_error else "")
            + f"; fix the cause (`wave agent status` on {host} shows the engine's log), then "
            f"POST /agent/v1/models/{model.name}/load on that agent tries again, as does restarting it"
        )

    # --- status -----------------------------------------------------------------------------------

    def model_status(self, model: ManagedModel, *, log_lines: int = 20) -> ModelStatus:
        now = time.monotonic()
        ttl = model.ttl(self.defaults.ttl)
        idle_in = max(0.0, ttl - (now - model.last_used)) if ttl >= 0 and model.evictable() else None
        process = model.process
        lines = (
            process.tail(log_lines)
            if process is not None
            else model.log_tail[-log_lines:]
            if log_lines
            else []
        )
        device = model.config.device if not model.external else "-"
        memory = MemoryStatus(
            device=device,
            estimate=model.estimate.device,
            estimate_host=model.estimate.host,
            estimate_runtime=_runtime(model.estimate),
            estimate_basis=model.estimate.basis,
            reserved=sum(model.reservation(d) for d in model.needs),
            buffers=sum(model.buffers.values()) if model.buffers else None,
            process=model.process_bytes if process is not None else None,
            error=_estimate_error(model),
        )
        phases = model.cold_start
        return ModelStatus(
            name=model.name,
            kind=model.config.kind.value if model.config.command is None else "command",
            state=model.state,
            detail=model.detail,
            device=device,
            pinned=model.config.pinned,
            external=model.external,
            gguf=_gguf_text(model.config.gguf),
            context=model.config.context,
            slots=model.config.slots,
            ttl=model.config.ttl_or(self.defaults.ttl),
            keep_alive=model.keep_alive,
            idle_unload_in=idle_in,
            inflight=model.inflight,
            waiting=model.waiting,
            room=self.has_room(model),
            memory=memory,
            loads=model.loads,
            cold_start=ColdStart(
                memory=phases.memory,
                process=phases.process,
                load=phases.load,
                first_token=phases.first_token,
                total=phases.total,
            )
            if phases
            else None,
            ready_for=now - model.ready_at if model.ready_at is not None else None,
            restarts=model.restarts,
            failures_in_row=model.failures_in_row,
            last_exit=model.last_exit,
            last_error=model.last_error,
            pid=process.pid if process is not None else None,
            port=process.port if process is not None else None,
            log=lines,
        )

    def status(self, *, log_lines: int = 20) -> AgentStatus:
        devices = []
        for device in self.devices.values():
            reading = device.memory.read()
            devices.append(
                DeviceStatus(
                    name=device.name,
                    gpu=device.gpu,
                    total=device.total,
                    budget=device.budget,
                    reserved=self._committed(device.name),
                    free=reading.free,
                    source=device.source,
                )
            )
        return AgentStatus(
            host=self.config.name,
            version=__version__,
            devices=devices,
            models=[self.model_status(m, log_lines=log_lines) for m in self.models.values()],
        )


def _gguf_text(value: str | None) -> str | None:
    """The GGUF file a model entry names, as a path (a bundled model's file too)."""
    if value is None:
        return None
    try:
        return str(resolve_gguf(value))
    except ValueError:
        return value


def eviction_order(models: Iterable[ManagedModel]) -> list[ManagedModel]:
    """The models that may be evicted now, cheapest first: the quickest to load again (its last
    load), then the least recently used. Never a pinned one, never one with requests in flight or
    waiting, never one still loading."""
    candidates = [m for m in models if m.holds_memory and m.evictable()]
    return sorted(candidates, key=lambda m: (m.cold_start.total if m.cold_start else 0.0, m.last_used))


def _why_kept(model: ManagedModel) -> str:
    """Why an engine holding memory cannot be evicted now."""
    if model.inflight:
        return f"{model.inflight} in flight"
    if model.config.pinned:
        return "pinned"
    if model.waiting:
        return f"{model.waiting} waiting"
    return model.state.value


def _runtime(estimate: MemoryEstimate) -> int:
    """The part of an estimate the engine's log does not show: the process's runtime on each side."""
    return estimate.parts.get("runtime", 0) + (CPU_RUNTIME_BYTES if estimate.host else 0)


def _memory_text(model: ManagedModel) -> str:
    """The estimate split into the buffers llama-server logs and the runtime allowance it does not,
    and the estimate's buffers against the logged ones: like compared with like."""
    estimate = model.estimate
    runtime = _runtime(estimate)
    text = f"estimate {format_bytes(estimate.total)}"
    if runtime:
        text += f" = {format_bytes(estimate.total - runtime)} of buffers + {format_bytes(runtime)} runtime allowance"
    error = _estimate_error(model)
    if model.buffers and error is not None:
        text += (
            f"; llama-server logged {format_bytes(sum(model.buffers.values()))} of buffers "
            f"(estimate {error:+.1%})"
        )
    return text


def _estimate_error(model: ManagedModel) -> float | None:
    """(estimate - logged) / logged over the engine's buffers, its runtime left out."""
    if not model.buffers:
        return None
    logged = sum(model.buffers.values())
    estimate = model.estimate.total - _runtime(model.estimate)
    return (estimate - logged) / logged if logged else None


async def _exits_soon(process: EngineProcess, within: float = 0.5) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(process.exited), within)
    return process.exited.done()


def _engine_name(model: str, taken: set[str]) -> str:
    """A backend name for the model (letters, digits, _ . -), unique among `taken`."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", model).strip("-") or "model"
    name, number = base, 2
    while name in taken:
        name, number = f"{base}-{number}", number + 1
    return name


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)
