"""Compare routing policies on simulated fleets: goodput and P95 TTFT over a Poisson rate sweep.

    PYTHONPATH=src python scripts/compare_policies.py --fleets b --repeats 2   # ~20 min here
    PYTHONPATH=src python scripts/compare_policies.py --fleets b --policies wave,least-loaded
    PYTHONPATH=src python scripts/compare_policies.py --fleets c --speed 1 --only-affinity-check \
        --affinity-check 0.6,1.2,1.8 --out out/affinity            # wave with/without affinity
    PYTHONPATH=src python scripts/compare_policies.py --plot-only        # redraw from the JSON

    PYTHONPATH=src python scripts/compare_policies.py --fleets d --phases 1.0,1.15,1.5,1.0 \
        --phase-seconds 30 --speed 1 --policies least-loaded,wave --repeats 2   # warm gateway
    PYTHONPATH=src python scripts/compare_policies.py --fleets d --speed 1 --fractions 0.85 \
        --skip-alone --policies round-robin,least-loaded,wave --repeats 2      # run lengths

Each point runs every policy on the same seeded arrivals and prompts; `--repeats N` runs N seeds
and the tables and plots show medians (single runs at the knee vary by +-15 % on this machine).
After the tables it prints the issue's per-rate targets for wave (goodput >= 95 % and P95 TTFT
<= 110 % of the best other policy's) point by point.

Results: docs/data/routing/compare_<fleet>.json (one file per fleet, so fleets can run in
parallel processes) and fleet_<fleet>.png; the table of best goodput / ideal is printed.

Three processes share the work: simulated engines (one child, `SimFleet`), the gateway (another
child, with the real PollingMonitor and the policy under test) and the load generator (this
process, `wavefleet.bench.run_load_async`). Each run gets fresh engines and a fresh gateway.

Fleets: (a) the person's fleet as planned on examples/home-lab.yaml: every planned deployment the
simulator can profile, one engine per device; (b) two identical RTX 5070 Ti vLLM engines plus one
Ryzen 9900X llama.cpp engine; (c) fleet (a) under a shared-prefix multi-turn chat workload;
(d) issue 13's shape: two identical RTX 5070 Ti vLLM engines and a Ryzen 7950X llama.cpp engine,
all serving Llama 3.1 8B, prompts 200-1500 tokens and answers 50-300, no `profile:` on any
backend (`--profiles on|off` overrides any fleet's default); the CPU engine cannot meet the SLO
for any request, and rates are fractions of the twins' capacity within the SLO (12 req/s);
(e) fleet (d) without its CPU engine.
Requests name the group `chat` (the fleet's models, largest first): every policy sees it.

Every run also reads, from the gateway's own log of its decisions (`RecordingPolicy`), where each
request went: runs of consecutive requests to one backend (longest, mean), requests sent to an
engine that cannot meet the SLO while one that can had room, TTFT misses per backend; and, from
each engine's running/waiting counts sampled in the engines' process every 50 ms, sheds while a
backend had nothing running. Goodput over the arrival window (good requests / arrival seconds,
failures counted as not good) is written beside the bench's goodput over the whole run.

Warm-gateway phases (`--phases`): one gateway and one set of engines through consecutive phases
at fractions of the fleet's capacity (`--phase-seconds` of arrivals each, no pause between),
per-phase goodput, failures, sheds, runs and per-backend requests and TTFT misses, then a fresh
gateway for one phase at the final phase's rate on the same arrivals; results in
phases_<fleet>.json. Requests still in the engines `--drain-seconds` after the last arrival are
aborted (none of them could have met the SLO).

Time scale: engines run at `--speed S` (every modelled duration / S). All figures written are in
device time: rates and goodput / S, latencies x S. The SLO (TTFT <= 1 s, TPOT <= 100 ms) and the
wave policy's targets are scaled the same way. Gateway and client overhead are not scaled, so
they count S times heavier than on real devices (a few ms wall: small against a 1 s target).

Ideal capacity of a fleet = sum over its backends of the best goodput each reaches alone (same
workload, SLO and sweep, at rates relative to its own estimated capacity), the best over
least-loaded (plain forwarding) and wave (which also sheds what would miss the SLO).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT_DIR = ROOT / "docs" / "data" / "routing"
POLICIES = ["round-robin", "least-loaded", "size-classes", "gpu-only", "wave"]
SLO_TTFT_S, SLO_TPOT_S = 1.0, 0.1
FRACTIONS = [0.3, 0.6, 0.7, 0.8, 0.9, 1.2]  # of the fleet's estimated capacity: dense at the knee
RUN_DEVICE_S, MAX_REQUESTS = 15.0, 1200  # arrivals span 15 s of device time
MIN_REQUESTS, MIN_REQUESTS_ALONE = 48, 24
# Fleet (d)'s capacity within the SLO: two GPU twins at 6.0 req/s each, the highest rate at which
# one alone (speed 1, 30 s, seeds 1-2) served >= 89 % of its requests within the SLO (6.5 req/s:
# 48-61 %); issue 13's own emulator had 6.5. The CPU engine adds nothing.
# docs/measurements/2026-12-03-least-loaded-fleet-d.md, docs/data/routing/fleet_d/alone/
D_CAPACITY_RPS = 12.0
PHASES = [1.0, 1.15, 1.5, 1.0]  # warm-gateway phases, as fractions of the fleet's capacity
BIN_DEVICE_S = 3.0  # sheds and TTFT misses are counted per bin of this many device seconds
# After the last arrival, what the engines still hold this many device seconds later is aborted:
# a request that arrived in the window and met the SLO ended within 1 + 299 x 0.1 = 31 s
DRAIN_DEVICE_S = 60.0


# ---------------------------------------------------------------- fleets and workloads


@dataclass
class Engine:
    profile: Any  # SimProfile
    deployment: str


@dataclass
class Fleet:
    key: str
    title: str
    engines: list[Engine]
    workload: str  # "mixed", "chat" or "long"
    size_classes: list[dict[str, Any]] = field(default_factory=list)
    capacity_rps: float | None = None  # the fleet's capacity within the SLO, where it is known
    profiles: bool = True  # give every backend its `profile:` in the gateway's config


def mixed_workload(seed: int) -> Any:
    from wavefleet.bench import LengthDist, SyntheticWorkload

    # prompts 30-1170 tokens (uniform): the short ones a CPU engine can prefill within 1 s, the
    # long ones only a GPU can; answers 16-48 tokens (short answers keep the simulated token
    # stream within what this 2-core machine can relay at full GPU load, see docs/routing.md)
    return SyntheticWorkload(
        input_len=600,
        output_len=32,
        input_dist=LengthDist("uniform", 0.95),
        output_dist=LengthDist("uniform", 0.5),
        seed=seed,
    )


def chat_workload(seed: int) -> Any:
    from wavefleet.bench import MultiTurnWorkload

    # 400 conversations x 4 turns behind one shared 256-word system prompt
    return MultiTurnWorkload(
        conversations=400, prefix_len=256, turns=4, turn_len=48, output_len=32, seed=seed
    )


def long_workload(seed: int) -> Any:
    from wavefleet.bench import LengthDist, SyntheticWorkload

    # prompts 200-1500 tokens, answers 50-300 (uniform): a chat service's longer answers, where
    # decode, not prefill, fills the GPU; no CPU engine prefills even the shortest within 1 s
    return SyntheticWorkload(
        input_len=850,
        output_len=175,
        input_dist=LengthDist("uniform", 650 / 850),
        output_dist=LengthDist("uniform", 125 / 175),
        seed=seed,
    )


def make_workload(kind: str, seed: int) -> Any:
    return {"mixed": mixed_workload, "chat": chat_workload, "long": long_workload}[kind](seed)


def workload_means(kind: str) -> tuple[float, float]:
    """(prompt tokens, output tokens) a request carries on average, for capacity estimates."""
    return {"mixed": (600.0, 32.0), "chat": (256 + 2.5 * (48 + 32), 32.0), "long": (850.0, 175.0)}[kind]


def shortest_prompt(kind: str) -> float:
    """The fewest prompt tokens a request of the workload carries."""
    return {"mixed": 30.0, "chat": 256.0 + 48.0, "long": 200.0}[kind]


def meets_slo_at_best(profile: Any, kind: str) -> bool:
    """Whether the engine, idle, could serve the workload's shortest request within the SLO."""
    ttft = profile.request_overhead_s + shortest_prompt(kind) / profile.prefill_tokens_per_s
    return ttft <= SLO_TTFT_S and profile.itl_at(1) <= SLO_TPOT_S


