"""Measure what `wave up`'s gateway costs a client: tokens/s direct to the engine vs through the gateway.

    python scripts/measure_up_overhead.py --rounds 8 --max-tokens 128 [--threads 1]

Starts `wave up --port 0` as a subprocess, then sends the same prompts (greedy sampling)
alternately straight to the embedded engine and through the gateway, flipping which path goes
first each round. Each prompt starts with a request number, so no request reuses the previous
one's prompt from the engine's prefix cache (that would make whichever path goes second look
faster). Each request streams with the official openai client. Per path it reports medians of:

    decode tok/s  = (completion_tokens - 1) / (last token time - first token time)
    engine tok/s  = the engine's own `timings.predicted_per_second` for that request (its clock)
    e2e tok/s     = completion_tokens / (last token time - request start)
    TTFT          = first content token time - request start

completion_tokens comes from the stream's `usage`. The gateway/direct ratio is the figure of
docs/measurements/2026-11-27-up-overhead.md. Timings on a shared machine are noisy: read the
ratio, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from openai import OpenAI

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator works to a ten-year-old.",
    "List ten ideas for a weekend project with a Raspberry Pi, one sentence each.",
    "Describe the water cycle in detail.",
]


@dataclass(frozen=True)
class Sample:
    path: str
    tokens: int
    ttft_s: float
    decode_tps: float
    e2e_tps: float
    engine_tps: float


def start_up(threads: int | None) -> tuple[subprocess.Popen[str], str, str, str]:
    args = [sys.executable, "-m", "wavefleet", "up", "--port", "0"]
    if threads:
        args += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    banner = ""
    while "Ctrl-C stops" not in banner:
        line = process.stdout.readline()
        if not line:
            raise SystemExit(f"wave up ended early:\n{banner}")
        banner += line
    gateway = re.search(r"URL:\s+(\S+)", banner)
    key = re.search(r"API key:\s+(\S+)", banner)
    direct = re.search(r"direct:\s+(\S+)", banner)
    assert gateway and key and direct, banner
    return process, gateway.group(1), key.group(1), direct.group(1)


def one(client: OpenAI, path: str, model: str, prompt: str, max_tokens: int) -> Sample:
    started = time.perf_counter()
    first = last = 0.0
    usage = None
    engine_tps = float("nan")
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        timings = (chunk.model_extra or {}).get("timings")
        if isinstance(timings, dict) and "predicted_per_second" in timings:
            engine_tps = float(timings["predicted_per_second"])
        if any(c.delta.content for c in chunk.choices):
            last = time.perf_counter()
            first = first or last
    assert usage is not None and first > 0
    tokens = usage.completion_tokens
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
    return Sample(path, tokens, first - started, decode, tokens / (last - started), engine_tps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="engine threads [default: wave up's]")
    parser.add_argument("--json", type=Path, default=None, help="also write every sample here")
    args = parser.parse_args()

    process, gateway_url, key, direct_url = start_up(args.threads)
    try:
        clients = {
            "direct": OpenAI(base_url=direct_url, api_key="unused", max_retries=0, timeout=120),
            "gateway": OpenAI(base_url=gateway_url, api_key=key, max_retries=0, timeout=120),
        }
        model = clients["gateway"].models.list().data[0].id
        for path in clients:  # warm both paths (connections, engine caches)
            one(clients[path], path, model, PROMPTS[0], 16)
        samples: list[Sample] = []
        for round_index in range(args.rounds):
            order = ["direct", "gateway"] if round_index % 2 == 0 else ["gateway", "direct"]
            for prompt in PROMPTS:
                for path in order:
                    numbered = f"Request {len(samples) + 1}. {prompt}"
                    samples.append(one(clients[path], path, model, numbered, args.max_tokens))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)

    rows = {}
    for path in ("direct", "gateway"):
        mine = [s for s in samples if s.path == path]
        rows[path] = {
            "n": len(mine),
            "tokens": statistics.median(s.tokens for s in mine),
            "ttft_ms": statistics.median(s.ttft_s for s in mine) * 1000,
            "decode_tps": statistics.median(s.decode_tps for s in mine),
            "e2e_tps": statistics.median(s.e2e_tps for s in mine),
            "engine_tps": statistics.median(s.engine_tps for s in mine),
        }
    d, g = rows["direct"], rows["gateway"]
    print(
        f"model {model}, {args.rounds} rounds x {len(PROMPTS)} prompts, max_tokens {args.max_tokens}, streaming\n"
    )
    print(
        "| path | requests | median completion tokens | median TTFT ms | median decode tok/s (client) "
        "| median e2e tok/s (client) | median engine-reported tok/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for path, r in rows.items():
        print(
            f"| {path} | {r['n']} | {r['tokens']:.0f} | {r['ttft_ms']:.1f} | {r['decode_tps']:.1f} "
            f"| {r['e2e_tps']:.1f} | {r['engine_tps']:.1f} |"
        )
    print(
        f"| gateway / direct | | | {g['ttft_ms'] / d['ttft_ms']:.3f} | {g['decode_tps'] / d['decode_tps']:.3f} "
        f"| {g['e2e_tps'] / d['e2e_tps']:.3f} | {g['engine_tps'] / d['engine_tps']:.3f} |"
    )
    print(
        f"\nclient decode tok/s through the gateway / engine-reported tok/s of the same requests: "
        f"{g['decode_tps'] / g['engine_tps']:.3f} (direct: {d['decode_tps'] / d['engine_tps']:.3f})"
    )
    # Each prompt ran on both paths back to back: the ratio within a pair cancels most of the
    # machine's load swings, so its median is the steadier figure.
    print("\nmedian of per-pair ratios gateway/direct (interquartile range):")
    for key in ("decode_tps", "e2e_tps", "engine_tps"):
        ratios = []
        for first, second in zip(samples[0::2], samples[1::2], strict=True):
            gateway, direct = (first, second) if first.path == "gateway" else (second, first)
            ratios.append(getattr(gateway, key) / getattr(direct, key))
        low, _, high = statistics.quantiles(ratios, n=4)
        print(f"  {key}: {statistics.median(ratios):.3f} ({low:.3f}-{high:.3f}), {len(ratios)} pairs")
    if args.json:
        args.json.write_text(json.dumps([s.__dict__ for s in samples], indent=1))


if __name__ == "__main__":
    main()
