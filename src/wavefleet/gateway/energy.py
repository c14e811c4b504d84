"""Energy and money per request: the gateway's host devices' counters split among its requests.

With telemetry on (`wave serve --telemetry`), `EnergyMeter` reads this host's collectors every
`sample_interval_s` (200 ms) off the request path into an `EnergyLog`. The forwarder tells it
when each attempt at a backend starts and ends (first token, prompt and completion tokens).

Which devices serve a backend (`devices_of`): a backend on this host (its URL's host is a
loopback address, `localhost` or this machine's name) runs on the device its `device` field names
(e.g. `gpu0`, or `gpu0|gpu1` for a model split over two), else on every GPU when it is a GPU
engine (`gpu: true`, or an engine kind that needs one), else on the CPU; on a Jetson, which
measures the whole module as one device (`board`), on that. A backend on another
host, or on a device this host does not measure, gets no energy: its audit rows and metrics have
none (absent, never zero).

Attribution runs per device in windows between samples. A window ends at the latest sample that
no running request started before: a request's share depends on its neighbours' token counts,
known only when they finish. A request running longer than `max_wait_s` (10 s) stops holding
the windows back: until it ends, it counts as alive with no known work (it shares the idle draw,
and the energy above idle only at moments when no finished request worked). Each window is split
by `attribute` with `Placement.POOLED` (the device's idle draw apart, moments without requests
`unattributed`), so the requests' energy, their idle shares and the unattributed energy add up
to what the counter counted. Generated tokens are placed at the moments the forwarder relayed
them; tokens are priced at their solo cost on the device (`_weights`): the device's power above
idle in prefill and in decode, learnt from moments one finished request ran on it alone
(`PhasePower`), over the backend's speeds (`speeds`: the engine's own timers from the monitor,
else the gateway's timings of its requests). A request is
settled once every window of its lifetime is closed: a moment (one or two sample intervals)
after it ends, up to `max_wait_s` later when a request that started before it still runs.

The idle draw is the device's mean power while no request ran, since the gateway started (0
until such a moment has been seen). Cost is the request's energy and idle share at the tariff
plus `amortisation_per_hour` for the device time it held (`Tariff.request_cost`).

Fleet agents (`agents`, the backends that are `wave agent`s) meter their own devices: an agent's
app runs this meter over the requests it serves, from every gateway and client, so it splits its
devices' energy among all of them. The gateway names each attempt it sends an agent
(`Charge.energy_id`, sent as the `x-wave-energy-id` header); the agent's meter files the charge
under that id (`lookup`), and once the attempt ends the gateway asks the agent's control API for
it (`GET /agent/v1/energy/{id}`, waiting while the agent settles it) and takes the agent's
figures as that attempt's share. The gateway's tariff prices them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import operator
import secrets
import socket
import time
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from wavefleet.agent.status import RequestEnergyReport, valid_energy_id
from wavefleet.errors import WaveError
from wavefleet.gateway.addresses import is_loopback
from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.routing.load import runs_on_gpu
from wavefleet.telemetry import names as metric_names
from wavefleet.telemetry.attribution import (
    PhasePower,
    Placement,
    RequestEnergy,
    RequestSpan,
    TokenWeights,
    split_energy,
)
from wavefleet.telemetry.attribution import idle_power as quiet_power
from wavefleet.telemetry.cost import Tariff
from wavefleet.telemetry.energy_log import EnergyLog
from wavefleet.telemetry.exporter import Telemetry
from wavefleet.telemetry.samples import Metric

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client import Metric as PromMetric

    from wavefleet.gateway.monitor.snapshot import EngineTimings

__all__ = [
    "ENERGY",
    "ENERGY_METER",
    "Charge",
    "ChargeResult",
    "DeviceTotals",
    "EnergyMeter",
    "ModelTotals",
    "RemoteEnergy",
    "devices_of",
]

_LOG = logging.getLogger(__name__)


def devices_of(backend: BackendConfig, devices: Sequence[str], *, hostnames: Sequence[str] = ()) -> list[str]:
    """The measured devices (keys of `Telemetry.energy()`) that serve `backend`; [] when none do."""
    host = urlsplit(str(backend.url)).hostname or ""
    local = is_loopback(host) or host.lower() in {h.lower() for h in hostnames}
    if not local:
        return []
    if backend.device:
        named = [d for d in backend.device.replace(",", "|").split("|") if d]
        return [d for d in named if d in devices]
    chosen = [d for d in devices if d.startswith("gpu" if runs_on_gpu(backend) else "cpu")]
    # a Jetson measures the whole module (its VDD_IN rail) as one device
    return chosen or [d for d in devices if d == "board"]


@dataclass(frozen=True, kw_only=True)
class ChargeResult:
    """What one request drew: energy above idle, its share of the idle draw, and their cost."""

    energy_j: float
    idle_j: float
    cost: float | None
    currency: str | None
    completion_tokens: int
    prompt_tokens: int = 0
    busy_s: float = 0.0  # device time it held: its share of each moment it shared a device


class RemoteEnergy(Protocol):
    """A fleet agent's control API, asked for the energy of a request sent to it (`AgentClient`)."""

    async def request_energy(self, energy_id: str, *, wait_s: float) -> RequestEnergyReport: ...