def planned_fleet() -> tuple[list[Engine], list[str]]:
    """Fleet (a): the planned deployments the simulator profiles, one engine per device."""
    from wavefleet.catalog.loader import Catalog
    from wavefleet.plan.inventory import load_inventory
    from wavefleet.plan.planner import build_plan
    from wavefleet.sim.profiles import ProfileSpec, profile_from_spec, simulated_kind

    catalog = Catalog.load()
    inventory = load_inventory(ROOT / "examples" / "home-lab.yaml", catalog)
    plan = build_plan(inventory, catalog)
    placed = {(p.device, p.engine, p.model) for p in plan.placements}
    hosts = {h.id: h for h in inventory.hosts}
    engines: list[Engine] = []
    notes: list[str] = []
    taken: dict[str, str] = {}  # device or host/container -> the deployment that runs there
    for d in inventory.deployments:
        if simulated_kind(d.service) is None or not (d.device and d.model and d.quant):
            continue
        place = f"{d.host}/{d.container}" if d.container else ""
        clash = taken.get(d.device) or (taken.get(place) if place else None)
        if clash:
            notes.append(
                f"{d.id}: skipped, {clash} already runs on {d.device if d.device in taken else place}"
            )
            continue
        host = hosts[d.host]
        cpu = getattr(host.cpu, "device", host.cpu)
        on_cpu = d.device == cpu
        parallel = d.parallel or d.max_num_seqs or (128 if d.service == "vllm" else 4)
        spec = ProfileSpec(
            d.id, d.device, d.model, d.quant, d.service, d.max_model_len or 4096, parallel,
            kv_dtype=d.kv_dtype, memory_utilization=d.gpu_memory_utilization or 0.9,
            host=None if on_cpu or cpu is None or d.service != "llama.cpp" else str(cpu),
            host_ram_gib=host.ram_gib if d.service == "llama.cpp" else None,
        )  # fmt: skip
        try:
            profile = profile_from_spec(spec, catalog)
        except Exception as exc:  # the sizing engine refuses what does not fit: say so, go on
            notes.append(f"{d.id}: skipped, the sizing engine says: {exc}")
            continue
        engines.append(Engine(profile, d.id))
        taken[d.device] = d.id
        if place:
            taken[place] = d.id
        in_plan = (d.device, d.service, d.model) in placed
        notes.append(
            f"{d.id}: {d.service} {d.model} {d.quant} on {d.device}, {parallel} slots"
            + ("" if in_plan else " (a deployment the plan did not place)")
        )
    return engines, notes


def build_fleets(keys: list[str]) -> tuple[dict[str, Fleet], list[str]]:
    from wavefleet.catalog.loader import Catalog
    from wavefleet.sim.profiles import BUILTIN_SPECS, ProfileSpec, profile_from_spec

    catalog = Catalog.load()
    fleets: dict[str, Fleet] = {}
    notes: list[str] = []
    if "a" in keys or "c" in keys:
        engines, notes = planned_fleet()
        classes = seed_size_classes(engines)
        fleets["a"] = Fleet("a", "(a) planned home-lab fleet, mixed prompts", engines, "mixed", classes)
        fleets["c"] = Fleet("c", "(c) planned fleet, shared-prefix multi-turn chat", engines, "chat", classes)
    if "b" in keys:
        spec = {s.name: s for s in BUILTIN_SPECS}
        gpu, cpu = spec["rtx5070ti-vllm"], spec["ryzen9900x-llamacpp"]
        engines = [
            Engine(profile_from_spec(gpu, catalog, name="vllm-a"), "vllm-a"),
            Engine(profile_from_spec(gpu, catalog, name="vllm-b"), "vllm-b"),
            Engine(profile_from_spec(cpu, catalog, name="cpu-9900x"), "cpu-9900x"),
        ]
        fleets["b"] = Fleet("b", "(b) 2 x RTX 5070 Ti vLLM + Ryzen 9900X llama.cpp", engines, "mixed",
                            seed_size_classes(engines))  # fmt: skip
    if "d" in keys or "e" in keys:
        # issue 13's independent fleet, rebuilt from the sizing engine: twin vLLM GPUs serving one
        # model (each alone about 6.5 req/s within the SLO on the long workload) and a llama.cpp
        # CPU engine serving the same model that no request can meet the SLO on (~70 prompt
        # tokens/s: 2.9 s for the shortest prompt); no `profile:` in the gateway's config
        gpu = {s.name: s for s in BUILTIN_SPECS}["rtx5070ti-vllm"]
        cpu = ProfileSpec(
            "ryzen7950x-llamacpp-8b", "ryzen-9-7950x", "llama-3.1-8b", "q4_k_m", "llama.cpp", 8192, 4,
            host_ram_gib=64, note="llama-server --ctx-size 8192 --parallel 4 (auto), 8B on the CPU",
        )  # fmt: skip
        engines = [
            Engine(profile_from_spec(gpu, catalog, name="gpu-a"), "gpu-a"),
            Engine(profile_from_spec(gpu, catalog, name="gpu-b"), "gpu-b"),
            Engine(profile_from_spec(cpu, catalog, name="cpu-7950x"), "cpu-7950x"),
        ]
        fleets["d"] = Fleet("d", "(d) 2 x RTX 5070 Ti vLLM twins + Ryzen 7950X llama.cpp, same 8B model, "
                            "long answers, no profiles", engines, "long", seed_size_classes(engines),
                            capacity_rps=D_CAPACITY_RPS, profiles=False)  # fmt: skip
        fleets["e"] = Fleet("e", "(e) fleet (d)'s vLLM twins alone, no profiles", engines[:2], "long",
                            seed_size_classes(engines[:2]), capacity_rps=D_CAPACITY_RPS, profiles=False)  # fmt: skip
    return {k: fleets[k] for k in keys if k in fleets}, notes


def seed_size_classes(engines: list[Engine]) -> list[dict[str, Any]]:
    """The seed's classes: short prompts to the CPU engines, medium to vLLM, long to the rest."""
    cpu = [e.profile.name for e in engines if not e.profile.gpu]
    vllm = [e.profile.name for e in engines if e.profile.dialect.value == "vllm"]
    rest = [e.profile.name for e in engines if e.profile.name not in cpu + vllm]
    classes = [{"max_prompt_tokens": 128, "backends": cpu}, {"max_prompt_tokens": 2048, "backends": vllm}]
    classes.append({"backends": rest or vllm})
    return [c for c in classes if c["backends"]]


def capacity_estimate(profile: Any, kind: str) -> float:
    """Requests/s the engine can finish at full batch (an estimate from its profile, for rates)."""
    prompt, output = workload_means(kind)
    if kind == "chat":
        prompt *= 0.4  # most of a turn's prompt is cached after the first turn
    prefill_s = prompt / profile.prefill_tokens_per_s
    slots = profile.max_num_seqs
    decode_bound = slots / (prefill_s + output * profile.itl_at(slots))
    return 1.0 / (1.0 / decode_bound + prefill_s)


