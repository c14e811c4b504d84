"""Wave against least-loaded with two REAL llama.cpp engines of different speed on this machine.

    PYTHONPATH=src python scripts/compare_real_llamacpp.py [--reps 3] [--out docs/data/routing/real_llamacpp.json]

Two llama.cpp engines (`llama-server` with the bundled SmolLM2-135M-Instruct Q4_1, one slot
each) run side by side: one with 2 threads and batch 512,
one with 1 thread and batch 64. Which is faster depends on what else loads the 2 cores (2
threads contend with everything else); each is timed alone first. Neither has a profile in the
gateway config: wave starts from its assumed CPU profile for both and must learn the difference. The gateway (in this process) and
the load generator share the machine with the engines and with whatever else runs here, so the
policies run interleaved (rate by rate, repetition by repetition, the order alternating) and
the figures are medians over repetitions. One gateway per policy stays up throughout, as in use:
wave keeps what it learned, from a warm-up of 12 requests on (the same for both). Goodput counts requests with TTFT <= 1 s and
TPOT <= 100 ms (real time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from wavefleet.agent.process import free_port
from wavefleet.bench import LoadSpec, Slo, SyntheticWorkload, Target, run_load_async, summarize
from wavefleet.engines.llama_server import LlamaServerArgs, find_llama_server
from wavefleet.gateway.app import create_app
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.monitor.polling import PollingMonitor
from wavefleet.models.bundled import bundled_model_path

POLICIES = ["least-loaded", "wave"]
SLO = Slo(ttft_ms=1000, tpot_ms=100)
MODEL = "smollm2"


class Engine:
    """One llama-server with one slot, started and stopped by this script."""

    def __init__(self, *, threads: int, batch: int) -> None:
        self.threads, self.batch = threads, batch
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        port = free_port()
        args = LlamaServerArgs(
            model_path=bundled_model_path(), alias=MODEL, port=port, context=2048, parallel=1,
            threads=self.threads, extra=("--batch-size", str(self.batch), "--ubatch-size", str(self.batch)),
        )  # fmt: skip
        self._process = await asyncio.create_subprocess_exec(
            *args.command(find_llama_server()),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                if self._process.returncode is not None:
                    raise RuntimeError(f"llama-server exited with {self._process.returncode}")
                try:
                    async with session.get(self.url + "/health") as answer:
                        if answer.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("llama-server did not become ready in 60 s")

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await asyncio.wait_for(self._process.wait(), 10)


async def probe(url: str, requests: int) -> dict[str, float]:
    """Median TTFT and TPOT of one engine alone, one request at a time."""
    result = await run_load_async(
        Target(url + "/v1", MODEL), SyntheticWorkload(input_len=64, output_len=32, seed=7),
        LoadSpec(concurrency=1, num_requests=requests),
    )  # fmt: skip
    flat = summarize(result.records, result.duration_s).flat()
    return {"median_ttft_ms": flat["median_ttft_ms"], "median_tpot_ms": flat["median_tpot_ms"]}


class Gateway:
    """One gateway per policy, up for the whole experiment (wave keeps what it learned, as in use)."""

    def __init__(self, urls: dict[str, str], policy: str) -> None:
        self.policy = policy
        self.config = GatewayConfig.model_validate(
            {
                "policy": policy,
                "backends": [{"name": n, "url": u, "kind": "llamacpp", "models": [MODEL], "gpu": False} for n, u in urls.items()],
                "poll_interval_s": 1.0,
                "retries": 0,
            }
        )  # fmt: skip
        self.url = ""

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        monitor = PollingMonitor(self.config.backends, self.session, interval_s=self.config.poll_interval_s)
        self.runner = web.AppRunner(
            create_app(self.config, monitor, api_keys=[]), access_log=None, handler_cancellation=True
        )
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def decisions(self) -> dict[str, float]:
        async with self.session.get(self.url + "/metrics") as answer:
            metrics = await answer.text()
        return {
            line.split('backend="')[1].split('"')[0] + ":" + line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("wave_routing_decisions_total{")
        }  # fmt: skip

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.session.close()


async def one_run(gateway: Gateway, rate: float, requests: int, seed: int) -> dict[str, Any]:
    before = await gateway.decisions()
    workload = SyntheticWorkload(input_len=64, output_len=32, seed=seed)
    result = await run_load_async(
        Target(gateway.url + "/v1", MODEL), workload, LoadSpec(rate=rate, num_requests=requests, seed=seed)
    )
    after = await gateway.decisions()
    flat = summarize(result.records, result.duration_s, SLO).flat()
    return {
        "policy": gateway.policy,
        "rate": rate,
        "goodput": flat.get("goodput_rps", 0.0),
        "good_fraction": flat.get("good_fraction", 0.0),
        "p95_ttft_s": flat["p95_ttft_ms"] / 1000,
        "failed": flat["failed"],
        "decisions": {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)},
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    engines = {
        "threads-2": Engine(threads=2, batch=512),
        "threads-1": Engine(threads=1, batch=64),
    }
    for engine in engines.values():
        await engine.start()
    urls = {name: engine.url for name, engine in engines.items()}
    gateways = {policy: Gateway(urls, policy) for policy in POLICIES}
    record: dict[str, Any] = {
        "what": __doc__.split("\n\n")[0] if __doc__ else "",
        "slo": {"ttft_s": 1.0, "tpot_s": 0.1},
        "engines": {"threads-2": "2 threads, batch 512", "threads-1": "1 thread, batch 64"},
        "machine": f"{os.cpu_count()} cores, shared with other work",
        "runs": [],
    }
    try:
        record["alone"] = {name: await probe(url, 8) for name, url in urls.items()}
        print("alone:", record["alone"], flush=True)
        for gateway in gateways.values():
            await gateway.start()
            warm = await run_load_async(
                Target(gateway.url + "/v1", MODEL), SyntheticWorkload(input_len=64, output_len=32, seed=99),
                LoadSpec(concurrency=2, num_requests=args.warmup),
            )  # fmt: skip
            print(f"warm-up through {gateway.policy}: {sum(r.ok for r in warm.records)} ok", flush=True)
        for rep in range(args.reps):
            for rate in args.rates:
                order = POLICIES if rep % 2 == 0 else POLICIES[::-1]
                for policy in order:
                    # fresh prompts per (repetition, rate), the same for both policies: repeated prompts would
                    # look cached to the prefix index while a one-slot engine keeps only its last one
                    row = await one_run(
                        gateways[policy], rate, args.requests, seed=rep * 1000 + round(rate * 100)
                    )
                    row["rep"] = rep
                    record["runs"].append(row)
                    print(f"rep {rep} rate {rate:4.2f}/s {policy:13s} goodput {row['goodput']:.2f}/s "
                          f"good {row['good_fraction']:.0%} p95 TTFT {row['p95_ttft_s']:.2f}s {row['decisions']}", flush=True)  # fmt: skip
    finally:
        for gateway in gateways.values():
            if gateway.url:
                await gateway.stop()
        for engine in engines.values():
            await engine.stop()
    medians = {}
    for policy in POLICIES:
        for rate in args.rates:
            rows = [r for r in record["runs"] if r["policy"] == policy and r["rate"] == rate]
            medians[f"{policy}@{rate:g}"] = {
                "median_goodput": statistics.median(r["goodput"] for r in rows),
                "median_p95_ttft_s": statistics.median(r["p95_ttft_s"] for r in rows),
            }
    record["medians"] = medians
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 1.0, 2.0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--warmup", type=int, default=12, help="requests through each gateway before measuring"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/data/routing/real_llamacpp.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    record = asyncio.run(main_async(args))
    record["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    for key, value in record["medians"].items():
        print(
            f"{key:22s} goodput {value['median_goodput']:.2f}/s  p95 TTFT {value['median_p95_ttft_s']:.2f}s"
        )


if __name__ == "__main__":
    main()