@dataclass(kw_only=True, eq=False, slots=True)
class _Span:
    """One attempt at one backend, and its shares of its devices' windows so far.

    It refers to its charge until the charge settles (`Charge.mark_settled` lets go), so a
    settled charge and its attempts are freed as soon as the request is done with them, without
    waiting for the cyclic garbage collector. Its shares are kept as bare sums, not an object per
    window: most attempts fall within one window, and the meter settles thousands a second."""

    id: str
    owner: Charge | None
    backend: str
    devices: list[str]
    start: float
    end: float | None = None
    first_token: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    token_times: tuple[float, ...] = ()
    parts: int = 0  # shares it has been given (a window of one of its devices, or its agent's)
    energy_j: float = 0.0  # its first share: energy above idle, idle share, device time
    idle_j: float = 0.0
    busy_s: float = 0.0
    more: list[float] | None = None  # its later shares, three figures each, in the order given
    open_on: int = 0  # devices whose windows have not passed its end
    energy_id: str = ""  # at a fleet agent, which meters it: the id the agent files it under
    fetched: bool = False  # the agent's figures are in its shares (or it could not tell)

    @property
    def charge(self) -> Charge | None:
        return self.owner

    def add_share(self, energy_j: float, idle_j: float, busy_s: float) -> None:
        """One more share: a window's (or its agent's) energy above idle, idle share and device time.

        They are kept one by one, not summed: the charge adds all its attempts' shares in order
        (`EnergyMeter._maybe_settle`), and a sum's rounding depends on that order."""
        if self.parts == 0:
            self.energy_j, self.idle_j, self.busy_s = energy_j, idle_j, busy_s
        elif self.more is None:
            self.more = [energy_j, idle_j, busy_s]
        else:
            self.more += (energy_j, idle_j, busy_s)
        self.parts += 1

    def as_request(self, weights: TokenWeights | None = None) -> RequestSpan:
        assert self.end is not None
        return RequestSpan(
            id=self.id,
            start=self.start,
            end=self.end,
            first_token=self.first_token,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            token_times=self.token_times,
            weights=weights,
        )


