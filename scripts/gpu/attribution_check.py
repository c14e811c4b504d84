#!/usr/bin/env python3
"""Check energy attribution against a GPU's own energy counter (NVML), on a running llama-server.

    python3 scripts/gpu/attribution_check.py --url http://127.0.0.1:8090 --out OUT_DIR
    python3 scripts/gpu/attribution_check.py --replay OUT_DIR/attribution.json --out DIR
    python3 scripts/gpu/attribution_check.py --synthetic --out DIR

While a thread reads NVML's total energy counter (mJ) and power every 10 ms, it sends, `--repeats`
times: a long-prompt request alone (many prompt tokens, few generated), a short-prompt request
alone (few prompt tokens, many generated), then both at once, with idle gaps between. Each
request streams from llama-server's /completion, so the script sees its start, every streamed
token, its end and the engine's timings.

It saves the raw readings and the requests' timings in OUT_DIR/attribution.json, so a run can be
replayed (`--replay`), and evaluates every scheme of wavefleet.telemetry.replay side by side:
`spread` (tokens at an even pace over their phases: the scheme measured on 2026-12-03),
`streamed` and `pooled` (work placed where the stream shows it, priced at each phase's solo power;
pooled is the gateway's). Per scheme:

- closure: attributed + idle shares + unattributed against the counter's total (the goal: 2 %);
- per repeat, the long/short energy ratio when run together against the ratio when run alone
  (the goal: within 15 %).

It also reports the counter against the integral of NVML's power readings, and how often the
counter changes. `--synthetic` records a run of wavefleet.telemetry.gpu_model's synthetic GPU
instead of a real one.

Needs only the standard library, pynvml (for a live run) and this repository's src/ on
PYTHONPATH. Exits 1 if the gateway's scheme misses a goal.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wavefleet.telemetry.replay import RunRequest, evaluate, samples_of

GATEWAY_SCHEME = "pooled"

WORDS = (
    "river stone window garden paper silver morning engine quiet signal harbor lantern "
    "valley copper winter orange market thunder pocket meadow circle forest candle bridge "
    "planet mirror button ladder shadow feather rocket island velvet canyon spiral marble"
).split()


@dataclass
class Reading:
    t: float
    energy_mj: int
    power_mw: int | None


class Sampler(threading.Thread):
    """NVML's energy counter and power, every `period` seconds, until stopped."""

    def __init__(self, gpu: int, period: float) -> None:
        import pynvml

        super().__init__(daemon=True)
        self.nvml = pynvml
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(gpu)
        self.period = period
        self.readings: list[Reading] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            t = time.monotonic()
            energy = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            try:
                power: int | None = self.nvml.nvmlDeviceGetPowerUsage(self.handle)
            except self.nvml.NVMLError:
                power = None
            self.readings.append(Reading(t, energy, power))
            self.stopped.wait(self.period)


@dataclass
class Done:
    id: str
    kind: str
    repeat: int
    start: float
    first_token: float | None
    end: float
    prompt_tokens: int
    completion_tokens: int
    prompt_ms: float
    prompt_per_second: float
    predicted_per_second: float
    token_times: list[float]
    first_content: float | None


def complete(url: str, prompt: str, n_predict: int, rid: str, kind: str, repeat: int) -> Done:
    body = json.dumps(
        {
            "prompt": prompt,
            "n_predict": n_predict,
            "stream": True,
            "cache_prompt": False,
            "ignore_eos": True,
            "temperature": 0,
        }
    ).encode()
    request = urllib.request.Request(
        f"{url}/completion", data=body, headers={"Content-Type": "application/json"}
    )
    start = time.monotonic()
    first_content = None
    times: list[float] = []
    timings: dict[str, float] = {}
    with urllib.request.urlopen(request, timeout=600) as answer:
        for raw in answer:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            now = time.monotonic()
            event = json.loads(line[5:])
            if event.get("stop"):
                timings = event.get("timings", {})
                continue
            times.append(now)  # a token (its text may be empty: part of a character)
            if first_content is None and event.get("content"):
                first_content = now
    end = time.monotonic()
    return Done(
        id=rid,
        kind=kind,
        repeat=repeat,
        start=start,
        first_token=times[0] if times else None,
        end=end,
        prompt_tokens=int(timings.get("prompt_n", 0)),
        completion_tokens=int(timings.get("predicted_n", 0)),
        prompt_ms=float(timings.get("prompt_ms", 0.0)),
        prompt_per_second=float(timings.get("prompt_per_second", 0.0)),
        predicted_per_second=float(timings.get("predicted_per_second", 0.0)),
        token_times=times,
        first_content=first_content,
    )


