"""Benchmarks of `wave agent` with real llama-server engines: cold start, swapping, chaos, memory truth.

    python scripts/agent_bench.py cold --repeats 5
    python scripts/agent_bench.py swap --minutes 5 --interval 2
    python scripts/agent_bench.py chaos --kills 10
    python scripts/agent_bench.py truth --truth m.gguf:4096:4 --truth m.gguf:8192:1
    python scripts/agent_bench.py all --minutes 1 --json > results.json
    python scripts/agent_bench.py cold --gpu 0 --gguf 8b.gguf --llama-server build/bin/llama-server

Each benchmark starts its own `wave agent --config` process (the Python running this script,
`-m wavefleet`) on a free loopback port, with the bundled SmolLM2 GGUF served under one to three
names with different contexts (each a distinct model with its own memory estimate), and stops it
at the end. Requests are streamed chat completions; TTFT is request sent to first content chunk.

cold   A request for an unloaded model, to its first token, split into the agent's own phases
       (memory, process, load, first_token from the control API's cold_start), against the engine
       alone: the same llama-server command line started by this script, timed to /health 200 and
       then to the first token of the same request. Runs alternate; medians of --repeats.
swap   Three names whose estimated memory sum exceeds the device budget (set so that --fit of them
       fit), requests cycling among them at one every --interval seconds for --minutes. Counts
       failed requests, out-of-memory lines, evictions by reason (the agent's /metrics and its
       log), and compares TTFT of requests that waited for a load with those that did not.
chaos  Two names under steady load; --kills times, SIGKILL a random ready engine (a llama-server
       child of the agent, as the control API's pid), then waits until it is ready again.
       Requests are classed by when they were sent: failures among those sent after the kill
       (not yet started) count against the goal; those in flight at the kill may fail by design.
       Reports each engine's time back against its backoff plus its load, and the device's
       reserved memory before the kill and after the restart.
truth  Each --truth GGUF:CONTEXT:SLOTS loaded alone: the sizing engine's estimate against the
       engine's measured memory (NVML's per-process figure on a GPU, RSS on the CPU) and against
       the device's used memory before and after the load.
With --gpu N the engines run on that GPU (every layer), with --gguf another model than the bundled one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from wavefleet.agent.process import free_port

PROMPT = "Name three colours."
OOM = re.compile(r"out of memory|failed to allocate|cannot allocate|std::bad_alloc|\boom[- ]?kill", re.I)


def smol(
    name: str, context: int, *, slots: int, threads: int, gguf: str = "bundled:smollm2"
) -> dict[str, Any]:
    return {
        "name": name,
        "gguf": gguf,
        "context": context,
        "slots": slots,
        "threads": threads,
    }


def on_device(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    """`config` on --gpu (device gpu0, every layer there) or on the CPU, with --gguf in place of the bundled model."""
    placed = dict(config)
    if args.gguf is not None:
        placed["gguf"] = str(args.gguf)
    if args.gpu is not None:
        placed["device"] = "gpu0"
    return placed


def devices(args: argparse.Namespace, budget: str) -> dict[str, Any]:
    found: dict[str, Any] = {"cpu": {"budget": budget}}
    if args.gpu is not None:
        found["gpu0"] = {"gpu": args.gpu}
    return found


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# --- requests ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    model: str
    sent: float
    first: float | None = None
    done: float | None = None
    ok: bool = False
    status: int = 0
    error: str = ""
    waited_for_load: bool = False

    @property
    def ttft(self) -> float | None:
        return self.first - self.sent if self.first is not None else None


async def stream_chat(
    session: aiohttp.ClientSession, base: str, model: str, *, max_tokens: int, outcome: Outcome | None = None
) -> Outcome:
    """One streamed chat completion; ok when it answered 200 and ended with [DONE]."""
    result = outcome or Outcome(model=model, sent=time.monotonic())
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    try:
        async with session.post(f"{base}/v1/chat/completions", json=body) as reply:
            result.status = reply.status
            if reply.status != 200:
                result.error = (await reply.read())[:300].decode(errors="replace")
                return result
            async for raw in reply.content:
                line = raw.decode(errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    result.ok = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    result.error = json.dumps(chunk["error"])[:300]
                    break
                choices = chunk.get("choices") or [{}]
                if result.first is None and (choices[0].get("delta") or {}).get("content"):
                    result.first = time.monotonic()
            if not result.ok and not result.error:
                result.error = "the stream ended without [DONE]"
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.done = time.monotonic()
    return result


# --- the agent --------------------------------------------------------------------------------------


@dataclass
class Agent:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    async def status(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.url}/agent/v1/status?log_lines=0") as reply:
            found: dict[str, Any] = await reply.json()
            return found

    async def model(self, session: aiohttp.ClientSession, name: str) -> dict[str, Any]:
        status = await self.status(session)
        return next(m for m in status["models"] if m["name"] == name)

    async def reserved(self, session: aiohttp.ClientSession) -> int:
        status = await self.status(session)
        return int(status["devices"][0]["reserved"])

    async def metrics(self, session: aiohttp.ClientSession) -> str:
        async with session.get(f"{self.url}/metrics") as reply:
            return await reply.text()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running_agent(
    folder: Path,
    models: list[dict[str, Any]],
    *,
    budget: str,
    defaults: dict[str, Any],
    devices: dict[str, Any] | None = None,
    llama_server: Path | None = None,
) -> Iterator[Agent]:
    """`wave agent --config` on a free loopback port, without a secret, until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "name": "bench",
        "port": port,
        "devices": devices or {"cpu": {"budget": budget}},
        "models": models,
        "defaults": defaults,
    }
    if llama_server is not None:
        config["llama_server"] = str(llama_server)
    path = folder / "agent.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    log_path = folder / "agent.log"
    env = {k: v for k, v in os.environ.items() if k != "WAVE_AGENT_SECRET"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "wavefleet", "agent", "--config", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        agent = Agent(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
        try:
            deadline = time.monotonic() + 60
            while not _answers(f"{agent.url}/health"):
                if process.poll() is not None:
                    raise SystemExit(f"wave agent exited during start-up:\n{agent.log()[-2000:]}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"wave agent did not listen within 60 s:\n{agent.log()[-2000:]}")
                time.sleep(0.05)
            yield agent
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError):
        return False


async def wait_state(
    agent: Agent,
    session: aiohttp.ClientSession,
    name: str,
    state: str,
    *,
    within: float,
    not_pid: int | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        model = await agent.model(session, name)
        if model["state"] == state and (not_pid is None or model["pid"] != not_pid):
            return model
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{name} was not {state} within {within:g} s: {model['state']} ({model['detail']})"
            )
        await asyncio.sleep(0.02)


def engine_children(agent_pid: int) -> dict[int, str]:
    """The agent's child processes that run llama-server: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if parent == agent_pid and "llama-server" in cmdline:
            found[int(entry.name)] = cmdline
    return found


def eviction_counts(metrics: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        found = re.match(r"wave_engine_evictions_total\{([^}]*)\}\s+(\S+)", line)
        if found:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
            reason = labels.get("reason", "?")
            counts[reason] = counts.get(reason, 0.0) + float(found.group(2))
    return counts


@contextlib.asynccontextmanager
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=300, sock_connect=5)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


# --- cold start -------------------------------------------------------------------------------------


async def direct_cold_start(
    config: dict[str, Any], *, max_tokens: int, folder: Path, gpu: int | None, binary: Path | None
) -> dict[str, float]:
    """The engine alone: the agent's own command line for `config`, spawn to /health 200 to first token."""
    from wavefleet.agent.config import ModelConfig
    from wavefleet.agent.launch import engine_launch
    from wavefleet.engines.llama_server import find_llama_server

    port = free_port()
    launch = engine_launch(
        ModelConfig.model_validate(config), port=port, binary=find_llama_server(binary), gpu=gpu
    )
    base = f"http://127.0.0.1:{port}"
    log = (folder / "direct.log").open("ab")
    began = time.monotonic()
    process = await asyncio.create_subprocess_exec(  # as the agent spawns its engines
        *launch.argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **launch.env},
        start_new_session=True,
    )
    try:
        answered: float | None = None
        async with client() as session:
            while True:
                status = None
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{base}/health", timeout=aiohttp.ClientTimeout(total=1)) as reply:
                        status = reply.status
                now = time.monotonic()
                if status is not None and answered is None:
                    answered = now
                if status == 200:
                    break
                if process.returncode is not None:
                    raise SystemExit(f"llama-server exited: {process.returncode}")
                if now - began > 120:
                    raise SystemExit("llama-server was not healthy within 120 s")
                await asyncio.sleep(0.01)
            healthy = time.monotonic()
            outcome = await stream_chat(session, base, config["name"], max_tokens=max_tokens)
            if not outcome.ok or outcome.first is None:
                raise SystemExit(f"the direct request failed: {outcome.error}")
        assert answered is not None
        return {
            "process": answered - began,
            "load": healthy - answered,
            "first_token": outcome.first - healthy,
            "total": outcome.first - began,
        }
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
        log.close()


async def cold(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    config = on_device(args, smol("cold", args.context, slots=args.slots, threads=args.threads))
    defaults = {"load_timeout": 300, "stop_timeout": 5}
    runs: list[dict[str, Any]] = []
    with running_agent(
        folder / "cold",
        [config],
        budget="4GiB",
        defaults=defaults,
        devices=devices(args, "4GiB"),
        llama_server=args.llama_server,
    ) as agent:
        async with client() as session:
            for repeat in range(args.repeats):
                direct = await direct_cold_start(
                    config, max_tokens=args.max_tokens, folder=folder, gpu=args.gpu, binary=args.llama_server
                )
                await wait_state(agent, session, "cold", "stopped", within=30)
                outcome = await stream_chat(session, agent.url, "cold", max_tokens=args.max_tokens)
                if not outcome.ok or outcome.ttft is None:
                    raise SystemExit(f"the cold request failed: {outcome.status} {outcome.error}")
                loaded = await agent.model(session, "cold")
                phases = loaded["cold_start"]
                memory = loaded["memory"]
                ttft = outcome.ttft
                run = {
                    "repeat": repeat,
                    "agent_ttft": ttft,
                    "agent_phases": phases,
                    "agent_after_ready": ttft - phases["total"],
                    "direct": direct,
                    "ratio": ttft / direct["total"],
                    "memory": {k: memory[k] for k in ("estimate", "buffers", "process", "error")},
                }
                runs.append(run)
                _say(args, f"cold {repeat}: agent {ttft:.3f} s ({phases}), direct {direct['total']:.3f} s")
                async with session.post(f"{agent.url}/agent/v1/models/cold/unload") as reply:
                    await reply.read()

    def med(key: str, part: str | None = None) -> float | None:
        return median([float(r[key][part] if part else r[key]) for r in runs])

    summary = {
        "agent_ttft": med("agent_ttft"),
        "agent_memory": med("agent_phases", "memory"),
        "agent_process": med("agent_phases", "process"),
        "agent_load": med("agent_phases", "load"),
        "agent_probe_first_token": med("agent_phases", "first_token"),
        "agent_after_ready": med("agent_after_ready"),
        "direct_total": med("direct", "total"),
        "direct_process": med("direct", "process"),
        "direct_load": med("direct", "load"),
        "direct_first_token": med("direct", "first_token"),
        "ratio": med("ratio"),
    }
    ratio = summary["ratio"]
    return {
        "runs": runs,
        "median": summary,
        "goal": "ratio <= 1.5",
        "met": ratio is not None and ratio <= 1.5,
    }


# --- truth of the sizing engine -------------------------------------------------------------------


async def truth(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Each --truth model (GGUF:CONTEXT:SLOTS) loaded alone through the agent: the sizing engine's
    estimate against what the device says the engine holds (NVML's per-process memory on a GPU,
    else RSS) and against the device's used memory before and after the load."""
    specs = [spec.rsplit(":", 2) for spec in args.truth]
    models = []
    for number, (gguf, context, slots) in enumerate(specs):
        config = on_device(
            args, smol(f"truth-{number}", int(context), slots=int(slots), threads=args.threads)
        )
        config["gguf"] = gguf
        models.append(config)
    defaults = {"load_timeout": 300, "stop_timeout": 10, "memory_recovery": 10}
    rows: list[dict[str, Any]] = []
    with running_agent(
        folder / "truth",
        models,
        budget="64GiB",
        defaults=defaults,
        devices=devices(args, "64GiB"),
        llama_server=args.llama_server,
    ) as agent:
        async with client() as session:
            for config, (gguf, context, slots) in zip(models, specs, strict=True):
                name = config["name"]
                before = await _device_free(agent, session)
                outcome = await stream_chat(session, agent.url, name, max_tokens=args.max_tokens)
                if not outcome.ok:
                    raise SystemExit(f"{name} ({gguf}) failed: {outcome.status} {outcome.error}")
                after = await _device_free(agent, session)
                memory = (await agent.model(session, name))["memory"]
                measured = memory["process"]
                delta = before - after if before is not None and after is not None else None
                row = {
                    "model": Path(gguf).name,
                    "context": int(context),
                    "slots": int(slots),
                    "estimate": memory["estimate"],
                    "estimate_host": memory["estimate_host"],
                    "logged_buffers": memory["buffers"],
                    "process": measured,
                    "device_used_delta": delta,
                    "error_vs_process": (memory["estimate"] - measured) / measured if measured else None,
                    "error_vs_device_delta": (memory["estimate"] - delta) / delta if delta else None,
                    "basis": memory["estimate_basis"],
                }
                rows.append(row)
                _say(args, f"truth {row['model']} {context}x{slots}: {json.dumps(row)}")
                async with session.post(f"{agent.url}/agent/v1/models/{name}/unload") as reply:
                    await reply.read()
                await wait_state(agent, session, name, "stopped", within=60)
    errors = [
        abs(r["error_vs_process"] if r["error_vs_process"] is not None else r["error_vs_device_delta"])
        for r in rows
        if r["error_vs_process"] is not None or r["error_vs_device_delta"] is not None
    ]
    return {
        "rows": rows,
        "goal": "|estimate - measured| <= 10 % of measured for every model",
        "met": bool(errors) and max(errors) <= 0.10,
    }


async def _device_free(agent: Agent, session: aiohttp.ClientSession) -> int | None:
    """Free bytes of the device the models run on (gpu0 with --gpu, else host RAM)."""
    status = await agent.status(session)
    wanted = next((d for d in status["devices"] if d["gpu"] is not None), status["devices"][0])
    free = wanted.get("free")
    return int(free) if free is not None else None


# --- swapping ---------------------------------------------------------------------------------------


async def estimates(folder: Path, models: list[dict[str, Any]], defaults: dict[str, Any]) -> dict[str, int]:
    """Each model's estimated bytes, from an agent with room for them all (nothing loaded)."""
    with running_agent(folder, models, budget="16GiB", defaults=defaults) as agent:
        async with client() as session:
            status = await agent.status(session)
    return {m["name"]: int(m["memory"]["estimate"]) for m in status["models"]}


async def timed_request(
    agent: Agent, session: aiohttp.ClientSession, name: str, *, max_tokens: int
) -> Outcome:
    before = (await agent.model(session, name))["loads"]
    outcome = Outcome(model=name, sent=time.monotonic())
    await stream_chat(session, agent.url, name, max_tokens=max_tokens, outcome=outcome)
    after = (await agent.model(session, name))["loads"]
    outcome.waited_for_load = after > before
    return outcome


async def steady(
    agent: Agent,
    session: aiohttp.ClientSession,
    names: list[str],
    *,
    interval: float,
    until: float,
    max_tokens: int,
    pick: str = "cycle",
) -> list[asyncio.Task[Outcome]]:
    """Requests at one every `interval` seconds until `until`, open loop, cycling or random among names."""
    tasks: list[asyncio.Task[Outcome]] = []
    next_at = time.monotonic()
    number = 0
    while next_at < until:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        name = names[number % len(names)] if pick == "cycle" else random.choice(names)
        tasks.append(asyncio.create_task(timed_request(agent, session, name, max_tokens=max_tokens)))
        number += 1
        next_at += interval
    return tasks


async def swap(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    contexts = [args.context, args.context * 2, args.context * 4]
    models = [smol(f"swap{i}", c, slots=args.slots, threads=args.threads) for i, c in enumerate(contexts)]
    defaults = {"load_timeout": 120, "stop_timeout": 5, "ttl": -1}
    sizes = await estimates(folder / "estimates", models, defaults)
    ordered = sorted(sizes.values())
    fit = args.fit
    budget = sum(ordered[-fit:]) if fit < 3 else sum(ordered)
    budget += ordered[0] // 2 if fit < 3 else 0  # room for the `fit` largest, not for all three
    budget = budget // 1024 * 1024  # whole KiB: agent.yaml sizes carry a unit
    assert budget < sum(ordered), "the budget must be below the three models' sum"
    names = [m["name"] for m in models]
    seconds = args.minutes * 60
    with running_agent(folder / "swap", models, budget=f"{budget // 1024}KiB", defaults=defaults) as agent:
        async with client() as session:
            began = time.monotonic()
            tasks = await steady(
                agent,
                session,
                names,
                interval=args.interval,
                until=began + seconds,
                max_tokens=args.max_tokens,
                pick=args.pattern,
            )
            outcomes = list(await asyncio.gather(*tasks))
            status = await agent.status(session)
            evictions = eviction_counts(await agent.metrics(session))
        log = agent.log()
    engine_logs = "\n".join(m.get("log") and "\n".join(m["log"]) or "" for m in status["models"])
    eviction_lines = [line for line in log.splitlines() if "unloading (" in line]
    failed = [o for o in outcomes if not o.ok]
    loaded = [o.ttft for o in outcomes if o.ok and o.waited_for_load and o.ttft is not None]
    warm = [o.ttft for o in outcomes if o.ok and not o.waited_for_load and o.ttft is not None]
    oom = [line for line in (log + engine_logs).splitlines() if OOM.search(line)]
    result = {
        "estimates": sizes,
        "budget": budget,
        "sum": sum(ordered),
        "seconds": seconds,
        "interval": args.interval,
        "requests": len(outcomes),
        "failed": len(failed),
        "failures": [asdict(o) for o in failed[:10]],
        "out_of_memory_lines": oom[:10],
        "failed_models": [m["name"] for m in status["models"] if m["state"] == "failed"],
        "restarts": {m["name"]: m["restarts"] for m in status["models"]},
        "evictions_by_reason": evictions,
        "eviction_log_lines": len(eviction_lines),
        "eviction_log_sample": eviction_lines[:6],
        "loads": {m["name"]: m["loads"] for m in status["models"]},
        "ttft_after_load": {"n": len(loaded), "median": median(loaded), "p90": _p(loaded, 0.9)},
        "ttft_warm": {"n": len(warm), "median": median(warm), "p90": _p(warm, 0.9)},
    }
    after, before = median(loaded), median(warm)
    result["swap_adds"] = after - before if after is not None and before is not None else None
    result["met"] = {
        "no_failed_requests": not failed,
        "no_out_of_memory": not oom and not result["failed_models"] and not any(result["restarts"].values()),
        "every_eviction_logged": eviction_lines != [] and len(eviction_lines) >= sum(evictions.values()),
    }
    _say(args, f"swap: {json.dumps(result, default=str)[:2000]}")
    return result


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, int(q * len(ranked)))]


# --- chaos --------------------------------------------------------------------------------------------


@dataclass
class Kill:
    model: str
    pid: int
    at: float
    reserved_before: int
    model_reserved_before: int
    back_after: float = 0.0
    load: float = 0.0
    backoff: float = 0.0
    restart_number: int = 0
    reserved_after: int = 0
    model_reserved_after: int = 0
    notes: list[str] = field(default_factory=list)


async def chaos(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    models = [
        smol("chaos0", args.context, slots=args.slots, threads=args.threads),
        smol("chaos1", args.context * 2, slots=args.slots, threads=args.threads),
    ]
    names = [m["name"] for m in models]
    backoff = {"base": args.backoff_base, "max": args.backoff_max}
    defaults = {
        "load_timeout": 120,
        "stop_timeout": 5,
        "ttl": -1,
        "backoff": backoff,
        "max_restarts": args.kills + 5,
        "health_interval": 1,
    }
    from wavefleet.agent.config import Backoff

    delays = Backoff.model_validate(backoff)
    kills: list[Kill] = []
    with running_agent(folder / "chaos", models, budget="4GiB", defaults=defaults) as agent:
        async with client() as session:
            for name in names:
                async with session.post(f"{agent.url}/agent/v1/models/{name}/load", json={"wait": True}) as r:
                    await r.read()
            for name in names:
                await wait_state(agent, session, name, "ready", within=120)
            began = time.monotonic()
            stop = asyncio.Event()
            tasks: list[asyncio.Task[Outcome]] = []

            async def load_forever() -> None:
                number = 0
                next_at = time.monotonic()
                while not stop.is_set():
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                    name = names[number % len(names)]
                    outcome = Outcome(model=name, sent=time.monotonic())
                    tasks.append(
                        asyncio.create_task(
                            stream_chat(session, agent.url, name, max_tokens=args.max_tokens, outcome=outcome)
                        )
                    )
                    number += 1
                    next_at += args.interval

            driver = asyncio.create_task(load_forever())
            await asyncio.sleep(args.settle)
            for number in range(args.kills):
                name = random.choice(names)
                model = await wait_state(agent, session, name, "ready", within=120)
                children = engine_children(agent.process.pid)
                pid = int(model["pid"])
                kill = Kill(
                    model=name,
                    pid=pid,
                    at=0.0,
                    reserved_before=await agent.reserved(session),
                    model_reserved_before=int(model["memory"]["reserved"]),
                )
                if pid not in children:
                    kill.notes.append(
                        f"pid {pid} is not a llama-server child of the agent: {sorted(children)}"
                    )
                kill.restart_number = int(model["failures_in_row"]) + 1
                kill.backoff = delays.delay(kill.restart_number)
                kill.at = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                back = await wait_state(agent, session, name, "ready", within=120 + kill.backoff, not_pid=pid)
                kill.back_after = time.monotonic() - kill.at
                kill.load = float(back["cold_start"]["total"]) if back["cold_start"] else 0.0
                kill.model_reserved_after = int(back["memory"]["reserved"])
                kill.reserved_after = await agent.reserved(session)
                kills.append(kill)
                _say(args, f"chaos {number}: {asdict(kill)}")
                await asyncio.sleep(args.settle)
            stop.set()
            await driver
            outcomes = list(await asyncio.gather(*tasks))
            status = await agent.status(session)

    def started_before_kill(o: Outcome) -> bool:
        """In flight on an engine when it was killed: sent to its model before, not finished before."""
        return any(o.model == k.model and o.sent < k.at and (o.done or 0.0) >= k.at for k in kills)

    def kills_spanned(o: Outcome) -> int:
        return sum(1 for k in kills if o.model == k.model and o.sent < k.at <= (o.done or 0.0))

    inflight = [o for o in outcomes if started_before_kill(o)]
    fresh = [o for o in outcomes if not started_before_kill(o)]
    fresh_failed = [o for o in fresh if not o.ok]
    inflight_failed = [o for o in inflight if not o.ok]
    # slack for noticing the death (the engine's exit is awaited, so it is immediate) and the spawn
    late = [k for k in kills if k.back_after > k.backoff + k.load + args.slack]
    wrong_memory = [k for k in kills if k.reserved_after != k.reserved_before]
    result = {
        "seconds": time.monotonic() - began,
        "kills": [asdict(k) for k in kills],
        "requests": len(outcomes),
        "in_flight_at_a_kill": len(inflight),
        "in_flight_failed": len(inflight_failed),
        "in_flight_failed_with_first_token": sum(1 for o in inflight_failed if o.first is not None),
        "in_flight_failed_before_any_answer": sum(1 for o in inflight_failed if o.status != 200),
        "in_flight_failed_through_two_kills": sum(1 for o in inflight_failed if kills_spanned(o) >= 2),
        "in_flight_failed_before_any_answer_at_one_kill": sum(
            1 for o in inflight_failed if o.status != 200 and kills_spanned(o) == 1
        ),
        "not_started_at_a_kill": len(fresh),
        "not_started_failed": len(fresh_failed),
        "not_started_failures": [asdict(o) for o in fresh_failed[:10]],
        "in_flight_failures": [asdict(o) for o in inflight_failed],
        "back_after_median": median([k.back_after for k in kills]),
        "backoff_median": median([k.backoff for k in kills]),
        "load_median": median([k.load for k in kills]),
        "late": len(late),
        "memory_not_back": len(wrong_memory),
        "restarts": {m["name"]: m["restarts"] for m in status["models"]},
        "met": {
            "no_unstarted_request_lost": not fresh_failed,
            "each_engine_back_within_backoff": not late,
            "memory_accounting_back": not wrong_memory,
        },
    }
    return result


# --- main ---------------------------------------------------------------------------------------


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    found.add_argument(
        "which", choices=["cold", "swap", "chaos", "truth", "all"], help="the benchmark to run"
    )
    found.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    found.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    found.add_argument("--folder", type=Path, help="where configs and logs go (default: a temporary folder)")
    found.add_argument(
        "--context", type=int, default=512, help="tokens per slot of the smallest model (x2, x4)"
    )
    found.add_argument("--slots", type=int, default=1, help="slots per engine (llama-server -np)")
    found.add_argument("--threads", type=int, default=1, help="threads per engine")
    found.add_argument("--max-tokens", type=int, default=16, help="tokens per request")
    found.add_argument("--repeats", type=int, default=5, help="cold: cold starts of each kind")
    found.add_argument("--minutes", type=float, default=5.0, help="swap: how long requests run")
    found.add_argument("--interval", type=float, default=2.0, help="swap, chaos: seconds between requests")
    found.add_argument(
        "--pattern",
        choices=["random", "cycle"],
        default="random",
        help="swap: the next model at random (some requests find it loaded) or in turn (each one swaps)",
    )
    found.add_argument("--fit", type=int, default=2, choices=[1, 2], help="swap: models that fit at once")
    found.add_argument("--kills", type=int, default=10, help="chaos: SIGKILLs")
    found.add_argument("--settle", type=float, default=3.0, help="chaos: seconds of load between kills")
    found.add_argument("--backoff-base", type=float, default=1.0, help="chaos: the agent's backoff base (s)")
    found.add_argument("--backoff-max", type=float, default=8.0, help="chaos: the agent's backoff max (s)")
    found.add_argument(
        "--slack", type=float, default=1.0, help="chaos: seconds allowed beyond backoff + load"
    )
    found.add_argument("--seed", type=int, default=1, help="random choices (chaos victims)")
    found.add_argument("--gguf", type=Path, help="cold: this GGUF instead of the bundled model")
    found.add_argument("--gpu", type=int, help="cold, truth: run the engines on this NVML GPU index")
    found.add_argument("--llama-server", type=Path, help="the llama-server binary (default: the built one)")
    found.add_argument(
        "--truth",
        action="append",
        default=[],
        metavar="GGUF:CONTEXT:SLOTS",
        help="truth: a model to load alone and measure (repeat the option)",
    )
    return found


async def main(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    random.seed(args.seed)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    benchmarks = {"cold": cold, "swap": swap, "chaos": chaos, "truth": truth}
    for which in benchmarks:
        if args.which == which or (args.which == "all" and (which != "truth" or args.truth)):
            began = time.monotonic()
            results[which] = await benchmarks[which](args, folder)
            results[which]["wall_s"] = time.monotonic() - began
    results["machine"]["load_average_after"] = os.getloadavg()
    return results


if __name__ == "__main__":
    arguments = parser().parse_args()
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as scratch:
        where = arguments.folder or Path(scratch)
        found = asyncio.run(main(arguments, where))
    if arguments.json:
        print(json.dumps(found, indent=2, default=str))
    else:
        for part in ("cold", "swap", "chaos", "truth"):
            if part in found:
                shown = found[part].get("median", found[part])
                print(f"{part}: {json.dumps(shown, default=str)}")
                print(f"{part} goals met: {found[part].get('met')}")