class Charge:
    """One client request's energy, over every attempt the forwarder made for it.

    `result` is None until the meter settles it, and stays None when no attempt ran on a
    measured device. `settled` says whether it will change.
    """

    __slots__ = (
        "__weakref__",
        "_meter",
        "_waiters",
        "backend",
        "closed",
        "closed_at",
        "energy_id_given",
        "key",
        "model",
        "result",
        "settled",
        "_earlier",
        "_last",
    )

    def __init__(self, meter: EnergyMeter, *, key: str, energy_id: str = "") -> None:
        self._meter = meter
        self.model = ""
        self.key = key
        self.energy_id_given = energy_id  # a gateway's name for it, at an agent (see `lookup`)
        self.backend = ""
        self._last: _Span | None = None  # the current or latest attempt
        self._earlier: list[_Span] | None = None  # the attempts before it, when it was retried
        self.closed = False
        self.closed_at: float | None = None
        self.settled = False
        self.result: ChargeResult | None = None
        self._waiters: list[asyncio.Event] | None = None  # made by the first `wait_settled`

    @property
    def spans(self) -> list[_Span]:
        """Every attempt so far, in order."""
        if self._last is None:
            return []
        return [*self._earlier, self._last] if self._earlier else [self._last]

    def _attempts(self) -> Sequence[_Span]:
        # one attempt, nearly always: no list made for it
        if self._earlier:
            return self.spans
        return () if self._last is None else (self._last,)

    def mark_settled(self) -> None:
        """Its figures (`result`) are final: wake whoever waits for them, and let go of its attempts'
        references back to it (the meter no longer needs them; a charge freed by reference counting
        takes no garbage collection)."""
        self.settled = True
        for span in self._attempts():
            span.owner = None
        for waiter in self._waiters or ():
            waiter.set()

    async def wait_settled(self, wait_s: float) -> None:
        """Return once it is settled, or after `wait_s`."""
        if self.settled:
            return
        waiter = asyncio.Event()
        waiters = self._waiters = self._waiters or []
        waiters.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), wait_s)
        finally:
            waiters.remove(waiter)

    def begin(self, backend: str, model: str, t: float) -> None:
        """An attempt at `backend` (serving `model`) starts at `t` (the meter's clock)."""
        self.end(t)
        self.backend, self.model = backend, model
        self._meter._begin(self, backend, t)

    def finish(
        self,
        t: float,
        *,
        first_token: float | None,
        usage: tuple[int, int] | None,
        token_times: Sequence[float] = (),
    ) -> None:
        """The current attempt ended at `t` with this first-token time, (prompt, completion)
        tokens and, for a stream, the moments its events carrying tokens were relayed."""
        span = self._last
        if span is not None and span.end is None:
            if usage is not None:
                span.prompt_tokens, span.completion_tokens = max(0, usage[0]), max(0, usage[1])
            if first_token is not None and span.start <= first_token <= t:
                span.first_token = first_token
                if span.devices and token_times:  # only a measured device's windows place tokens
                    span.token_times = _times_within(token_times, first_token, t)
            self.end(t)

    @property
    def wants_token_times(self) -> bool:
        """Whether `finish` uses the current attempt's token times (it runs on a measured device)."""
        span = self._last
        return span is not None and span.end is None and bool(span.devices)

    @property
    def energy_id(self) -> str:
        """The id to send the current attempt's agent (`x-wave-energy-id`); "" when not at an agent."""
        span = self._last
        return span.energy_id if span is not None and span.end is None else ""

    def end(self, t: float) -> None:
        """The current attempt, if one runs, is over at `t` (no first token or tokens unless told)."""
        span = self._last
        if span is not None and span.end is None:
            self._meter._end(span, max(t, span.start))

    def audit_figures(self) -> tuple[float, float, float | None, str | None] | None:
        """(energy J, idle share J, cost, currency) for the audit row; None when not measured."""
        r = self.result
        return None if r is None else (r.energy_j, r.idle_j, r.cost, r.currency)

    def close(self, t: float) -> None:
        """No more attempts: the request is done."""
        self.end(t)
        self.closed, self.closed_at = True, t
        last = self._last
        if last is None or not last.open_on:  # else a window has yet to pass its end: not yet
            self._meter._maybe_settle(self)


ENERGY = web.RequestKey("wave_energy", Charge)  # the request's charge: the audit row waits for it


