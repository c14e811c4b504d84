#!/usr/bin/env python3
"""Check energy attribution against a GPU's own energy counter (NVML), on a running llama-server.

    python3 scripts/gpu/attribution_check.py --url http://127.0.0.1:8090 --out OUT_DIR

While a thread reads NVML's total energy counter (mJ) and power every 10 ms, it sends, `--repeats`
times: a long-prompt request alone (many prompt tokens, few generated), a short-prompt request
alone (few prompt tokens, many generated), then both at once, with idle gaps between. Each
request streams from llama-server's /completion, so the script sees its start, its first token,
its end and the engine's timings.

It then attributes the counter's energy to the requests (wavefleet.telemetry.attribution) with
two choices of token weights: the engine's timings of the solo runs (device time per token) and
the joules per token measured in the solo runs. It reports:

- closure: attributed + idle shares + unattributed against the counter's total (the goal: 2 %);
- per repeat, the long/short energy ratio when run together against the ratio when run alone
  (the goal: within 15 %);
- the counter against the integral of NVML's power readings, and how often the counter changes.

Needs only the standard library, pynvml and this repository's src/ on PYTHONPATH. Writes
OUT_DIR/attribution.json and prints a summary; exits 1 if a goal is missed.
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

import pynvml

from wavefleet.telemetry.attribution import (
    EQUAL_WEIGHTS,
    Attribution,
    EnergySample,
    RequestSpan,
    TokenWeights,
    attribute,
    idle_power,
)
from wavefleet.telemetry.counter import EnergyTotal

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
        super().__init__(daemon=True)
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(gpu)
        self.period = period
        self.readings: list[Reading] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            t = time.monotonic()
            energy = pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            try:
                power: int | None = pynvml.nvmlDeviceGetPowerUsage(self.handle)
            except pynvml.NVMLError:
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

    def span(self) -> RequestSpan:
        return RequestSpan(
            id=self.id,
            start=self.start,
            end=self.end,
            first_token=self.first_token,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            prefill_s=self.prompt_ms / 1000,
        )


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
    first = None
    timings: dict[str, float] = {}
    with urllib.request.urlopen(request, timeout=600) as answer:
        for raw in answer:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if first is None and event.get("content"):
                first = time.monotonic()
            if event.get("stop"):
                timings = event.get("timings", {})
    end = time.monotonic()
    return Done(
        id=rid,
        kind=kind,
        repeat=repeat,
        start=start,
        first_token=first,
        end=end,
        prompt_tokens=int(timings.get("prompt_n", 0)),
        completion_tokens=int(timings.get("predicted_n", 0)),
        prompt_ms=float(timings.get("prompt_ms", 0.0)),
        prompt_per_second=float(timings.get("prompt_per_second", 0.0)),
        predicted_per_second=float(timings.get("predicted_per_second", 0.0)),
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


def ratios(result: Attribution, done: list[Done], repeats: int) -> list[dict[str, float]]:
    out = []
    for r in range(repeats):
        energy = {d.kind: result.requests[d.id].energy_j for d in done if d.repeat == r}
        alone = energy["long-alone"] / energy["short-alone"]
        both = energy["long-together"] / energy["short-together"]
        out.append(
            {
                "repeat": r,
                "long_alone_j": energy["long-alone"],
                "short_alone_j": energy["short-alone"],
                "long_together_j": energy["long-together"],
                "short_together_j": energy["short-together"],
                "ratio_alone": alone,
                "ratio_together": both,
                "deviation": both / alone - 1,
            }
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8090")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-words", type=int, default=12000, help="words in the long prompt")
    parser.add_argument("--long-predict", type=int, default=16)
    parser.add_argument("--short-words", type=int, default=20)
    parser.add_argument("--short-predict", type=int, default=768)
    parser.add_argument("--gap", type=float, default=2.0, help="idle seconds between runs")
    parser.add_argument("--period", type=float, default=0.01, help="NVML sampling period, s")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rng = random.Random(1)
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(args.gpu)
    name = pynvml.nvmlDeviceGetName(handle)
    driver = pynvml.nvmlSystemGetDriverVersion()
    complete(args.url, "warm up " * 50, 32, "warmup", "warmup", -1)  # kernels loaded, graphs built

    sampler = Sampler(args.gpu, args.period)
    sampler.start()
    time.sleep(4)  # idle before the first request: the idle draw
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

    total = EnergyTotal(scale=1e-3)
    samples: list[EnergySample] = []
    for reading in sampler.readings:
        joules = total.update(reading.energy_mj)
        if samples and reading.t <= samples[-1].t:
            continue
        samples.append(EnergySample(reading.t, joules))
    spans = [d.span() for d in done]
    idle_w = idle_power(samples, spans) or 0.0

    solo = attribute(
        samples, [d.span() for d in done if d.kind.endswith("alone")], weights=EQUAL_WEIGHTS, idle_w=idle_w
    )
    alone_ids = [d.id for d in done if d.kind.endswith("alone")]
    weights = {
        "engine timings": TokenWeights.from_timings(
            statistics.mean(d.prompt_per_second for d in done if d.kind == "long-alone"),
            statistics.mean(d.predicted_per_second for d in done if d.kind == "short-alone"),
        ),
        "measured J per token": TokenWeights.from_solo_runs(solo.requests[i] for i in alone_ids),
    }
    results = {}
    for basis, w in weights.items():
        result = attribute(samples, spans, weights=w, idle_w=idle_w)
        rows = ratios(result, done, args.repeats)
        results[basis] = {
            "weights": {"prefill": w.prefill, "decode": w.decode, "basis": w.basis},
            "closure_error": result.closure_error,
            "attributed_j": result.attributed_j,
            "unattributed_j": result.unattributed_j,
            "counter_total_j": result.total_j,
            "repeats": rows,
            "worst_deviation": max(abs(row["deviation"]) for row in rows),
        }

    power = [(r.t, r.power_mw / 1000) for r in sampler.readings if r.power_mw is not None]
    power_j = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(power, power[1:], strict=False))
    changes = [
        b.t
        for a, b in zip(sampler.readings, sampler.readings[1:], strict=False)
        if b.energy_mj != a.energy_mj
    ]
    update_ms = (
        statistics.median(b - a for a, b in zip(changes, changes[1:], strict=False)) * 1000
        if len(changes) > 2
        else None
    )
    report = {
        "gpu": name if isinstance(name, str) else name.decode(),
        "driver": driver if isinstance(driver, str) else driver.decode(),
        "settings": vars(args) | {"out": str(args.out)},
        "samples": len(samples),
        "counter_update_ms_median": update_ms,
        "counter_total_j": samples[-1].joules - samples[0].joules,
        "power_integral_j": power_j,
        "idle_w": idle_w,
        "requests": [asdict(d) for d in done],
        "results": results,
        "goals": {
            "closure_within_2pct": all(r["closure_error"] <= 0.02 for r in results.values()),
            "ratio_within_15pct": {b: r["worst_deviation"] <= 0.15 for b, r in results.items()},
        },
    }
    (args.out / "attribution.json").write_text(json.dumps(report, indent=2) + "\n")

    print(
        f"{report['gpu']} (driver {report['driver']}): {len(samples)} counter samples, "
        f"counter changes every {update_ms or float('nan'):.0f} ms, idle {idle_w:.1f} W"
    )
    print(f"counter {report['counter_total_j']:.1f} J, power integral {power_j:.1f} J")
    for basis, r in results.items():
        print(f"\n{basis} ({r['weights']['basis']}): closure error {r['closure_error']:.2e}")
        for row in r["repeats"]:
            print(
                f"  repeat {row['repeat']}: alone {row['long_alone_j']:.1f} J / {row['short_alone_j']:.1f} J"
                f" = {row['ratio_alone']:.3f}; together {row['long_together_j']:.1f} J / {row['short_together_j']:.1f} J"
                f" = {row['ratio_together']:.3f}; deviation {row['deviation']:+.1%}"
            )
    goals = report["goals"]
    print(f"\ngoals: {json.dumps(goals)}")
    ok = goals["closure_within_2pct"] and any(goals["ratio_within_15pct"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
