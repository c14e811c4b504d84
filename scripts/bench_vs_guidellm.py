#!/usr/bin/env python3
"""Compare `wave bench` and GuideLLM results taken under the same conditions.

Reads pairs of outputs (wave's bench.json, GuideLLM's --output json) and prints, per pair,
TTFT and throughput from each tool's own report, plus vLLM's TPOT recomputed from GuideLLM's
per-request timings, so the two formulas can be told apart:

  GuideLLM TTFT = first token iteration - request start          (= vLLM TTFT)
  GuideLLM ITL  = (last token - first token) / (out - 1)         (= vLLM TPOT)
  GuideLLM TPOT = (last token - request start) / out             (includes TTFT)

    python scripts/bench_vs_guidellm.py wave-r1-c1/bench.json gl-r1-c1.json [more pairs...]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def wave_figures(path: Path) -> dict[str, float]:
    summary = json.loads(path.read_text())["levels"][0]["summary"]
    return {
        "requests": summary["completed"],
        "ttft_mean": summary["stats"]["ttft"]["mean"],
        "ttft_median": summary["stats"]["ttft"]["median"],
        "tpot_vllm_mean": summary["stats"]["tpot"]["mean"],
        "e2el_mean": summary["stats"]["e2el"]["mean"],
        "req_per_s": summary["request_throughput"],
        "out_tok_per_s": summary["output_throughput"],
        "duration_s": summary["duration_s"],
    }


def guidellm_figures(path: Path) -> dict[str, float]:
    bench = json.loads(path.read_text())["benchmarks"][0]
    metrics = bench["metrics"]
    timings = [r["info"]["timings"] for r in bench["requests"]["successful"]]
    tpot_vllm = [
        (t["last_token_iteration"] - t["first_token_iteration"]) / (t["token_iterations"] - 1) * 1000
        for t in timings
        if t["token_iterations"] > 1
    ]
    e2el = [(t["last_token_iteration"] - t["request_start"]) * 1000 for t in timings]
    return {
        "requests": metrics["request_latency"]["successful"]["count"],
        "ttft_mean": metrics["time_to_first_token_ms"]["successful"]["mean"],
        "ttft_median": metrics["time_to_first_token_ms"]["successful"]["median"],
        "tpot_vllm_mean": statistics.fmean(tpot_vllm),
        "guidellm_tpot_mean": metrics["time_per_output_token_ms"]["successful"]["mean"],
        "guidellm_itl_mean": metrics["inter_token_latency_ms"]["successful"]["mean"],
        "e2el_mean": statistics.fmean(e2el),
        "req_per_s": metrics["requests_per_second"]["successful"]["mean"],
        "out_tok_per_s": metrics["output_tokens_per_second"]["successful"]["mean"],
        "duration_s": bench["duration"],
    }


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]]
    if not paths or len(paths) % 2:
        raise SystemExit(__doc__)
    keys = [
        "requests",
        "ttft_mean",
        "ttft_median",
        "tpot_vllm_mean",
        "e2el_mean",
        "req_per_s",
        "out_tok_per_s",
        "duration_s",
    ]
    print("| run | metric | wave bench | GuideLLM | GuideLLM / wave |")
    print("|---|---|---:|---:|---:|")
    for wave_path, gl_path in zip(paths[::2], paths[1::2], strict=True):
        wave, gl = wave_figures(wave_path), guidellm_figures(gl_path)
        for key in keys:
            ratio = gl[key] / wave[key] if wave[key] else float("nan")
            print(f"| {wave_path.parent.name} | {key} | {wave[key]:,.2f} | {gl[key]:,.2f} | {ratio:.3f} |")
        print(
            f"| {wave_path.parent.name} | GuideLLM's own TPOT / ITL (ms) | | "
            f"{gl['guidellm_tpot_mean']:,.1f} / {gl['guidellm_itl_mean']:,.1f} | |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
