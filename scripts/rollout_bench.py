"""Measure `wave rollout` under live load: zero-downtime update, automatic rollback, crash mid-rollout.

    python scripts/rollout_bench.py good --out /tmp/rollout-good            # a full rollout under load
    python scripts/rollout_bench.py fail --retries on  --out /tmp/rb-fail   # green fails 20 % of requests
    python scripts/rollout_bench.py fail --retries off --out /tmp/rb-fail-off
    python scripts/rollout_bench.py slow --out /tmp/rb-slow                 # green 3x slower (1.5 s first byte)
    python scripts/rollout_bench.py crash --out /tmp/rb-crash               # SIGKILL the gateway in each phase once
    python scripts/rollout_bench.py swap --out /tmp/rb-swap                 # green fits only once blue is gone

Each run starts its own `wave agent` (the bundled SmolLM2 GGUF as blue `chat`, context 256, and
green `chat-v2`, context 512; for fail/slow green is FlakyOpenAIEngine behind the agent) and
`wave serve` with the rollout state in OUT/wave.db, on free loopback ports. The load is open loop
at --rate requests/s (default: half the capacity measured first, closed loop, for 10 s) of
streamed chats with max_tokens --tokens; TTFT is request sent to the first content chunk, as
`wave bench` defines it, and each request's version is the `model` its chunks name. The rollout
starts after --steady seconds of load and the load stops --after seconds after it ended.

Writes OUT/rollout.json (per request: wall time, TTFT, outcome, version; the split timeline;
the verdicts; the summary: failures, steady-state and during-rollout P95 TTFT and their ratio,
time from the first bad step to the rollback) and OUT/rollout.png (TTFT over time, and green's
share of traffic). `crash` reports, per phase killed in, what the restarted gateway did and
whether exactly one version serves the model afterwards. `swap` gives the agent a budget that
holds one version only: the gap in service shows as the longest TTFT during the rollout, against
green's cold start (the agent's phases, in `cold_starts`) plus blue's drain. Prints the summary as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
_WORDS = (
    "sea river mountain city forest desert island winter summer music bread garden train bridge "
    "library market harbour storm lantern glacier orchard violin clock compass meadow canyon"
).split()
TERMINAL = ("done", "rolled-back", "aborted")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    out = {**os.environ, "PYTHONPATH": path}
    for name in ("WAVE_DB", "WAVE_AGENT_SECRET", "WAVE_API_KEY"):
        out.pop(name, None)
    return out


def wave(*args: str, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "wavefleet", *args], env=env(), stdout=handle, stderr=handle
    )


async def wait_for(url: str, *, within: float, ok: Any = None) -> Any:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as reply:
                    if reply.status == 200:
                        body = await reply.json()
                        if ok is None or ok(body):
                            return body
            await asyncio.sleep(0.2)
    raise SystemExit(f"{url} not ready within {within} s")


@dataclass
class Request:
    sent: float  # wall clock
    ttft_ms: float | None
    ok: bool
    version: str
    error: str = ""


class Load:
    """Open-loop streamed chats for `chat` at `rate` per second, recorded per request."""

    def __init__(self, url: str, *, rate: float, tokens: int) -> None:
        self.url, self.rate, self.tokens = url, rate, tokens
        self.records: list[Request] = []
        self._stop = asyncio.Event()
        self._random = random.Random(7)

    async def one(self, session: aiohttp.ClientSession) -> Request:
        # a different prompt each time, so no request rides on the engine's cache of the last one
        topic = " ".join(self._random.sample(_WORDS, 6))
        body = {
            "model": "chat",
            "messages": [{"role": "user", "content": f"Write about {topic}."}],
            "max_tokens": self.tokens,
            "stream": True,
        }
        sent, first, version = time.time(), None, ""
        started = time.perf_counter()
        try:
            async with session.post(f"{self.url}/v1/chat/completions", json=body) as reply:
                if reply.status != 200:
                    return Request(
                        sent, None, False, "", f"HTTP {reply.status}: {(await reply.text())[:120]}"
                    )
                data = b""
                async for chunk in reply.content.iter_any():
                    data += chunk
                    if first is None and b'"content":"' in data.replace(b'"content": "', b'"content":"'):
                        first = time.perf_counter()
                text = data.decode(errors="replace")
                for line in text.splitlines():
                    if line.startswith("data: {") and not version:
                        version = json.loads(line[6:]).get("model", "")
                if '"error"' in text or "[DONE]" not in text:
                    return Request(sent, None, False, version, "in-band error or no [DONE]")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Request(sent, None, False, "", f"{type(exc).__name__}: {exc}")
        ttft = (first - started) * 1e3 if first is not None else None
        return Request(sent, ttft, True, version)

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks: set[asyncio.Task[None]] = set()
            next_at = time.monotonic()
            while not self._stop.is_set():

                async def record() -> None:
                    self.records.append(await self.one(session))

                task = asyncio.create_task(record())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                next_at += 1.0 / self.rate
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), max(0.0, next_at - time.monotonic()))
            if tasks:
                await asyncio.gather(*tasks)

    def stop(self) -> None:
        self._stop.set()


async def capacity(url: str, tokens: int, seconds: float = 10.0) -> float:
    """Requests per second one closed-loop client gets (the agent's entries have one slot)."""
    load = Load(url, rate=1, tokens=tokens)
    done, until = 0, time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            done += (await load.one(session)).ok
    return done / seconds


class Fleet:
    """The agent and the gateway of one run."""

    def __init__(self, out: Path, green: dict[str, Any], *, budget: str = "2GiB") -> None:
        self.out = out
        self.agent_port, self.port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        agent = {
            "name": "desk",
            "port": self.agent_port,
            "devices": {"cpu": {"budget": budget}},
            "models": [
                {"name": "chat", "gguf": "bundled:smollm2", "context": 256, "slots": 1, "threads": 1},
                {"name": "chat-v2", **green},
            ],
            "defaults": {"load_timeout": 120, "stop_timeout": 5},
        }
        (out / "agent.yaml").write_text(json.dumps(agent))
        gateway = {
            "agents": [{"name": "desk", "url": f"http://127.0.0.1:{self.agent_port}"}],
            "rollout": {"db": str(out / "wave.db")},
        }
        (out / "wave.yaml").write_text(json.dumps(gateway))
        self.agent: subprocess.Popen[bytes] | None = None
        self.gateway: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.agent = wave("agent", "--config", str(self.out / "agent.yaml"), log=self.out / "agent.log")
        await wait_for(f"http://127.0.0.1:{self.agent_port}/health", within=60)
        await self.start_gateway()

    async def start_gateway(self) -> None:
        self.gateway = wave(
            "serve",
            "--config",
            str(self.out / "wave.yaml"),
            "--port",
            str(self.port),
            log=self.out / "gateway.log",
        )
        await wait_for(f"{self.url}/admin/v1/rollouts", within=60)

    def kill_gateway(self) -> None:
        assert self.gateway is not None
        self.gateway.send_signal(signal.SIGKILL)
        self.gateway.wait(timeout=10)

    def stop(self) -> None:
        for process in (self.gateway, self.agent):
            if process is not None and process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=30)

    async def status(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/admin/v1/rollouts") as reply:
            found: dict[str, Any] = await reply.json()
            return found

    async def agent_models(self) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.agent_port}/agent/v1/status?log_lines=0"
        async with aiohttp.ClientSession() as session, session.get(url) as reply:
            models: list[dict[str, Any]] = (await reply.json())["models"]
            return models

    async def agent_states(self) -> dict[str, str]:
        return {m["name"]: m["state"] for m in await self.agent_models()}

    async def start_rollout(self, to: str, args: argparse.Namespace) -> str:
        body = {
            "model": "chat",
            "to": to,
            "canary": [int(s) for s in args.canary.split(",")],
            "bake_s": args.bake,
            "criteria": args.criteria,
            "retry_on_blue": args.retries == "on",
            "max_bake_s": args.max_bake,
            "actor": "rollout_bench",
        }
        if args.min_requests is not None:
            body["min_requests"] = args.min_requests
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/admin/v1/rollouts", json=body) as reply,
        ):
            answer = await reply.json()
            if reply.status != 201:
                raise SystemExit(f"the gateway refused the rollout: {answer}")
            return str(answer["id"])

    async def follow(
        self, rollout: str, timeline: list[dict[str, Any]], *, kill_in: str | None = None
    ) -> dict[str, Any]:
        """Poll the rollout every 0.1 s into `timeline` until it ended; with `kill_in`, SIGKILL the
        gateway the first time the rollout is seen in that phase, and start it again."""
        killed = False
        while True:
            try:
                status = await self.status()
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.1)
                continue
            active = status["active"]
            if active is not None and active["id"] == rollout:
                timeline.append(
                    {"t": time.time(), "green_weight": active["green_weight"], "phase": active["phase"]}
                )
                if kill_in is not None and not killed and active["phase"] == kill_in:
                    self.kill_gateway()
                    killed = True
                    timeline.append({"t": time.time(), "event": f"SIGKILL in {kill_in}"})
                    await self.start_gateway()
                    timeline.append({"t": time.time(), "event": "gateway back"})
                    continue
            ended = next((r for r in status["recent"] if r["id"] == rollout and r["phase"] in TERMINAL), None)
            if ended is not None:
                timeline.append(
                    {"t": time.time(), "green_weight": ended["green_weight"], "phase": ended["phase"]}
                )
                ended["killed"] = killed
                return dict(ended)
            await asyncio.sleep(0.1)


