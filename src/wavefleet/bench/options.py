"""What one `wave bench` run is asked to do, as one typed value, and the pieces it derives.

    options = BenchOptions(concurrency=(1, 4, 16), num_requests=100)   # `wave bench` builds it from flags
    workload, loads = options.workload(), options.loads(workload)
    run_bench(options, console)                                        # bench/run.py

Every field holds a parsed value (numbers, an Slo, criteria); the CLI turns the flags' text
into them and names the flag when it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wavefleet.bench.criteria import Criterion
from wavefleet.bench.metrics import Slo
from wavefleet.bench.runner import LoadSpec, Target
from wavefleet.bench.workload import (
    BenchWorkload,
    JsonlWorkload,
    LengthDist,
    MultiTurnWorkload,
    SyntheticWorkload,
)
from wavefleet.errors import UsageError

__all__ = ["DEFAULT_REQUESTS", "DEFAULT_URL", "BenchOptions"]

DEFAULT_REQUESTS = 200
# `wave up` and `wave serve` listen on 8080 by default: the bench measures that gateway unless told.
DEFAULT_URL = "http://127.0.0.1:8080/v1"


@dataclass(frozen=True, kw_only=True, slots=True)
class BenchOptions:
    # where and what to ask
    url: str = DEFAULT_URL
    model: str | None = None  # None: the first of GET /v1/models
    api_key: str | None = None
    endpoint: Literal["chat", "completions"] = "chat"
    ignore_eos: bool = False
    extra_body: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 600.0
    wait_s: float = 30.0  # for the server to start listening
    # the levels: closed-loop worker counts, open-loop rates (neither: one worker)
    concurrency: tuple[int, ...] = ()
    rates: tuple[float, ...] = ()
    burstiness: float = 1.0
    ramp_up_s: float = 0.0
    max_concurrency: int | None = None
    num_requests: int | None = None  # per level; None with no duration: DEFAULT_REQUESTS
    duration_s: float | None = None
    seed: int = 0
    # the workload: synthetic, multi-turn (conversations) or a JSONL file (prompts_file)
    input_len: int = 256
    output_len: int = 128
    length_dist: LengthDist = field(default_factory=LengthDist)
    conversations: int | None = None
    prefix_len: int = 512
    turns: int = 4
    prompts_file: Path | None = None
    # what to report and check
    slo: Slo = field(default_factory=Slo)
    percentiles: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)
    criteria: tuple[Criterion, ...] = ()
    criteria_on: Literal["each", "last"] = "each"
    out: Path | None = None
    show_progress: bool = True

    @property
    def count_defaulted(self) -> bool:
        """Neither a request count nor a duration was given: each level sends DEFAULT_REQUESTS."""
        return self.num_requests is None and self.duration_s is None

    def workload(self) -> BenchWorkload:
        if self.prompts_file is not None and self.conversations is not None:
            raise UsageError("choose one workload: --prompts FILE or --multi-turn N")
        if self.prompts_file is not None:
            return JsonlWorkload(self.prompts_file, default_max_tokens=self.output_len)
        if self.conversations is not None:
            return MultiTurnWorkload(
                conversations=self.conversations,
                prefix_len=self.prefix_len,
                turns=self.turns,
                turn_len=self.input_len,
                output_len=self.output_len,
                seed=self.seed,
            )
        return SyntheticWorkload(
            input_len=self.input_len,
            output_len=self.output_len,
            input_dist=self.length_dist,
            output_dist=self.length_dist,
            seed=self.seed,
        )

    def loads(self, workload: BenchWorkload) -> list[LoadSpec]:
        """One LoadSpec per level: the closed-loop ones first, then the open-loop ones."""
        num, duration = self.num_requests, self.duration_s
        if self.count_defaulted:
            num = DEFAULT_REQUESTS
            if isinstance(workload, MultiTurnWorkload):
                num = workload.conversations * workload.turns
        concurrency = self.concurrency or (() if self.rates else (1,))
        loads = [
            LoadSpec(concurrency=c, num_requests=num, duration_s=duration, seed=self.seed)
            for c in concurrency
        ]
        loads += [
            LoadSpec(
                rate=rate,
                burstiness=self.burstiness,
                ramp_up_s=self.ramp_up_s,
                max_concurrency=self.max_concurrency,
                num_requests=num,
                duration_s=duration,
                seed=self.seed,
            )
            for rate in self.rates
        ]
        return loads

    def target(self, model: str) -> Target:
        return Target(
            base_url=self.url,
            model=model,
            api_key=self.api_key,
            endpoint=self.endpoint,
            ignore_eos=self.ignore_eos,
            extra_body=dict(self.extra_body),
            timeout_s=self.timeout_s,
        )