def gateway_config(fleet: Fleet, engines: list[Engine], urls: dict[str, str], policy: str, speed: float,
                   affinity: bool = True, wave: dict[str, float] | None = None,
                   profiles: bool | None = None) -> dict[str, Any]:  # fmt: skip
    models: list[str] = []
    for e in sorted(engines, key=lambda e: -model_size(e.profile.model)):
        if e.profile.model not in models:
            models.append(e.profile.model)
    names = {e.profile.name for e in engines}
    classes = [{**c, "backends": [b for b in c["backends"] if b in names]} for c in fleet.size_classes]
    return {
        "policy": policy,
        "backends": [
            {
                "name": e.profile.name,
                "url": urls[e.profile.name],
                "kind": e.profile.dialect.value,
                "models": [e.profile.model],
                # without profiles, configured as the README's examples are: kind, URL, models
                **(
                    {"gpu": e.profile.gpu, "profile": e.profile.to_backend_profile(speed).model_dump()}
                    if (fleet.profiles if profiles is None else profiles)
                    else {}
                ),
            }
            for e in engines
        ],
        "groups": {"chat": models},
        "size_classes": [c for c in classes if c["backends"]] or [{"backends": sorted(names)}],
        "poll_interval_s": 1.0 / speed,
        "retries": 0,
        "timeouts": {"first_byte_s": 300, "total_s": 600, "idle_s": 120},
        "wave": {
            "ttft_slo_s": SLO_TTFT_S / speed,
            "tpot_slo_s": SLO_TPOT_S / speed,
            "shed_slack_s": 0.25 / speed,
            "preference_penalty_s": 0.5 / speed,
            # overrides name device-time settings: the ones in seconds are scaled like the SLO
            **{k: v / speed if k.endswith("_s") else v for k, v in (wave or {}).items()},
            "affinity": affinity,
        },
    }


def model_size(model: str) -> float:
    digits = "".join(ch if ch.isdigit() or ch == "." else " " for ch in model.split("-")[-1]).split()
    try:
        return float(digits[0])
    except (IndexError, ValueError):
        return 0.0


# ---------------------------------------------------------------- child processes


async def child_sims() -> None:
    """Serve simulated engines; each stdin line {profiles, speed, seed} replaces the fleet,
    {"samples": true} answers with what the engines ran since the fleet started (`EngineSampler`),
    and {"cancel": true} aborts every request in the engines."""
    from wavefleet.sim import SimFleet, SimProfile

    fleet: SimFleet | None = None
    sampler: EngineSampler | None = None
    reader = await stdin_reader()
    while line := await reader.readline():
        spec = json.loads(line)
        if spec.get("samples"):
            print(json.dumps(sampler.report() if sampler is not None else {}), flush=True)
            continue
        if spec.get("cancel"):  # end every request still in an engine (the run's drain is over)
            cut = 0
            for server in fleet.servers.values() if fleet is not None else []:
                engine = server.engine
                for seq in [*engine.running, *engine.waiting]:
                    engine.cancel(seq)
                    cut += 1
            print(json.dumps({"cancelled": cut}), flush=True)
            continue
        if sampler is not None:
            await sampler.stop()
            sampler = None
        if fleet is not None:
            await fleet.close()
            fleet = None
        if spec.get("quit"):
            break
        profiles = [SimProfile.model_validate(p) for p in spec["profiles"]]
        fleet = SimFleet(profiles, speed=spec["speed"], seed=spec["seed"])
        await fleet.start()
        sampler = EngineSampler({name: server.engine for name, server in fleet.servers.items()})
        print(json.dumps(fleet.urls), flush=True)
    if sampler is not None:
        await sampler.stop()
    if fleet is not None:
        await fleet.close()


class EngineSampler:
    """Every `period_s` (wall), each engine's running and waiting counts, read in its own process:
    what the engine itself would report at that instant, without a poll's delay."""

    def __init__(self, engines: dict[str, Any], period_s: float = 0.05) -> None:
        self.names = list(engines)
        self.samples: list[list[float]] = []  # [time.monotonic(), running, waiting, running, ...]
        self._engines = [engines[name] for name in self.names]
        self._period_s = period_s
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            row: list[float] = [time.monotonic()]
            for engine in self._engines:
                row += [engine.num_running, engine.num_waiting]
            self.samples.append(row)
            await asyncio.sleep(self._period_s)

    def report(self) -> dict[str, Any]:
        return {"names": self.names, "samples": self.samples}

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def child_gateway() -> None:
    """Serve the gateway; each stdin line (a GatewayConfig) replaces it."""
    import aiohttp
    from aiohttp import web

    from wavefleet.gateway.app import create_app
    from wavefleet.gateway.config import GatewayConfig
    from wavefleet.gateway.monitor.polling import PollingMonitor
    from wavefleet.gateway.routing.factory import build_policy

    runner: web.AppRunner | None = None
    session: aiohttp.ClientSession | None = None
    reader = await stdin_reader()
    while line := await reader.readline():
        if runner is not None:
            await runner.cleanup()
        if session is not None:
            await session.close()
        runner = session = None
        spec = json.loads(line)
        if spec.get("quit"):
            break
        config = GatewayConfig.model_validate(spec)
        session = aiohttp.ClientSession()
        monitor = PollingMonitor(config.backends, session, interval_s=config.poll_interval_s)
        recording = RecordingPolicy(build_policy(config))
        app = create_app(config, monitor, api_keys=[], policy=recording)
        app.router.add_get("/harness/log", recording.handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        print(json.dumps({"url": f"http://127.0.0.1:{runner.addresses[0][1]}"}), flush=True)
    if runner is not None:
        await runner.cleanup()
    if session is not None:
        await session.close()


class RecordingPolicy:
    """The policy under test, unchanged, with each decision written down for the harness: which
    backend every request went to, in the order the gateway decided, and how its first token and
    its end went (`GET /harness/log`). The bench sees only the gateway; this is where a request's
    backend is known."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        # [time.monotonic(), request id, backend ("" = none), reason, the decision's scores]
        self.decisions: list[list[Any]] = []
        self.first_tokens: dict[str, float] = {}  # request id -> TTFT at the gateway, wall s
        self.finished: dict[str, list[Any]] = {}  # request id -> [backend, ok]

    def choose(self, request: Any, view: Any) -> Any:
        decision = self.inner.choose(request, view)
        backend = decision.ranked[0].backend if decision.ranked else ""
        scores = {name: round(score, 4) for name, score in decision.scores.items()}
        self.decisions.append([time.monotonic(), request.request_id, backend, decision.reason, scores])
        return decision

    def observe_first_token(self, backend: str, request: Any, ttft_s: float) -> None:
        self.first_tokens[request.request_id] = ttft_s
        self.inner.observe_first_token(backend, request, ttft_s)

    def observe_finish(self, backend: str, request: Any, outcome: Any) -> None:
        self.finished[request.request_id] = [backend, outcome.ok]
        self.inner.observe_finish(backend, request, outcome)

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(
            {"decisions": self.decisions, "first_tokens": self.first_tokens, "finished": self.finished}
        )


async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


class Child:
    """A child process of this script, driven one JSON line at a time."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__)), f"--child={self.role}",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26,
        )  # fmt: skip

    async def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if not line:
            raise RuntimeError(f"the {self.role} child ended")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        if self.process is None:
            return
        assert self.process.stdin is not None
        self.process.stdin.write(b'{"quit": true}\n')
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


# ---------------------------------------------------------------- runs