def p95(values: list[float]) -> float | None:
    return float(np.percentile(values, 95)) if values else None


def summarise(records: list[Request], began: float, ended: float) -> dict[str, Any]:
    steady = [r.ttft_ms for r in records if r.ok and r.ttft_ms is not None and r.sent < began]
    during = [r.ttft_ms for r in records if r.ok and r.ttft_ms is not None and began <= r.sent <= ended]
    base, mid = p95(steady), p95(during)
    return {
        "requests": len(records),
        "failed": sum(not r.ok for r in records),
        "failed_during_rollout": sum(not r.ok for r in records if began <= r.sent <= ended),
        "p95_ttft_ms_steady": base,
        "p95_ttft_ms_during": mid,
        "p95_ratio": mid / base if base and mid else None,
        "max_ttft_ms_during": max(during) if during else None,
        "rollout_s": ended - began,
        "versions": {v: sum(r.version == v for r in records) for v in sorted({r.version for r in records})},
    }


def plot(records: list[Request], timeline: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = min(r.sent for r in records)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for version, colour in (("chat", "tab:blue"), ("chat-v2", "tab:green")):
        xs = [r.sent - t0 for r in records if r.ok and r.version == version and r.ttft_ms is not None]
        ys = [r.ttft_ms for r in records if r.ok and r.version == version and r.ttft_ms is not None]
        ax.scatter(xs, ys, s=6, color=colour, label=f"TTFT {version}")
    failed = [r.sent - t0 for r in records if not r.ok]
    if failed:
        ax.scatter(failed, [0] * len(failed), marker="x", color="red", label="failed")
    ax.set_xlabel("seconds")
    ax.set_ylabel("TTFT (ms)")
    share = ax.twinx()
    points = [(p["t"] - t0, p["green_weight"]) for p in timeline if "green_weight" in p]
    if points:
        share.step(
            [x for x, _ in points], [y for _, y in points], where="post", color="black", label="green %"
        )
    share.set_ylabel("green's share (%)")
    share.set_ylim(-5, 105)
    for event in (p for p in timeline if "event" in p):
        ax.axvline(event["t"] - t0, color="red", linestyle=":")
    ax.legend(loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@contextlib.contextmanager
def flaky_green(variant: str) -> Iterator[dict[str, Any]]:
    if variant not in ("fail", "slow"):
        yield {"gguf": "bundled:smollm2", "context": 512, "slots": 1, "threads": 1}
        return
    sys.path.insert(0, str(ROOT / "src"))
    from wavefleet.gateway.backends.fake_servers import FlakyOpenAIEngine, serve_in_thread

    engine = (
        FlakyOpenAIEngine("chat-v2", fail_every=5)
        if variant == "fail"
        else FlakyOpenAIEngine("chat-v2", slow_s=1.5)
    )
    with serve_in_thread(engine.app()) as server:
        yield {"url": server.url}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with flaky_green(args.variant) as green:
        # swap: a budget that holds one entry (about 140 MiB each) but not two
        fleet = Fleet(out, green, budget="200MiB" if args.variant == "swap" else "2GiB")
        try:
            await fleet.start()
            rate = args.rate or (await capacity(fleet.url, args.tokens)) / 2
            load = Load(fleet.url, rate=rate, tokens=args.tokens)
            async with aiohttp.ClientSession() as session:
                await load.one(session)  # blue loaded before the steady state is measured
            runner = asyncio.create_task(load.run())
            await asyncio.sleep(args.steady)
            timeline: list[dict[str, Any]] = []
            rollouts = []
            began = time.time()
            kills: list[str | None] = (
                ["placing", "smoke", "canary", "promoting", "draining"] if args.variant == "crash" else [None]
            )
            served = "chat"
            for phase in kills:
                target = "chat-v2" if served == "chat" else "chat"
                rollout = await fleet.start_rollout(target, args)
                ended = await fleet.follow(rollout, timeline, kill_in=phase)
                states = await fleet.agent_states()
                loads = {m["name"]: m["cold_start"] for m in await fleet.agent_models()}
                served = (await fleet.status())["served"].get("chat", "desk/chat").split("/", 1)[1]
                rollouts.append(
                    {
                        "killed_in": phase,
                        "killed": ended["killed"],
                        "phase": ended["phase"],
                        "reason": ended["reason"],
                        "verdicts": ended["verdicts"],
                        "min_requests": ended["min_requests"],
                        "placement": ended["placement"],
                        "served_after": served,
                        "agent_states": states,
                        "cold_starts": loads,
                        "one_version_ready": sum(s == "ready" for s in states.values()) == 1,
                    }
                )
            finished = time.time()
            await asyncio.sleep(args.after)
            load.stop()
            await runner
        finally:
            fleet.stop()
    summary = {
        "variant": args.variant,
        "retries": args.retries,
        "rate": rate,
        **summarise(load.records, began, finished),
    }
    bad = [r for r in rollouts if r["verdicts"] and not r["verdicts"][-1]["passed"]]
    if bad:
        fail_at = next((p["t"] for p in timeline if p.get("phase") == "canary"), began)
        back_at = next(
            (p["t"] for p in timeline if p.get("phase") in ("rolling-back", "rolled-back")), finished
        )
        summary["first_canary_to_rollback_s"] = back_at - fail_at
        # the window the rollback is measured against: the first step's, complete when both its
        # bake and its min_requests green requests are in (at this rate and share)
        first = next(v for v in bad[0]["verdicts"] if v["step"].startswith("canary"))
        share = int(first["step"].split()[1].rstrip("%"))
        needed = bad[0]["min_requests"]
        summary["window"] = {
            "step": first["step"],
            "bake_s": args.bake,
            "min_requests": needed,
            "evidence_complete_s": max(args.bake, needed / (rate * share / 100)),
            "green_requests_at_verdict": first["green"].get("completed", 0) + first["green"].get("failed", 0),
            "rolled_back_in": bad[0]["verdicts"][-1]["step"],
        }
    summary["rollouts"] = rollouts
    (out / "rollout.json").write_text(
        json.dumps(
            {"summary": summary, "timeline": timeline, "requests": [asdict(r) for r in load.records]},
            indent=1,
        )
    )
    plot(
        load.records,
        timeline,
        out / "rollout.png",
        f"wave rollout: {args.variant}, retries {args.retries}, {rate:.2f} req/s",
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("variant", choices=["good", "fail", "slow", "crash", "swap"])
    parser.add_argument("--out", type=Path, default=None, help="folder for rollout.json and rollout.png")
    parser.add_argument(
        "--retries", choices=["on", "off"], default="on", help="retry green's failures on blue"
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="requests/s (default: half the measured capacity)"
    )
    parser.add_argument("--tokens", type=int, default=16, help="max_tokens per request")
    parser.add_argument("--canary", default="10,50,100")
    parser.add_argument("--bake", type=float, default=10.0, help="seconds a step's window lasts at least")
    parser.add_argument("--max-bake", type=float, default=600.0, help="seconds a step waits for its requests")
    parser.add_argument("--criteria", default="error_rate<0.02,ratio.p95_ttft_ms<2")
    parser.add_argument(
        "--min-requests", type=int, default=None, help="green requests per step (default: from the criteria)"
    )
    parser.add_argument("--steady", type=float, default=20.0, help="seconds of load before the rollout")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of load after it")
    args = parser.parse_args()
    args.out = args.out or Path(tempfile.mkdtemp(prefix=f"rollout-{args.variant}-"))
    summary = asyncio.run(run(args))
    print(json.dumps(summary, indent=1))
    print(f"written: {args.out / 'rollout.json'}, {args.out / 'rollout.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