@dataclass(kw_only=True)
class DeviceTotals:
    """What a device counted between the first sample and the last closed window, and where it went."""

    device: str
    start_t: float | None = None
    start_j: float = 0.0
    end_t: float | None = None
    end_j: float = 0.0
    requests_j: float = 0.0  # requests' energy above idle
    idle_j: float = 0.0  # requests' shares of the idle draw
    unattributed_j: float = 0.0  # moments no request ran
    quiet_j: float = 0.0
    quiet_s: float = 0.0
    power: PhasePower = field(default_factory=PhasePower)  # solo power per phase, learnt

    @property
    def counted_j(self) -> float:
        return self.end_j - self.start_j

    @property
    def idle_w(self) -> float:
        return self.quiet_j / self.quiet_s if self.quiet_s > 0 else 0.0


@dataclass(kw_only=True)
class ModelTotals:
    """What a model's measured requests drew since the gateway started (the status page's source)."""

    requests: int = 0
    energy_j: float = 0.0
    idle_j: float = 0.0
    completion_tokens: int = 0
    cost: float = 0.0


class EnergyMeter:
    """Samples the host's devices and settles each request's energy and cost (see the module doc)."""

    def __init__(
        self,
        *,
        telemetry: Telemetry,
        backends: Sequence[BackendConfig],
        clock: Callable[[], float] = time.monotonic,
        tariff: Tariff | None = None,
        interval_s: float = 0.2,
        weights: TokenWeights | None = None,
        timings: Callable[[str], EngineTimings | None] | None = None,
        keep_s: float = 600.0,
        max_wait_s: float = 10.0,
        registry: CollectorRegistry | None = None,
        agents: Collection[str] = (),
        agent_wait_s: float = 25.0,
        lookup_keep_s: float = 120.0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("the sample interval must be positive")
        self.telemetry = telemetry
        self.clock = clock
        self.tariff = tariff
        self.interval_s = interval_s
        self.weights = weights
        self._timings = timings
        self._observed: dict[str, list[float]] = {}  # backend -> prompt tokens, s; generated, s
        self.max_wait_s = max_wait_s
        self.keep_s = keep_s
        self.log = EnergyLog(keep_s=keep_s)
        self._backends = list(backends)
        self._served_by: dict[str, list[str]] | None = None  # backend -> devices, after the first sample
        self.devices: dict[str, DeviceTotals] = {}
        self._open: dict[str, list[_Span]] = {}  # device -> attempts not yet ended
        self._ended: dict[str, list[_Span]] = {}  # device -> ended attempts its windows have not passed
        self._charges: set[Charge] = set()
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._counters = _Counters(registry) if registry is not None else None
        self._by_model: dict[str, ModelTotals] = {}
        self._agents = set(agents)  # backends that are fleet agents: they meter their own devices
        self._remote: dict[str, RemoteEnergy] = {}
        self.agent_wait_s = agent_wait_s  # how long to wait for an agent to settle a request
        self._prefix = secrets.token_hex(6)  # ids unique across gateways sharing an agent
        self._fetches: set[asyncio.Task[None]] = set()
        self.lookup_keep_s = lookup_keep_s
        self._filed: OrderedDict[str, Charge] = OrderedDict()  # at an agent: charges by energy id

    # --- the forwarder's side -----------------------------------------------------------------------

    def charge(self, *, key: str, energy_id: str | None = None) -> Charge:
        """A client request's charge; `energy_id` (a gateway's `x-wave-energy-id`, at an agent)
        files it for `lookup` when it is a valid id not seen before."""
        given = energy_id if energy_id and valid_energy_id(energy_id) and energy_id not in self._filed else ""
        charge = Charge(self, key=key, energy_id=given)
        if given:
            self._filed[given] = charge
        return charge

    def lookup(self, energy_id: str) -> Charge | None:
        """The charge filed under a gateway's energy id (kept `lookup_keep_s` after it settles)."""
        return self._filed.get(energy_id)

    def add_agents(self, agents: Mapping[str, RemoteEnergy]) -> None:
        """Ask these fleet agents (by backend name) for the energy of the requests sent to them."""
        self._remote.update(agents)
        self._agents.update(agents)

    def _begin(self, charge: Charge, backend: str, t: float) -> None:
        devices = self.served_by().get(backend, [])
        span = _Span(id=str(next(self._ids)), owner=charge, backend=backend, devices=devices, start=t)
        if backend in self._remote:
            span.energy_id = f"{self._prefix}-{span.id}"
            self._charges.add(charge)
        if charge._last is not None:
            if charge._earlier is None:
                charge._earlier = []
            charge._earlier.append(charge._last)
        charge._last = span
        if devices:
            self._charges.add(charge)
        for device in devices:
            self._open.setdefault(device, []).append(span)

    def _end(self, span: _Span, t: float) -> None:
        span.end = t
        if span.first_token is not None:
            seen = self._observed.setdefault(span.backend, [0.0, 0.0, 0.0, 0.0])
            seen[0] += span.prompt_tokens
            seen[1] += span.first_token - span.start
            seen[2] += max(0, span.completion_tokens - 1)
            seen[3] += t - span.first_token
        if span.energy_id:
            task = asyncio.get_running_loop().create_task(self._fetch(span), name="wave-energy-agent")
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)
        for device in span.devices:
            self._open[device].remove(span)
            self._ended.setdefault(device, []).append(span)
            span.open_on += 1

    def meters_any(self) -> bool:
        """Whether any backend's requests get energy: one runs on a measured device, or is a fleet
        agent. When none does, the forwarder charges nothing (every charge would settle unmeasured)."""
        return bool(self._agents) or any(self.served_by().values())

    def served_by(self) -> dict[str, list[str]]:
        """Backend -> the devices that serve it (known once the first sample named the devices)."""
        if self._served_by is None:
            if not self.devices:
                return {}
            names = sorted(self.devices)
            hostnames = [socket.gethostname(), socket.getfqdn()]
            self._served_by = {
                b.name: [] if b.name in self._agents else devices_of(b, names, hostnames=hostnames)
                for b in self._backends
            }
        return self._served_by

    async def _fetch(self, span: _Span) -> None:
        """Ask the span's agent for its energy until the agent has settled it, or `agent_wait_s`."""
        agent = self._remote[span.backend]
        deadline = self.clock() + self.agent_wait_s
        try:
            while True:
                left = deadline - self.clock()
                report = await agent.request_energy(span.energy_id, wait_s=max(0.0, min(10.0, left)))
                if report.settled:
                    if report.measured:
                        span.add_share(
                            max(0.0, report.energy_j) + 0.0,  # prefill and decode J, as a window's
                            max(0.0, report.idle_j),
                            max(0.0, report.busy_s),
                        )
                    break
                if self.clock() >= deadline:
                    break
        except WaveError as exc:  # unreachable, no telemetry there, or it never saw the request
            _LOG.debug("no energy from agent %s for %s: %s", span.backend, span.energy_id, exc)
        finally:
            span.fetched = True
            charge = span.charge
            if charge is not None:
                self._maybe_settle(charge)

    # --- sampling and settling ----------------------------------------------------------------------

    def sample(self) -> None:
        """Read every collector once and log what each device counted (blocking: NVML calls)."""
        self._record(self._read())

    def _read(self) -> dict[str, float]:
        self.telemetry.read_each()  # the collectors update their energy totals as they read
        return self.telemetry.energy()

    def settle(self) -> list[Charge]:
        """Close every window that can be closed; the charges settled by it."""
        touched: list[_Span] = []
        for device, totals in self.devices.items():
            touched += self._close_window(device, totals)
        settled = []
        for charge in dict.fromkeys(span.charge for span in touched):
            if charge is not None and self._maybe_settle(charge):
                settled.append(charge)
        now = self.clock()
        while self._filed:
            oldest = next(iter(self._filed.values()))
            if not oldest.settled or oldest.closed_at is None or now - oldest.closed_at <= self.lookup_keep_s:
                break
            self._filed.popitem(last=False)
        for charge in [
            c for c in self._charges if c.closed_at is not None and now - c.closed_at > self.keep_s
        ]:
            # its devices stopped answering: its energy is unknown
            charge.mark_settled()
            self._charges.discard(charge)
            settled.append(charge)
        return settled

    def _close_window(self, device: str, totals: DeviceTotals) -> list[_Span]:
        if totals.end_t is None:
            return []
        since, now = totals.end_t, self.clock()
        running = self._open.get(device, [])
        limit = min((s.start for s in running if now - s.start <= self.max_wait_s), default=math.inf)
        samples = [s for s in self.log.samples(device, since=since, until=limit) if since <= s.t <= limit]
        if len(samples) < 2 or samples[0].t != since:
            if samples and samples[0].t > since and len(samples) >= 2:
                # the counter started over (a driver reload): what ran in between was not counted
                totals.start_j += samples[0].joules - totals.end_j
                totals.end_t, totals.end_j = samples[0].t, samples[0].joules
                return self._close_window(device, totals)
            return []
        cut = samples[-1].t
        spans = [
            s for s in self._ended.get(device, []) if s.start < cut and s.end is not None and s.end > since
        ]
        weights: dict[str, TokenWeights | None] = {}  # per backend: the same for all its spans here
        for s in spans:
            if s.backend not in weights:
                weights[s.backend] = self._weights(s.backend, totals)
        requests = [s.as_request(weights[s.backend]) for s in spans]
        # running longer than max_wait_s: alive until the cut, its work not known yet
        long_running = [s for s in running if s.start < cut]
        requests += [RequestSpan(id=s.id, start=s.start, end=cut) for s in long_running]
        spans += long_running
        quiet_s = (cut - since) - _covered(since, cut, [(r.start, r.end) for r in requests])
        if quiet_s > 1e-9:
            power = quiet_power(samples, requests)
            if power is not None:
                totals.quiet_j += power * quiet_s
                totals.quiet_s += quiet_s
        if totals.quiet_s > 0 and requests:
            finished = requests[: len(requests) - len(long_running)]
            totals.power += PhasePower.observe(samples, finished, idle_w=totals.idle_w)
        shares, unattributed_j = split_energy(
            samples,
            requests,
            weights=self.weights or _TIME_PER_TOKEN,
            idle_w=totals.idle_w,
            placement=Placement.POOLED,
        )
        for span, (prefill_j, decode_j, idle_j, busy_s) in zip(spans, shares, strict=True):
            energy_j = prefill_j + decode_j
            span.add_share(energy_j, idle_j, busy_s)
            totals.requests_j += energy_j
            totals.idle_j += idle_j
        totals.unattributed_j += unattributed_j
        if self._counters is not None:
            self._counters.unattributed.labels(device).inc(unattributed_j)
            self._counters.metered.labels(device).inc(samples[-1].joules - samples[0].joules)
        totals.end_t, totals.end_j = cut, samples[-1].joules
        passed: list[_Span] = []
        kept: list[_Span] = []
        for span in self._ended.get(device, []):
            (passed if span.end is not None and span.end <= cut else kept).append(span)
        for span in passed:
            span.open_on -= 1
        self._ended[device] = kept
        return passed

    def speeds(self, backend: str) -> tuple[float, float] | None:
        """(prompt tokens/s, generated tokens/s) of `backend`: the engine's own timers when it
        reports them (llama.cpp's prompt and generation seconds, vLLM's prefill and inter-token
        histograms, read by the gateway's monitor), else what the gateway timed of its requests
        (prompt tokens to first token, the tokens after it to the end)."""
        timed = self._timings(backend) if self._timings is not None else None
        if (
            timed is not None
            and min(timed.prefill_tokens, timed.prefill_s, timed.decode_tokens, timed.decode_s) > 0
        ):
            return timed.prefill_tokens / timed.prefill_s, timed.decode_tokens / timed.decode_s
        seen = self._observed.get(backend)
        if seen is not None and min(seen) > 0:
            return seen[0] / seen[1], seen[2] / seen[3]
        return None

    def _weights(self, backend: str, totals: DeviceTotals) -> TokenWeights | None:
        """A backend's tokens priced at their solo cost on a device: the device's power above idle
        in each phase, learnt while one request ran alone, over the engine's speed in it."""
        if self.weights is not None:
            return None
        speeds = self.speeds(backend)
        if speeds is None:
            return None
        return totals.power.token_weights(prompt_per_second=speeds[0], predicted_per_second=speeds[1])

    def _maybe_settle(self, charge: Charge) -> bool:
        if charge.settled or not charge.closed:
            return False
        measured = []
        for s in charge._attempts():
            if s.energy_id and not s.fetched:
                return False  # an agent's figures are on their way
            if s.devices or (s.energy_id and s.parts):
                if s.end is None or s.open_on:
                    return False  # a window of its devices has yet to pass its end
                measured.append(s)
        self._charges.discard(charge)
        if not measured:
            charge.mark_settled()  # nothing it ran on is measured: its energy is unknown, not zero
            return True
        energy_j = idle_j = busy_s = 0.0
        completion = prompt = 0
        for s in measured:  # one pass: this runs once per metered request
            completion += s.completion_tokens
            prompt += s.prompt_tokens
            if s.parts:
                energy_j += s.energy_j
                idle_j += s.idle_j
                busy_s += s.busy_s
            if s.more is not None:
                more = s.more
                for k in range(0, len(more), 3):
                    energy_j += more[k]
                    idle_j += more[k + 1]
                    busy_s += more[k + 2]
        cost = currency = None
        if self.tariff is not None:
            whole = RequestEnergy(
                id="request",
                prompt_tokens=prompt,
                completion_tokens=completion,
                prefill_j=energy_j,
                idle_j=idle_j,
                busy_s=busy_s,
            )
            cost, currency = self.tariff.request_cost(whole).total, self.tariff.currency
        charge.result = ChargeResult(
            energy_j=energy_j,
            idle_j=idle_j,
            cost=cost,
            currency=currency,
            completion_tokens=completion,
            prompt_tokens=prompt,
            busy_s=busy_s,
        )
        charge.mark_settled()  # after `result`: the audit writer's thread reads them in this order
        totals = self._by_model.setdefault(charge.model, ModelTotals())
        totals.requests += 1
        totals.energy_j += energy_j
        totals.idle_j += idle_j
        totals.completion_tokens += completion
        totals.cost += cost or 0.0
        if self._counters is not None:
            self._counters.count(charge, charge.result)
        return True

    def step(self) -> list[Charge]:
        """One sample and the settling it allows (what the background task does each interval)."""
        self.sample()
        return self.settle()

    async def start(self) -> None:
        """Take the first sample (so the devices are known before the first request), then sample
        every `interval_s` in a task."""
        try:
            self._record(await asyncio.to_thread(self._read))
        except Exception:
            _LOG.exception("the first energy sample failed; trying again in %.1f s", self.interval_s)

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.interval_s)
                try:
                    self._record(await asyncio.to_thread(self._read))
                    self.settle()
                except Exception:  # a collector or a bug must not stop the sampling for good
                    _LOG.exception("energy sampling failed; trying again in %.1f s", self.interval_s)

        self._task = asyncio.create_task(loop(), name="wave-energy")

    def _record(self, energies: Mapping[str, float]) -> None:
        t = self.clock()
        self.log.record(t, energies)
        for device, joules in energies.items():
            totals = self.devices.setdefault(device, DeviceTotals(device=device))
            if totals.start_t is None:
                totals.start_t, totals.start_j = t, joules
                totals.end_t, totals.end_j = t, joules

    async def aclose(self) -> None:
        for task in list(self._fetches):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def by_model(self) -> dict[str, ModelTotals]:
        """Each model's measured requests so far: their energy, idle shares, tokens and cost."""
        return {model: replace(totals) for model, totals in self._by_model.items()}

    @property
    def currency(self) -> str | None:
        return self.tariff.currency if self.tariff is not None else None

    def pending(self) -> int:
        """Requests whose energy is not settled yet."""
        return len(self._charges)