async def gateway_metrics(url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as answer:
        return await answer.text()


def decisions(metrics: str) -> dict[str, float]:
    """Routing decisions per `backend:reason` from the gateway's /metrics."""
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("wave_routing_decisions_total{"):
            labels, value = line.rsplit(" ", 1)
            backend = labels.split('backend="')[1].split('"')[0]
            reason = labels.split('reason="')[1].split('"')[0]
            counts[f"{backend or '-'}:{reason}"] = float(value)
    return counts


def per_backend(metrics: str, speed: float) -> dict[str, Any]:
    return {"decisions": decisions(metrics), "ttft_by_backend": ttft_by_backend(metrics, SLO_TTFT_S / speed)}


def ttft_by_backend(metrics: str, slo_wall_s: float) -> dict[str, dict[str, float]]:
    """Streams per backend and how many of them missed the TTFT target, from the gateway's
    TTFT histogram (its bucket at the target's wall-clock value; the buckets include 0.5 s and 1 s)."""
    out: dict[str, dict[str, float]] = {}
    from prometheus_client.utils import floatToGoString

    bound = f'le="{floatToGoString(slo_wall_s)}"'  # written as the exposition writes bucket bounds
    for line in metrics.splitlines():
        if not line.startswith("wave_time_to_first_token_seconds_"):
            continue
        labels, value = line.rsplit(" ", 1)
        backend = labels.split('backend="')[1].split('"')[0]
        entry = out.setdefault(backend, {"streams": 0.0, "within_target": 0.0})
        if line.startswith("wave_time_to_first_token_seconds_count"):
            entry["streams"] = float(value)
        elif bound in labels:
            entry["within_target"] = float(value)
    return out


async def harness_log(url: str) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url + "/harness/log") as answer:
        log: dict[str, Any] = await answer.json()
        return log


async def start_fleet(sims: Child, gateway: Child, fleet: Fleet, engines: list[Engine], policy: str,
                      speed: float, seed: int, affinity: bool = True, wave: dict[str, float] | None = None,
                      profiles: bool | None = None) -> str:  # fmt: skip
    """Fresh engines and a fresh gateway in front of them; the gateway's URL once it has polled."""
    urls = await sims.ask(
        {"profiles": [e.profile.model_dump(mode="json") for e in engines], "speed": speed, "seed": seed}
    )
    config = gateway_config(fleet, engines, urls, policy, speed, affinity, wave, profiles)
    url: str = (await gateway.ask(config))["url"]
    await asyncio.sleep(3.0 / speed + 0.1)  # a few polls: the monitor has seen every engine
    return url


async def run_with_drain_cap(sims: Child, load_runs: list[Any], arrivals_end: float,
                             drain_s: float) -> tuple[list[Any], int]:  # fmt: skip
    """Await the bench's runs; `drain_s` (wall) after the last arrival, abort whatever the engines
    still hold, so a queue on an engine that cannot keep up does not hold the harness for
    minutes. Nothing cut this way could have met the SLO (`--drain-seconds`)."""
    tasks = [asyncio.ensure_future(run) for run in load_runs]
    cut = 0
    while not all(task.done() for task in tasks):
        left = arrivals_end + drain_s - time.perf_counter()
        if left <= 0:
            cut += (await sims.ask({"cancel": True}))["cancelled"]
            left = 1.0  # an aborted stream ends at once; look again shortly
        await asyncio.wait(tasks, timeout=left)
    return [task.result() for task in tasks], cut


def is_good(record: Any, speed: float) -> bool:
    """Met TTFT and TPOT (device time), as the bench's goodput counts; a failure is not good."""
    if not (record.ok and record.chunk_times):
        return False
    ttft = record.chunk_times[0] - record.scheduled
    tpot = 0.0
    if record.output_tokens > 1:
        tpot = (record.chunk_times[-1] - record.chunk_times[0]) / (record.output_tokens - 1)
    return ttft * speed <= SLO_TTFT_S and tpot * speed <= SLO_TPOT_S


def run_lengths(backends: list[str]) -> dict[str, Any]:
    """Runs of consecutive requests sent to the same backend: the longest, the mean, and how many."""
    runs = [len(list(group)) for _, group in itertools.groupby(backends)]
    return {
        "longest_run": max(runs, default=0),
        "mean_run": round(statistics.mean(runs), 2) if runs else 0.0,
        "runs": len(runs),
    }


def analyse(records: list[Any], log: dict[str, Any], samples: dict[str, Any], engines: list[Engine],
            kind: str, speed: float, start: float, end: float, window_device_s: float,
            last: bool = True) -> dict[str, Any]:  # fmt: skip
    """What happened to the requests that arrived in [start, end) (wall, CLOCK_MONOTONIC, the clock
    of the bench's records and of both children): goodput over the arrival window, and from the
    gateway's own log where each request went, which missed TTFT, the runs of consecutive requests
    to one backend, requests sent to an engine that cannot meet the SLO while one that can had
    room, and sheds while a backend that can meet the SLO had nothing running or waiting."""
    import bisect

    ours = [r for r in records if start <= r.scheduled < end]
    good = sum(is_good(r, speed) for r in ours)
    in_window = [d for d in log["decisions"] if start <= d[0] and (last or d[0] < end)]
    sent = [d for d in in_window if d[2]]
    capable = {e.profile.name for e in engines if meets_slo_at_best(e.profile, kind)}
    slots = {e.profile.name: e.profile.max_num_seqs for e in engines}
    names: list[str] = samples.get("names", [])
    rows: list[list[float]] = samples.get("samples", [])
    times = [row[0] for row in rows]

    def state_at(t: float) -> dict[str, tuple[float, float]]:
        i = bisect.bisect_right(times, t) - 1
        if i < 0:
            return {}
        row = rows[i]
        return {name: (row[1 + 2 * k], row[2 + 2 * k]) for k, name in enumerate(names)}

    per_backend: dict[str, dict[str, int]] = {}
    slow_while_free = 0
    for t, rid, backend, *_ in sent:
        entry = per_backend.setdefault(backend, {"requests": 0, "ttft_misses": 0})
        entry["requests"] += 1
        ttft = log["first_tokens"].get(rid)
        entry["ttft_misses"] += ttft is None or ttft * speed > SLO_TTFT_S
        if backend not in capable:
            state = state_at(t)
            slow_while_free += any(
                state.get(name, (0, 1))[1] == 0 and state[name][0] < slots[name] for name in capable
            )
    idle_while_shed: dict[str, int] = {}
    sheds = [d for d in in_window if not d[2]]
    for t, *_ in sheds:
        for name, (running, waiting) in state_at(t).items():
            if running + waiting == 0:
                idle_while_shed[name] = idle_while_shed.get(name, 0) + 1
    return {
        "arrivals": len(ours),
        "good": good,
        "goodput_window": good / window_device_s,
        "failed": sum(not (r.ok and r.chunk_times) for r in ours),
        "shed": sum(r.status == 429 for r in ours),
        "per_backend": per_backend,
        **run_lengths([d[2] for d in sent]),
        "to_slo_incapable_while_capable_free": slow_while_free,
        "idle_while_shed": idle_while_shed,
        "capable_idle_while_shed": sum(v for k, v in idle_while_shed.items() if k in capable),
    }


def by_bin(log: dict[str, Any], start: float, speed: float) -> dict[str, list[int]]:
    """Sheds and TTFT misses (failures included) per BIN_DEVICE_S of the run, by decision time."""
    width = BIN_DEVICE_S / speed
    count = 1 + max((int((d[0] - start) / width) for d in log["decisions"] if d[0] >= start), default=0)
    shed, miss = [0] * count, [0] * count
    for t, rid, backend, *_ in log["decisions"]:
        if t < start:
            continue
        k = int((t - start) / width)
        if not backend:
            shed[k] += 1
            continue
        ttft = log["first_tokens"].get(rid)
        miss[k] += ttft is None or ttft * speed > SLO_TTFT_S
    return {"bin_device_s": [BIN_DEVICE_S], "shed": shed, "ttft_misses": miss}


