"""What a simulated engine counts, for its metrics dialect to export. Times are wall seconds."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["EngineStats", "BucketHistogram"]

# vLLM's buckets (vllm/v1/metrics/loggers.py) for TTFT and inter-token latency / request times.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
TOKEN_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)  # fmt: skip


class BucketHistogram:
    """Cumulative-bucket histogram (Prometheus semantics: `le` buckets, sum, count)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs ending with +Inf."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


@dataclass
class EngineStats:
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: Counter[str] = field(default_factory=Counter)  # finish reason -> requests
    failed: int = 0
    preemptions: int = 0
    prefix_queries: int = 0
    prefix_hits: int = 0
    prompt_seconds: float = 0.0  # time spent in prefill steps
    decode_seconds: float = 0.0  # time spent in decode steps
    decode_steps: int = 0
    busy_slots_per_decode_sum: int = 0
    queue_us: float = 0.0
    request_us: float = 0.0
    ttft: BucketHistogram = field(default_factory=lambda: BucketHistogram(TTFT_BUCKETS))
    itl: BucketHistogram = field(default_factory=lambda: BucketHistogram(ITL_BUCKETS))
    tpot: BucketHistogram = field(default_factory=lambda: BucketHistogram(ITL_BUCKETS))
    e2e: BucketHistogram = field(default_factory=lambda: BucketHistogram(REQUEST_BUCKETS))
    queue_time: BucketHistogram = field(default_factory=lambda: BucketHistogram(REQUEST_BUCKETS))
    prefill_time: BucketHistogram = field(default_factory=lambda: BucketHistogram(REQUEST_BUCKETS))
    decode_time: BucketHistogram = field(default_factory=lambda: BucketHistogram(REQUEST_BUCKETS))
    prompt_len: BucketHistogram = field(default_factory=lambda: BucketHistogram(TOKEN_BUCKETS))
    output_len: BucketHistogram = field(default_factory=lambda: BucketHistogram(TOKEN_BUCKETS))