ENERGY_METER = web.AppKey("wave_energy_meter", EnergyMeter)

# Before a backend's speeds are known: a prompt token at a tenth of a generated one's cost (a
# GPU prefills tens of times faster than it decodes; a CPU a few times)
_TIME_PER_TOKEN = TokenWeights(0.1, 1.0, "a prompt token at a tenth of a generated token")


def _times_within(times: Sequence[float], lo: float, hi: float) -> tuple[float, ...]:
    """The times within [lo, hi] when those are in order, else (). The forwarder's are in order,
    so they are cut by bisection, not compared one by one (times in order hold no NaN: it
    compares false, which only a single time could hide)."""
    if len(times) > 1 and all(map(operator.le, times, itertools.islice(times, 1, None))):
        return tuple(times[bisect_left(times, lo) : bisect_right(times, hi)])
    inside = [x for x in times if lo <= x <= hi]
    return tuple(inside) if all(map(operator.le, inside, itertools.islice(inside, 1, None))) else ()


def _covered(since: float, until: float, intervals: list[tuple[float, float]]) -> float:
    """Length of the union of `intervals` within [since, until]."""
    total, reach = 0.0, since
    for begin, end in sorted((max(b, since), min(e, until)) for b, e in intervals):
        if end <= begin:
            continue
        if end > reach:
            total += end - max(begin, reach)
            reach = end
    return total