async def one_run(sims: Child, gateway: Child, fleet: Fleet, engines: list[Engine], policy: str,
                  rate: float, speed: float, seed: int, affinity: bool = True,
                  wave: dict[str, float] | None = None, run_s: float = RUN_DEVICE_S,
                  profiles: bool | None = None, drain_s: float = DRAIN_DEVICE_S) -> dict[str, Any]:  # fmt: skip
    from wavefleet.bench import LoadSpec, Slo, Target, run_load_async, summarize

    url = await start_fleet(sims, gateway, fleet, engines, policy, speed, seed, affinity, wave, profiles)
    least = MIN_REQUESTS if len(engines) > 1 else MIN_REQUESTS_ALONE
    requests = int(min(MAX_REQUESTS, max(least, rate * run_s)))
    workload = make_workload(fleet.workload, seed)
    load = LoadSpec(rate=rate * speed, num_requests=requests, seed=seed)
    target = Target(url + "/v1", "chat", timeout_s=600)
    started = time.perf_counter()
    (result,), cut = await run_with_drain_cap(
        sims, [run_load_async(target, workload, load)], started + requests / rate / speed, drain_s / speed
    )
    wall = time.perf_counter() - started
    summary = summarize(
        result.records, result.duration_s, Slo(SLO_TTFT_S * 1000 / speed, SLO_TPOT_S * 1000 / speed)
    )
    flat = summary.flat()
    shed = sum(1 for r in result.records if r.status == 429)
    ttft_miss = tpot_miss = 0
    for r in result.records:
        if r.ok and r.chunk_times:
            ttft = r.chunk_times[0] - r.scheduled
            ttft_miss += ttft * speed > SLO_TTFT_S
            if r.output_tokens > 1:
                tpot_miss += (r.chunk_times[-1] - r.chunk_times[0]) / (
                    r.output_tokens - 1
                ) * speed > SLO_TPOT_S
    lags = [r.dispatch_lag for r in result.records if r.sent]
    log, samples = await harness_log(url), await sims.ask({"samples": True})
    # the planned arrival window: `requests` arrivals at `rate`
    routed = analyse(result.records, log, samples, engines, fleet.workload, speed, result.t0, math.inf,
                     requests / rate)  # fmt: skip
    return {
        "policy": policy,
        "affinity": affinity,
        "profiles": fleet.profiles if profiles is None else profiles,
        "rate": rate,
        "seed": seed,
        "requests": requests,
        "arrivals_device_s": run_s,
        "speed": speed,
        "goodput": flat.get("goodput_rps", 0.0) / speed,
        "throughput": flat["request_tps"] / speed,
        "good_fraction": flat.get("good_fraction", 0.0),
        "p95_ttft_s": flat["p95_ttft_ms"] * speed / 1000 if summary.completed else None,
        "p50_ttft_s": flat["median_ttft_ms"] * speed / 1000 if summary.completed else None,
        "p95_tpot_s": flat["p95_tpot_ms"] * speed / 1000 if summary.completed else None,
        "completed": summary.completed,
        "failed": summary.failed,
        "shed": shed,
        "ttft_misses": ttft_miss,
        "tpot_misses": tpot_miss,
        "max_dispatch_lag_ms_wall": max(lags) * 1000 if lags else None,
        "wall_s": wall,
        "cut_after_drain": cut,
        "routing": {k: v for k, v in routed.items() if k not in ("arrivals", "failed", "shed")},
        "by_bin": by_bin(log, result.t0, speed),  # a fresh gateway's start against the rest of the run
        **per_backend(await gateway_metrics(url), speed),
    }


async def phase_run(sims: Child, gateway: Child, fleet: Fleet, policy: str, capacity: float,
                    phases: list[float], phase_s: float, speed: float, seed: int,
                    profiles: bool | None, wave: dict[str, float] | None = None,
                    drain_s: float = DRAIN_DEVICE_S, first: int = 0) -> dict[str, Any]:  # fmt: skip
    """One gateway and one set of engines through consecutive phases at `phases` x `capacity`
    req/s, `phase_s` device seconds of Poisson arrivals each, the next phase's arrivals starting
    as the previous one's end (no drain between them). Phase k draws arrivals and prompts from
    stream `seed * 100 + first + k`, so a run with `first` = n repeats phase n of a longer one."""
    from wavefleet.bench import LoadSpec, Target, run_load_async

    url = await start_fleet(sims, gateway, fleet, fleet.engines, policy, speed, seed, True, wave, profiles)
    target = Target(url + "/v1", "chat", timeout_s=600)
    window = phase_s / speed
    t0 = time.perf_counter() + 0.05

    async def phase(k: int, fraction: float) -> Any:
        await asyncio.sleep(max(0.0, t0 + k * window - time.perf_counter()))
        stream = seed * 100 + first + k  # each phase's own arrivals and prompts
        load = LoadSpec(rate=fraction * capacity * speed, duration_s=window, seed=stream)
        return await run_load_async(target, make_workload(fleet.workload, stream), load)

    started = time.perf_counter()
    results, cut = await run_with_drain_cap(
        sims, [phase(k, f) for k, f in enumerate(phases)], t0 + len(phases) * window, drain_s / speed
    )
    wall = time.perf_counter() - started
    log, samples = await harness_log(url), await sims.ask({"samples": True})
    rows = []
    for k, (fraction, result) in enumerate(zip(phases, results, strict=True)):
        begin, end = t0 + k * window, t0 + (k + 1) * window
        last = k == len(phases) - 1
        records = result.records
        row = analyse(records, log, samples, fleet.engines, fleet.workload, speed, begin, end, phase_s, last)
        rows.append({"phase": k + 1, "fraction": fraction, "rate": round(fraction * capacity, 3), **row})
    return {
        "policy": policy,
        "profiles": fleet.profiles if profiles is None else profiles,
        "seed": seed,
        "speed": speed,
        "phase_device_s": phase_s,
        "phases": rows,
        "by_bin": by_bin(log, t0, speed),
        "cut_after_drain": cut,
        "wall_s": round(wall, 1),
    }


def fmt_row(row: dict[str, Any]) -> str:
    p95 = row["p95_ttft_s"]
    return (
        f"  {row['policy']:<14s} rate {row['rate']:6.2f}/s  goodput {row['goodput']:6.2f}/s  "
        f"good {row['good_fraction']:5.1%}  p95 TTFT {p95 if p95 is None else round(p95, 2)} s  "
        f"shed {row['shed']:3d}  miss ttft/tpot {row['ttft_misses']}/{row['tpot_misses']}  wall {row['wall_s']:.1f}s"
    )


