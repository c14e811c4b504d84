"""The roadmap: phases by MoSCoW tier, concrete steps, and success criteria a load test can check.

Criteria are `wave bench --criteria` expressions. Their targets come from the sizing estimates of
each placement, with margins stated in `basis`:

- output_tps > 60% of the estimated batched decode rate at the placement's concurrency (the
  estimate already assumes a share of peak bandwidth; 60% leaves room for sampling, scheduling
  and HTTP);
- p95_ttft_ms < 4 x the estimated prefill time of a 1,024-token prompt, and at least 500 ms (four
  times covers prompts queueing behind each other at that concurrency);
- error_rate < 0.01.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from wavefleet.plan.findings import Finding, Severity
from wavefleet.plan.moscow import Fit, ServicePlan, Tier
from wavefleet.plan.placement import Placement

__all__ = ["BENCH_PROMPT_TOKENS", "Phase", "Step", "build_roadmap", "placement_criteria"]

BENCH_PROMPT_TOKENS = 1024
BENCH_OUTPUT_TOKENS = 256
THROUGHPUT_SHARE = 0.6
TTFT_SLACK = 4.0
MIN_TTFT_TARGET_MS = 500
MAX_ERROR_RATE = 0.01
PHASES = (
    (Tier.MUST, "Week 1: Must"),
    (Tier.SHOULD, "Week 2: Should"),
    (Tier.COULD, "Weeks 3-4: Could"),
)


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str
    service: str | None = None
    where: list[str] = Field(default_factory=list)
    effort_days: float = 0.0
    criteria: list[str] = Field(default_factory=list, description="`wave bench --criteria` expressions")
    load: dict[str, int] = Field(default_factory=dict, description="concurrency, prompt and output tokens")
    basis: str = ""


class Phase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    tier: Tier | None
    effort_days: float
    steps: list[Step]


def placement_criteria(placement: Placement) -> tuple[list[str], dict[str, int], str]:
    """Criteria, load shape and basis for the load test of one placement (targets are estimates)."""
    concurrency = placement.sequences
    tps = math.floor(THROUGHPUT_SHARE * placement.batched_decode_tokens_per_s)
    prefill_ms = (
        BENCH_PROMPT_TOKENS / placement.prefill_tokens_per_s * 1000
        if placement.prefill_tokens_per_s > 0
        else 0
    )
    ttft = max(MIN_TTFT_TARGET_MS, math.ceil(TTFT_SLACK * prefill_ms / 50) * 50)
    criteria = [f"output_tps>{tps}", f"p95_ttft_ms<{ttft}", f"error_rate<{MAX_ERROR_RATE:g}"]
    basis = (
        f"estimates: batched decode {placement.batched_decode_tokens_per_s:.0f} tokens/s at {concurrency} "
        f"sequences x {THROUGHPUT_SHARE:.0%} = {tps}; prefill of {BENCH_PROMPT_TOKENS} tokens "
        f"{prefill_ms:.0f} ms x {TTFT_SLACK:g} (queueing), at least {MIN_TTFT_TARGET_MS} ms = {ttft} ms"
    )
    load = {
        "concurrency": concurrency,
        "prompt_tokens": BENCH_PROMPT_TOKENS,
        "output_tokens": BENCH_OUTPUT_TOKENS,
    }
    return criteria, load, basis


def build_roadmap(
    services: list[ServicePlan], placements: list[Placement], findings: list[Finding]
) -> list[Phase]:
    by_id = {s.id: s for s in services}
    phases = []
    for tier, name in PHASES:
        steps: list[Step] = []
        if tier is Tier.MUST:
            steps += _fix_steps(findings)
        for service in _dependency_order([s for s in services if s.moscow is tier], by_id):
            steps.append(_service_step(service))
        for placement in placements:
            engine = by_id.get(placement.engine)
            if engine is not None and engine.moscow is tier:
                steps.append(_placement_step(placement))
        phases.append(Phase(name=name, tier=tier, effort_days=sum(s.effort_days for s in steps), steps=steps))
    wont = [
        Step(action=f"Not now: {s.name}: {s.decided_by.reason}", service=s.id)
        for s in services
        if s.moscow is Tier.WONT
    ]
    phases.append(Phase(name="Won't (this time)", tier=Tier.WONT, effort_days=0, steps=wont))
    return phases


def _fix_steps(findings: list[Finding]) -> list[Step]:
    errors = [f for f in findings if f.severity is Severity.ERROR]
    if not errors:
        return []
    subjects = sorted({f.subject for f in errors})
    return [
        Step(
            action=(
                f"Before deploying the seed's configs, fix {len(errors)} error finding(s) on "
                f"{', '.join(subjects)} (see Findings): as written they fail or cannot keep their promises; "
                "done when `wave plan` on the corrected inventory reports no errors"
            ),
        )
    ]


def _dependency_order(services: list[ServicePlan], by_id: dict[str, ServicePlan]) -> list[ServicePlan]:
    """Dependencies first; otherwise the planner's order (score)."""
    ordered: list[ServicePlan] = []
    seen: set[str] = set()
    wanted = {s.id for s in services}

    def visit(service: ServicePlan, trail: frozenset[str]) -> None:
        if service.id in seen or service.id in trail:
            return
        for dep in service.depends_on:
            if dep in wanted and dep in by_id:
                visit(by_id[dep], trail | {service.id})
        seen.add(service.id)
        ordered.append(service)

    for service in services:
        visit(service, frozenset())
    return ordered


def _service_step(service: ServicePlan) -> Step:
    where = sorted(key for key, fit in service.fit.items() if fit is Fit.OK) or sorted(
        key for key, fit in service.fit.items() if fit is Fit.PARTIAL
    )
    if service.present_on:
        action = f"Keep {service.name}: it already runs on {', '.join(service.present_on)}; wire it in"
    else:
        action = f"Set up {service.name} for {', '.join(where) or 'the fleet'}"
    if service.depends_on:
        action += f" (after {', '.join(service.depends_on)})"
    return Step(action=action, service=service.id, where=where, effort_days=service.effort_days)


def _placement_step(placement: Placement) -> Step:
    criteria, load, basis = placement_criteria(placement)
    where = f"{placement.host}/{placement.container}" if placement.container else placement.host
    kv = f", KV {placement.kv_dtype}" if placement.kv_dtype else ""
    if placement.engine == "llama.cpp":
        # llama-server divides --ctx-size among its --parallel slots.
        flags = (
            f"--ctx-size {placement.context * placement.sequences} --parallel {placement.sequences} "
            f"({placement.context} tokens per slot)"
        )
    else:
        flags = f"--max-model-len {placement.context} --max-num-seqs {placement.sequences}"
    return Step(
        action=(
            f"Serve {placement.model} ({placement.quant}{kv}) with {placement.engine} on {placement.device} "
            f"({where}): {flags}; load-test it at {load['concurrency']} concurrent requests of "
            f"{load['prompt_tokens']} prompt tokens"
        ),
        service=placement.engine,
        where=[placement.device],
        criteria=criteria,
        load=load,
        basis=basis,
    )
