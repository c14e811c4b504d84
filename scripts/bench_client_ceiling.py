#!/usr/bin/env python3
"""How many short requests/s one `wave bench` process sustains against a static nginx upstream.

nginx answers every chat completion with a fixed JSON body (port "json") or a fixed 64-chunk
SSE stream (port "stream"): the static upstream of scripts/gateway_overhead.py, pinned to CPU 0,
with the client on CPU 1. The fastest possible backend makes the client the bottleneck.
Rounds are interleaved; medians are reported. With --aiohttp, an aiohttp client (uvloop,
unlimited connector) doing the same closed loop is measured side by side, for comparison.

    python scripts/bench_client_ceiling.py --concurrency 32,64 --duration 10 --rounds 3 --aiohttp
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from gateway_overhead import Nginx, free_port, pinned, upstream_servers  # beside this script


def run_wave(port: int, concurrency: int, duration: float, out: Path) -> dict[str, float]:
    argv = [
        sys.executable,
        "-m",
        "wavefleet",
        "bench",
        "--url",
        f"http://127.0.0.1:{port}/v1",
        "--model",
        "bench",
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--input-len",
        "8",
        "--output-len",
        "16",
        "--no-progress",
        "--out",
        str(out),
    ]
    subprocess.run(pinned(1, argv), check=True, capture_output=True, text=True)
    level = json.loads((out / "bench.json").read_text())["levels"][0]["summary"]
    return {
        "rps": level["request_throughput"],
        "failed": level["failed"],
        "p50_ttft_ms": level["stats"]["ttft"]["median"],
    }


AIOHTTP_CLIENT = r"""
import asyncio, json, sys, time, aiohttp, uvloop
port, concurrency, duration = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
body = {"model": "bench", "messages": [{"role": "user", "content": "a b c d e f g h"}], "max_tokens": 16,
        "stream": True, "stream_options": {"include_usage": True}}
async def main():
    done = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        async def worker():
            nonlocal done
            while time.perf_counter() - start < duration:
                async with session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as reply:
                    async for _line in reply.content:  # line by line, as vLLM's bench reads SSE
                        pass
                done += 1
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        print(json.dumps({"rps": done / (time.perf_counter() - start)}))
uvloop.run(main())
"""


def run_aiohttp(port: int, concurrency: int, duration: float) -> dict[str, float]:
    argv = [sys.executable, "-c", AIOHTTP_CLIENT, str(port), str(concurrency), str(duration)]
    out = subprocess.run(pinned(1, argv), check=True, capture_output=True, text=True)
    return {"rps": json.loads(out.stdout)["rps"], "failed": 0, "p50_ttft_ms": float("nan")}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="32,64")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bodies", default="json,stream")
    parser.add_argument("--aiohttp", action="store_true", help="also measure a plain aiohttp client")
    args = parser.parse_args()
    if not shutil.which("nginx"):
        raise SystemExit("nginx is missing: install the Debian package 'nginx'")
    work = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    work.chmod(0o755)  # nginx's workers read the static stream from here
    ports = {"json": free_port(), "stream": free_port()}
    servers = upstream_servers(work, ports["json"], ports["stream"])
    upstream = Nginx.start(work, "upstream", servers, 0, list(ports.values()))
    cells: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    try:
        for _ in range(args.rounds):
            for body in args.bodies.split(","):
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    result = run_wave(ports[body], concurrency, args.duration, work / "out")
                    cells.setdefault(("wave", body, concurrency), []).append(result)
                    if args.aiohttp:
                        result = run_aiohttp(ports[body], concurrency, args.duration)
                        cells.setdefault(("aiohttp", body, concurrency), []).append(result)
    finally:
        upstream.stop()
    print(f"{'client':8} {'body':6} {'conc':>4} {'req/s (median)':>15} {'runs':>30} {'failed':>6}")
    for (client, body, concurrency), runs in cells.items():
        rps = [r["rps"] for r in runs]
        print(
            f"{client:8} {body:6} {concurrency:>4} {statistics.median(rps):>15.0f} "
            f"{' '.join(f'{x:.0f}' for x in rps):>30} {sum(r['failed'] for r in runs):>6.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