async def compare(args: argparse.Namespace) -> dict[str, Any]:
    fleets, notes = build_fleets(args.fleets)
    sims, gateway = Child("sims"), Child("gateway")
    await asyncio.gather(sims.start(), gateway.start())
    results: dict[str, Any] = {
        "what": "goodput (TTFT <= 1 s and TPOT <= 100 ms) and P95 TTFT per policy over a Poisson rate sweep",
        "units": "device time: rates and goodput in requests/s, latencies in s (wall figures x speed)",
        "slo": {"ttft_s": SLO_TTFT_S, "tpot_s": SLO_TPOT_S},
        "fleet_a_notes": notes,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fleets": {},
    }
    seeds = [args.seed + i for i in range(args.repeats)]
    try:
        for fleet in fleets.values():
            caps = {e.profile.name: capacity_estimate(e.profile, fleet.workload) for e in fleet.engines}
            total = fleet.capacity_rps or sum(caps.values())
            speed = args.speed
            if args.phases:
                results["fleets"][fleet.key] = await phases_for(sims, gateway, fleet, total, seeds, args)
                write_results(
                    {**results, "what": "warm-gateway phases against a fresh gateway",
                     "fleets": {fleet.key: results["fleets"][fleet.key]}},
                    args.out / f"phases_{fleet.key}.json",
                )  # fmt: skip
                continue
            record: dict[str, Any] = {
                "title": fleet.title,
                "engines": [
                    {
                        "name": e.profile.name,
                        "deployment": e.deployment,
                        "model": e.profile.model,
                        "device": e.profile.device,
                        "gpu": e.profile.gpu,
                        "slots": e.profile.max_num_seqs,
                        "capacity_estimate": round(caps[e.profile.name], 3),
                    }
                    for e in fleet.engines
                ],  # fmt: skip
                "workload": fleet.workload,
                "profiles": fleet.profiles if args.profiles is None else args.profiles,
                "capacity": total,
                "capacity_basis": "given" if fleet.capacity_rps else "estimate",
                "speed": speed,
                "rates": [round(f * total, 3) for f in args.fractions],
                "seeds": seeds,
                "runs": [],
                "alone": {},
                "affinity_check": [],
            }
            basis = "given" if fleet.capacity_rps else "estimate"
            print(f"{fleet.title}: capacity {total:.2f} req/s ({basis}), speed {speed:g}", flush=True)
            fleet_started = time.perf_counter()
            for rate in [] if args.only_affinity_check or args.only_alone else record["rates"]:
                for seed in seeds:  # every policy sees the same arrivals and prompts per seed
                    for policy in args.policies:
                        row = await one_run(
                            sims, gateway, fleet, fleet.engines, policy, rate, speed, seed,
                            wave=args.wave, run_s=args.run_seconds, profiles=args.profiles,
                            drain_s=args.drain_seconds,
                        )  # fmt: skip
                        record["runs"].append(row)
                        print(fmt_row(row), flush=True)
                    if fleet.workload == "chat" and "wave" in args.policies:
                        row = await one_run(
                            sims, gateway, fleet, fleet.engines, "wave", rate, speed, seed, False, args.wave,
                            args.run_seconds,
                        )  # fmt: skip
                        row["policy"] = "wave-no-affinity"
                        record["runs"].append(row)
                        print(fmt_row(row), flush=True)
            if fleet.workload == "chat" and args.affinity_check:
                # affinity's own effect: with shedding off both serve every request, so TTFT is
                # compared over the same requests (a shedding policy's TTFT covers only those it kept)
                no_shed = {**args.wave, "shed": 0.0}
                for fraction in args.affinity_check:
                    rate = round(fraction * total, 3)
                    for seed in seeds:
                        for affinity in (True, False):
                            row = await one_run(
                                sims,
                                gateway,
                                fleet,
                                fleet.engines,
                                "wave",
                                rate,
                                speed,
                                seed,
                                affinity,
                                no_shed,
                            )
                            row["policy"] = "wave, no shedding" + ("" if affinity else ", no affinity")
                            record["affinity_check"].append(row)
                            print(fmt_row(row), flush=True)
            if not (args.skip_alone or args.only_affinity_check):
                seen: dict[tuple[str, str], dict[str, Any]] = {}
                previous_file = args.out / f"compare_{fleet.key}.json"
                previous = (
                    json.loads(previous_file.read_text())["fleets"][fleet.key]["alone"]
                    if args.alone_engines and previous_file.exists()
                    else {}
                )
                for engine in fleet.engines:
                    same = (engine.profile.model_dump_json(exclude={"name"}), fleet.workload)
                    name = engine.profile.name
                    if same in seen:  # an identical engine: measured once
                        record["alone"][engine.profile.name] = seen[same]
                        continue
                    if args.alone_engines and name not in args.alone_engines:
                        if name in previous:
                            record["alone"][name] = {
                                **previous[name],
                                "reused": "from the previous run's file",
                            }
                        continue
                    alone_speed = (
                        args.alone_speed if not engine.profile.gpu or caps[engine.profile.name] < 3 else speed
                    )
                    rows = []
                    for fraction in args.fractions:
                        rate = round(fraction * caps[engine.profile.name], 3)
                        for seed in seeds:
                            for policy in args.alone_policies:
                                row = await one_run(
                                    sims, gateway, fleet, [engine], policy, rate, alone_speed, seed,
                                    wave=args.wave, run_s=args.run_seconds,
                                )  # fmt: skip
                                rows.append(row)
                                print(f"  alone {engine.profile.name}:" + fmt_row(row)[1:], flush=True)
                    seen[same] = record["alone"][engine.profile.name] = {
                        "runs": rows,
                        "best_goodput": max(
                            point["goodput"]
                            for policy in args.alone_policies
                            for point in curve(rows, policy)
                        ),
                    }
                record["ideal_capacity"] = sum(
                    record["alone"].get(e.profile.name, {"best_goodput": 0.0})["best_goodput"]
                    for e in fleet.engines
                )
            record["wall_s"] = round(time.perf_counter() - fleet_started, 1)
            record["machine"] = f"{os.cpu_count()} cores, load average at the end {os.getloadavg()[0]:.1f}"
            results["fleets"][fleet.key] = record
            write_results({**results, "fleets": {fleet.key: record}}, args.out / f"compare_{fleet.key}.json")
    finally:
        await asyncio.gather(sims.stop(), gateway.stop())
    return results