class _Counters:
    """The meter's Prometheus counters. The per-request ones are plain running sums, handed to
    the registry at scrape time (`collect`): a `Counter` child's `inc` takes a lock and checks its
    argument, four times a request; these add in the same order, so they read the same."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter

        def counter(metric: Metric, names: tuple[str, ...]) -> Counter:
            # prometheus_client names a counter without its _total
            return Counter(metric.name.removesuffix("_total"), metric.help, names, registry=registry)

        # (model, backend, key) -> [energy J, idle J, requests, completion tokens, created at]
        self._requests: dict[tuple[str, str, str], list[float]] = {}
        # (model, backend, key, currency) -> [cost, created at]
        self._costs: dict[tuple[str, str, str, str], list[float]] = {}
        registry.register(self)
        self.unattributed = counter(metric_names.DEVICE_UNATTRIBUTED_ENERGY, ("device",))
        self.metered = counter(metric_names.DEVICE_METERED_ENERGY, ("device",))

    def count(self, charge: Charge, result: ChargeResult) -> None:
        labels = (charge.model, charge.backend, charge.key)
        sums = self._requests.get(labels)
        if sums is None:
            sums = self._requests[labels] = [0.0, 0.0, 0.0, 0.0, time.time()]
        sums[0] += result.energy_j
        sums[1] += result.idle_j
        sums[2] += 1
        sums[3] += result.completion_tokens
        if result.cost is not None and result.currency is not None:
            cost = self._costs.get((*labels, result.currency))
            if cost is None:
                cost = self._costs[(*labels, result.currency)] = [0.0, time.time()]
            cost[0] += result.cost

    def describe(self) -> list[PromMetric]:
        return []

    def collect(self) -> Iterator[PromMetric]:
        from prometheus_client.core import CounterMetricFamily

        labels = ["model", "backend", "key"]
        families = [
            CounterMetricFamily(m.name, m.help, labels=labels)
            for m in (
                metric_names.REQUEST_ENERGY,
                metric_names.REQUEST_IDLE_ENERGY,
                metric_names.REQUEST_ENERGY_MEASURED,
                metric_names.REQUEST_ENERGY_TOKENS,
            )
        ]
        for names, sums in list(self._requests.items()):
            for k, family in enumerate(families):
                family.add_metric(list(names), sums[k], created=sums[4])
        cost = CounterMetricFamily(
            metric_names.REQUEST_COST.name, metric_names.REQUEST_COST.help, labels=[*labels, "currency"]
        )
        for names4, (total, created) in list(self._costs.items()):
            cost.add_metric(list(names4), total, created=created)
        yield from families
        yield cost