def together(calls: list[tuple[str, int, str, str, int]], url: str) -> list[Done]:
    results: list[Done] = []
    threads = [
        threading.Thread(target=lambda c=c: results.append(complete(url, c[0], c[1], c[2], c[3], c[4])))
        for c in calls
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def record(args: argparse.Namespace) -> dict[str, Any]:
    """Serve the run on the GPU and record the counter's readings and the requests."""
    import pynvml

    rng = random.Random(1)
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(args.gpu)
    name = pynvml.nvmlDeviceGetName(handle)
    driver = pynvml.nvmlSystemGetDriverVersion()
    complete(args.url, "warm up " * 50, 32, "warmup", "warmup", -1)  # kernels loaded, graphs built

    sampler = Sampler(args.gpu, args.period)
    sampler.start()
    time.sleep(args.idle)  # idle before the first request: the idle draw
    done: list[Done] = []
    for r in range(args.repeats):
        long_prompt = " ".join(rng.choice(WORDS) for _ in range(args.long_words))
        short_prompt = " ".join(rng.choice(WORDS) for _ in range(args.short_words))
        done.append(complete(args.url, long_prompt, args.long_predict, f"long-alone-{r}", "long-alone", r))
        time.sleep(args.gap)
        done.append(
            complete(args.url, short_prompt, args.short_predict, f"short-alone-{r}", "short-alone", r)
        )
        time.sleep(args.gap)
        long_prompt = " ".join(rng.choice(WORDS) for _ in range(args.long_words))
        short_prompt = " ".join(rng.choice(WORDS) for _ in range(args.short_words))
        done += together(
            [
                (short_prompt, args.short_predict, f"short-together-{r}", "short-together", r),
                (long_prompt, args.long_predict, f"long-together-{r}", "long-together", r),
            ],
            args.url,
        )
        time.sleep(args.gap)
    sampler.stopped.set()
    sampler.join()
    pynvml.nvmlShutdown()
    return {
        "gpu": name if isinstance(name, str) else name.decode(),
        "driver": driver if isinstance(driver, str) else driver.decode(),
        "readings": [[x.t, x.energy_mj, x.power_mw] for x in sampler.readings],
        "requests": [asdict(d) for d in done],
    }


def report(run: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The run, its counter's figures and every scheme's closure and fairness on it."""
    readings = run["readings"]
    requests = [RunRequest.from_json(r) for r in run["requests"]]
    samples = samples_of(readings)
    power = [(r[0], r[2] / 1000) for r in readings if r[2] is not None]
    power_j = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(power, power[1:], strict=False))
    changes = [b[0] for a, b in zip(readings, readings[1:], strict=False) if b[1] != a[1]]
    update_ms = (
        statistics.median(b - a for a, b in zip(changes, changes[1:], strict=False)) * 1000
        if len(changes) > 2
        else None
    )
    evaluation = evaluate(readings, requests)
    return {
        **{k: v for k, v in run.items() if k not in ("readings", "requests")},
        "settings": settings,
        "samples": len(samples),
        "counter_update_ms_median": update_ms,
        "counter_total_j": evaluation["counter_total_j"],
        "power_integral_j": power_j,
        "idle_w": evaluation["idle_w"],
        "gateway_scheme": GATEWAY_SCHEME,
        "results": evaluation["schemes"],
        "goals": evaluation["goals"],
        "readings": readings,
        "requests": run["requests"],
    }


def summary(result: dict[str, Any]) -> str:
    update = result["counter_update_ms_median"]
    lines = [
        f"{result['gpu']} ({result.get('driver', '-')}): {result['samples']} counter samples, "
        f"counter changes every {update if update is not None else float('nan'):.0f} ms, "
        f"idle {result['idle_w']:.1f} W",
        f"counter {result['counter_total_j']:.1f} J, power integral {result['power_integral_j']:.1f} J",
    ]
    for name, r in result["results"].items():
        worst = r["worst_deviation"]
        lines.append(
            f"\n{name}: {r['summary']}\n  weights: {r['weights']['basis']}\n"
            f"  closure error {r['closure_error']:.2e}; worst deviation "
            f"{worst if worst is not None else float('nan'):.1%}"
        )
        for row in r["repeats"]:
            lines.append(
                f"  repeat {row['repeat']}: alone {row['long_alone_j']:.1f} J / {row['short_alone_j']:.1f} J"
                f" = {row['ratio_alone']:.3f}; together {row['long_together_j']:.1f} J / "
                f"{row['short_together_j']:.1f} J = {row['ratio_together']:.3f}; deviation {row['deviation']:+.1%}"
            )
    lines.append(f"\ngoals: {json.dumps(result['goals'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8090")
    parser.add_argument("--out", type=Path, required=True)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--replay", type=Path, help="evaluate a saved attribution.json instead of running")
    source.add_argument("--synthetic", action="store_true", help="record wavefleet.telemetry.gpu_model's GPU")
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-words", type=int, default=12000, help="words in the long prompt")
    parser.add_argument("--long-predict", type=int, default=16)
    parser.add_argument("--short-words", type=int, default=20)
    parser.add_argument("--short-predict", type=int, default=768)
    parser.add_argument("--gap", type=float, default=2.0, help="idle seconds between runs")
    parser.add_argument("--period", type=float, default=0.01, help="NVML sampling period, s")
    parser.add_argument("--idle", type=float, default=4.0, help="idle seconds before the first request")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = vars(args) | {"out": str(args.out), "replay": str(args.replay) if args.replay else None}
    if args.replay is not None:
        run = json.loads(args.replay.read_text())
        if "readings" not in run:
            raise SystemExit(
                f"{args.replay} holds no raw readings: only runs recorded by this script since they are saved can be replayed"
            )
        settings = run.get("settings", {}) | {"replay": str(args.replay)}
    elif args.synthetic:
        from wavefleet.telemetry.gpu_model import GpuModel

        # the H200's quirks: lone requests taken up late, the GPU above idle meanwhile
        run = GpuModel(pickup_w=115).check_run(repeats=args.repeats, gap_s=args.gap, pickups=(0.05, 1.1, 0.9))
    else:
        run = record(args)
    result = report(run, settings)
    (args.out / "attribution.json").write_text(json.dumps(result, indent=1) + "\n")
    print(summary(result))
    goals = result["goals"][GATEWAY_SCHEME]
    return 0 if goals["closure_within_2pct"] and goals["ratio_within_15pct"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