async def phases_for(sims: Child, gateway: Child, fleet: Fleet, capacity: float, seeds: list[int],
                     args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """Per seed and policy: the warm gateway through every phase, then a fresh gateway (fresh
    engines) for one phase at the final phase's rate, on the same seed's arrivals."""
    record: dict[str, Any] = {
        "title": fleet.title,
        "capacity": capacity,
        "phases": args.phases,
        "phase_device_s": args.phase_seconds,
        "speed": args.speed,
        "seeds": seeds,
        "runs": [],
    }
    print(f"{fleet.title}: warm phases {args.phases} x {capacity:.2f} req/s", flush=True)
    started = time.perf_counter()
    for seed in seeds:
        for policy in args.policies:
            warm = await phase_run(sims, gateway, fleet, policy, capacity, args.phases, args.phase_seconds,
                                   args.speed, seed, args.profiles, args.wave, args.drain_seconds)  # fmt: skip
            fresh = await phase_run(sims, gateway, fleet, policy, capacity, args.phases[-1:], args.phase_seconds,
                                    args.speed, seed, args.profiles, args.wave, args.drain_seconds,
                                    first=len(args.phases) - 1)  # fmt: skip
            final, alone = warm["phases"][-1], fresh["phases"][0]
            warm["fresh_final"] = alone
            warm["final_over_fresh"] = (
                final["goodput_window"] / alone["goodput_window"] if alone["goodput_window"] else None
            )
            record["runs"].append(warm)
            print(fmt_phases(warm), flush=True)
    record["wall_s"] = round(time.perf_counter() - started, 1)
    record["machine"] = f"{os.cpu_count()} cores, load average at the end {os.getloadavg()[0]:.1f}"
    return record


def fmt_phases(run: dict[str, Any]) -> str:
    lines = [f"  {run['policy']} seed {run['seed']} profiles {'on' if run['profiles'] else 'off'}:"]
    for row in [*run["phases"], {**run["fresh_final"], "phase": "fresh"}]:
        backends = ", ".join(
            f"{name} {v['requests']}/{v['ttft_misses']}" for name, v in sorted(row["per_backend"].items())
        )
        lines.append(
            f"    phase {row['phase']!s:<5} {row['rate']:6.2f}/s  arrived {row['arrivals']:4d}  "
            f"goodput {row['goodput_window']:6.2f}/s  "
            f"failed {row['failed']:4d} (shed {row['shed']:4d})  runs {row['longest_run']}/{row['mean_run']}  "
            f"to slow {row['to_slo_incapable_while_capable_free']}  idle while shed {row['idle_while_shed']}  "
            f"[{backends}]"
        )
    ratio = run["final_over_fresh"]
    lines.append(f"    final / fresh goodput: {'–' if ratio is None else f'{ratio:.0%}'}")
    return "\n".join(lines)


def write_results(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(results, indent=1) + "\n")
    temporary.replace(path)


# ---------------------------------------------------------------- tables and plots


def curve(runs: list[dict[str, Any]], policy: str) -> list[dict[str, Any]]:
    """One point per rate for `policy`: the median goodput and P95 TTFT over its repeats."""
    by_rate: dict[float, list[dict[str, Any]]] = {}
    for row in runs:
        if row["policy"] == policy:
            by_rate.setdefault(row["rate"], []).append(row)
    points = []
    for rate, rows in sorted(by_rate.items()):
        p95 = [r["p95_ttft_s"] for r in rows if r["p95_ttft_s"] is not None]
        points.append(
            {
                "rate": rate,
                "goodput": statistics.median(r["goodput"] for r in rows),
                "p95_ttft_s": statistics.median(p95) if p95 else None,
                "shed": statistics.median(r["shed"] for r in rows),
                "repeats": len(rows),
            }
        )
    return points


def table(results: dict[str, Any]) -> str:
    lines = ["| fleet | ideal (req/s) | " + " | ".join(POLICIES + ["wave-no-affinity"]) + " |"]
    lines.append("|---" * (len(POLICIES) + 3) + "|")
    for key, fleet in results["fleets"].items():
        ideal = fleet.get("ideal_capacity")
        cells = []
        for policy in POLICIES + ["wave-no-affinity"]:
            points = curve(fleet["runs"], policy)
            if not points:
                cells.append("–")
                continue
            best = max(p["goodput"] for p in points)
            cells.append(f"{best:.2f} ({best / ideal:.0%})" if ideal else f"{best:.2f}")
        lines.append(
            f"| {key} | {ideal:.2f} | " + " | ".join(cells) + " |"
            if ideal
            else f"| {key} | – | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def per_rate(results: dict[str, Any]) -> str:
    """Goodput and P95 TTFT per policy and rate, one markdown table per fleet."""
    out = []
    for fleet in results["fleets"].values():
        policies = [
            p for p in POLICIES + ["wave-no-affinity"] if any(r["policy"] == p for r in fleet["runs"])
        ]
        repeats = len(fleet.get("seeds", [1]))
        median = f", median of {repeats} runs" if repeats > 1 else ""
        out.append(f"**{fleet['title']}**: goodput req/s / P95 TTFT s (shed) per arrival rate{median}\n")
        out.append("| rate | " + " | ".join(policies) + " |")
        out.append("|---" * (len(policies) + 1) + "|")
        curves = {policy: {p["rate"]: p for p in curve(fleet["runs"], policy)} for policy in policies}
        for rate in fleet["rates"]:
            cells = []
            for policy in policies:
                point = curves[policy][rate]
                p95 = "–" if point["p95_ttft_s"] is None else f"{point['p95_ttft_s']:.2f}"
                shed = f" ({point['shed']:g})" if point["shed"] else ""
                cells.append(f"{point['goodput']:.2f} / {p95}{shed}")
            out.append(f"| {rate:g} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def verdicts(results: dict[str, Any]) -> str:
    """The issue's per-rate targets for wave against the best other policy, point by point."""
    out = [
        "| fleet | rate | wave goodput / best other | wave P95 TTFT / best other | targets |",
        "|---|---|---|---|---|",
    ]
    for key, fleet in results["fleets"].items():
        others = [p for p in POLICIES if p != "wave" and any(r["policy"] == p for r in fleet["runs"])]
        wave = {p["rate"]: p for p in curve(fleet["runs"], "wave")}
        rivals = [{p["rate"]: p for p in curve(fleet["runs"], policy)} for policy in others]
        if not rivals:  # wave alone was run: nothing to compare with
            continue
        for rate, point in wave.items():
            best = max(r[rate]["goodput"] for r in rivals)
            p95s = [r[rate]["p95_ttft_s"] for r in rivals if r[rate]["p95_ttft_s"] is not None]
            low = min(p95s) if p95s else None
            good = point["goodput"] / best if best else math.inf
            fast = point["p95_ttft_s"] / low if low and point["p95_ttft_s"] is not None else math.nan
            ok = good >= 0.95 and not fast > 1.10
            out.append(f"| {key} | {rate:g} | {good:.0%} | {fast:.0%} | {'met' if ok else '**not met**'} |")
    return "\n".join(out)


def routing_table(results: dict[str, Any]) -> str:
    """Where the requests went, from the gateway's own log: per policy and rate, medians over
    seeds of goodput over the arrival window, the longest and mean run of consecutive requests to
    one backend, and requests sent to an engine that cannot meet the SLO while one that can had room."""
    out = []
    for fleet in results["fleets"].values():
        rows = [r for r in fleet["runs"] if "routing" in r]
        if not rows:
            continue
        out.append(f"**{fleet['title']}**: routing, median over seeds\n")
        out.append(
            "| rate | policy | goodput (arrival window) | failed | longest run | mean run "
            "| to an SLO-incapable engine while another had room | requests per backend |"
        )
        out.append("|---|---|---|---|---|---|---|---|")
        for rate in sorted({r["rate"] for r in rows}):
            for policy in [p for p in POLICIES if any(r["policy"] == p for r in rows)]:
                group = [r for r in rows if r["rate"] == rate and r["policy"] == policy]
                if not group:
                    continue
                med = statistics.median
                backends = sorted({b for r in group for b in r["routing"]["per_backend"]})
                spread = ", ".join(
                    f"{b} {med(r['routing']['per_backend'].get(b, {'requests': 0})['requests'] for r in group):g}"
                    for b in backends
                )
                out.append(
                    f"| {rate:g} | {policy} | {med(r['routing']['goodput_window'] for r in group):.2f} | "
                    f"{med(r['failed'] for r in group):g} | {med(r['routing']['longest_run'] for r in group):g} | "
                    f"{med(r['routing']['mean_run'] for r in group):.2f} | "
                    f"{med(r['routing']['to_slo_incapable_while_capable_free'] for r in group):g} | {spread} |"
                )
        out.append("")
    return "\n".join(out)


def phases_table(results: dict[str, Any]) -> str:
    """Warm-gateway phases against a fresh gateway at the final rate, medians over seeds."""
    out = []
    for fleet in results["fleets"].values():
        runs = fleet.get("runs", [])
        if not runs or "phases" not in runs[0]:
            continue
        out.append(
            f"**{fleet['title']}**: warm gateway through {fleet['phases']} x {fleet['capacity']:g} req/s, "
            f"{fleet['phase_device_s']:g} s each; median over seeds {fleet['seeds']}\n"
        )
        out.append(
            "| policy | profiles | phase | rate | arrivals | goodput | failed (shed) | longest / mean run "
            "| to SLO-incapable while another had room | sheds while an SLO-capable backend idled "
            "| requests / TTFT misses per backend |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        med = statistics.median
        for key in sorted(
            {(r["policy"], r["profiles"]) for r in runs}, key=lambda k: (POLICIES.index(k[0]), k[1])
        ):
            group = [r for r in runs if (r["policy"], r["profiles"]) == key]
            lines = [[r["phases"][k] for r in group] for k in range(len(group[0]["phases"]))]
            lines.append([r["fresh_final"] for r in group])
            for k, rows in enumerate(lines):
                label = "fresh" if k == len(lines) - 1 else str(k + 1)
                backends = sorted({b for r in rows for b in r["per_backend"]})
                zero = {"requests": 0, "ttft_misses": 0}
                spread = ", ".join(
                    f"{b} {med(r['per_backend'].get(b, zero)['requests'] for r in rows):g}"
                    f"/{med(r['per_backend'].get(b, zero)['ttft_misses'] for r in rows):g}"
                    for b in backends
                )
                out.append(
                    f"| {key[0]} | {'on' if key[1] else 'off'} | {label} | {rows[0]['rate']:g} | "
                    f"{med(r['arrivals'] for r in rows):g} | {med(r['goodput_window'] for r in rows):.2f} | "
                    f"{med(r['failed'] for r in rows):g} ({med(r['shed'] for r in rows):g}) | "
                    f"{med(r['longest_run'] for r in rows):g} / {med(r['mean_run'] for r in rows):.2f} | "
                    f"{med(r['to_slo_incapable_while_capable_free'] for r in rows):g} | "
                    f"{med(r['capable_idle_while_shed'] for r in rows):g} | {spread} |"
                )
            ratios = [r["final_over_fresh"] for r in group if r["final_over_fresh"] is not None]
            ratio = ", ".join(f"{x:.0%}" for x in ratios)
            out.append(f"| {key[0]} | {'on' if key[1] else 'off'} | final / fresh | | | {ratio} | | | | | |")
        out.append("")
    return "\n".join(out)


def affinity_table(results: dict[str, Any]) -> str:
    """Chat fleets: wave with and without prefix affinity, shedding off (same requests served)."""
    out = []
    for fleet in results["fleets"].values():
        rows = fleet.get("affinity_check") or []
        if not rows:
            continue
        out.append(f"**{fleet['title']}**: shedding off, median over seeds\n")
        out.append("| rate | variant | goodput | median TTFT s | P95 TTFT s |")
        out.append("|---|---|---|---|---|")
        for rate in sorted({r["rate"] for r in rows}):
            for variant in sorted({r["policy"] for r in rows}):
                group = [r for r in rows if r["rate"] == rate and r["policy"] == variant]
                med = statistics.median
                out.append(
                    f"| {rate:g} | {variant} | {med(r['goodput'] for r in group):.2f} | "
                    f"{med(r['p50_ttft_s'] for r in group):.3f} | {med(r['p95_ttft_s'] for r in group):.3f} |"
                )
        out.append("")
    return "\n".join(out)


def plot(results: dict[str, Any], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key, fleet in results["fleets"].items():
        if not fleet["runs"]:  # e.g. --only-affinity-check
            continue
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        policies = sorted(
            {r["policy"] for r in fleet["runs"]}, key=lambda p: (POLICIES + ["wave-no-affinity"]).index(p)
        )
        for policy in policies:
            rows = curve(fleet["runs"], policy)
            style = (
                {"linewidth": 2.5}
                if policy == "wave"
                else {"linestyle": "--"}
                if policy == "wave-no-affinity"
                else {}
            )
            left.plot(
                [r["rate"] for r in rows], [r["goodput"] for r in rows], marker="o", label=policy, **style
            )
            right.plot(
                [r["rate"] for r in rows],
                [r["p95_ttft_s"] or math.nan for r in rows],
                marker="o",
                label=policy,
                **style,
            )
        if fleet.get("ideal_capacity"):
            left.axhline(fleet["ideal_capacity"], color="grey", linestyle=":", label="ideal capacity")
        left.set(
            xlabel="arrival rate (req/s, Poisson)", ylabel="goodput (req/s meeting TTFT<=1s, TPOT<=100ms)"
        )
        right.set(xlabel="arrival rate (req/s, Poisson)", ylabel="P95 TTFT (s)", yscale="log")
        right.axhline(SLO_TTFT_S, color="grey", linestyle=":")
        left.legend(fontsize=8)
        fig.suptitle(f"{fleet['title']} (simulated, device time)")
        fig.tight_layout()
        path = folder / f"fleet_{key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def comma_floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", choices=["sims", "gateway"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--fleets", type=lambda s: s.split(","), default=["a", "b", "c"], help="a, b, c, d, e"
    )
    parser.add_argument("--policies", type=lambda s: s.split(","), default=POLICIES)
    parser.add_argument("--speed", type=float, default=2.0, help="time scale of fleet runs")
    parser.add_argument(
        "--alone-speed", type=float, default=16.0, help="time scale of slow engines run alone"
    )
    parser.add_argument("--skip-alone", action="store_true", help="do not measure each engine alone")
    parser.add_argument(
        "--alone-policies", type=lambda s: s.split(","), default=["least-loaded", "wave"],
        help="policies in front of each engine alone (the ideal takes the best of them)",
    )  # fmt: skip
    parser.add_argument(
        "--alone-engines", type=lambda s: s.split(","), default=None,
        help="measure only these engines alone; take the others' from the fleet's existing file",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--run-seconds", type=float, default=RUN_DEVICE_S,
        help="device seconds of arrivals per fleet run (goodput's duration adds the drain, which "
        "weighs less in longer runs)",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="runs per point, seeds seed, seed+1, ...; tables and plots show the median",
    )  # fmt: skip
    parser.add_argument(
        "--affinity-check", type=comma_floats, default=None,
        help="chat fleets: also run wave with and without affinity, shedding off, at these fractions",
    )  # fmt: skip
    parser.add_argument(
        "--wave", metavar="KEY=VALUE", action="append", default=[],
        type=lambda s: (s.split("=", 1)[0], float(s.split("=", 1)[1])),
        help="override a wave setting (device time), e.g. --wave headroom=0.7; repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--fractions", type=comma_floats, default=FRACTIONS,
        help="rates as fractions of the fleet's estimated capacity",
    )  # fmt: skip
    parser.add_argument(
        "--only-affinity-check", action="store_true", help="skip the sweep and the alone runs"
    )
    parser.add_argument("--only-alone", action="store_true", help="only each engine alone (no fleet sweep)")
    parser.add_argument(
        "--phases", type=comma_floats, default=None,
        help=f"warm-gateway phases instead of the sweep: rates as fractions of the fleet's capacity, one "
        f"gateway through all of them, then a fresh one at the last (e.g. {','.join(map(str, PHASES))})",
    )  # fmt: skip
    parser.add_argument(
        "--phase-seconds", type=float, default=30.0, help="device seconds of arrivals per phase"
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=DRAIN_DEVICE_S,
        help="device seconds after the last arrival before requests still in the engines are aborted",
    )  # fmt: skip
    parser.add_argument(
        "--profiles", choices=["on", "off"], default=None,
        help="give the backends their `profile:` in the gateway's config (default: per fleet; (d) off)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for compare_<fleet>.json and plots")
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args()
    args.wave = dict(args.wave)
    args.profiles = None if args.profiles is None else args.profiles == "on"
    if args.child:
        import uvloop

        uvloop.run(child_sims() if args.child == "sims" else child_gateway())
        return
    if not args.plot_only:
        import uvloop

        uvloop.run(compare(args))
    results: dict[str, Any] = {"fleets": {}}
    for path in sorted(args.out.glob("compare_*.json")):
        results["fleets"].update(json.loads(path.read_text())["fleets"])
    print(table(results))
    print(per_rate(results))
    print(verdicts(results))
    print(affinity_table(results))
    print(routing_table(results))
    phased: dict[str, Any] = {"fleets": {}}
    for path in sorted(args.out.glob("phases_*.json")):
        phased["fleets"].update(json.loads(path.read_text())["fleets"])
    print(phases_table(phased))
    for path in plot(results, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
