"""Load generation and the field's standard metrics (vLLM `bench serve` definitions).

Programmatic use, e.g. to sweep routing policies:

    from wavefleet.bench import LoadSpec, SyntheticWorkload, Target, run_load, summarize

    result = run_load(Target("http://127.0.0.1:8080/v1", "smollm2"),
                      SyntheticWorkload(input_len=128, output_len=64),
                      LoadSpec(rate=10, duration_s=30, max_concurrency=64))
    summary = summarize(result.records, result.duration_s, Slo(ttft_ms=500), window=result.window)
    summary.flat()["p95_ttft_ms"], summary.flat()["goodput_rps_window"]

Inside a running event loop, await `run_load_async` instead.
"""

from wavefleet.bench.arrivals import arrival_offsets
from wavefleet.bench.criteria import Criterion, CriterionVerdict, check, parse_criteria
from wavefleet.bench.metrics import Slo, Stats, Summary, Window, summarize
from wavefleet.bench.records import FAILURES, RequestRecord
from wavefleet.bench.runner import LoadSpec, ProgressInfo, RunResult, Target, run_load, run_load_async
from wavefleet.bench.workload import (
    BenchWorkload,
    JsonlWorkload,
    LengthDist,
    MultiTurnWorkload,
    SyntheticWorkload,
)

__all__ = [
    "FAILURES",
    "Criterion",
    "CriterionVerdict",
    "JsonlWorkload",
    "LengthDist",
    "LoadSpec",
    "MultiTurnWorkload",
    "ProgressInfo",
    "RequestRecord",
    "RunResult",
    "Slo",
    "Stats",
    "Summary",
    "SyntheticWorkload",
    "Target",
    "Window",
    "BenchWorkload",
    "arrival_offsets",
    "check",
    "parse_criteria",
    "run_load",
    "run_load_async",
    "summarize",
]
