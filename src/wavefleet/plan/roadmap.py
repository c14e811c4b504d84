"""The roadmap: phases by MoSCoW tier, concrete steps, and success criteria a load test runs.

Every step that deploys a model server carries criteria in `wave bench --criteria` syntax (comma
separated) and the `wave bench` command that checks them, at the placement's workload (its
requests in flight, prompt and answer length). The targets come from the sizing estimates with a
stated margin (`basis`):

- output_tps > MARGIN x the closed-loop estimate: requests x answer tokens / (first-token wait +
  answer tokens / per-request speed);
- p95_ttft_all_ms < TTFT_SLACK x (requests x prompt / prefill) (a prompt may queue behind the
  others' prefills), at least MIN_TTFT_TARGET_MS; failures count as infinitely late;
- median_tpot_all_ms < 1000 / (MARGIN x per-request speed);
- error_rate < MAX_ERROR_RATE.

A criterion the simulated fleet cannot show is marked `stretch` with why. Devices that `wave
render` renders nothing for (Windows hosts) get no load test. Services the fleet cannot really
run (nothing fits them fully and they are built for clusters or teams) go to "Not for this fleet"
with the reason, instead of taking weeks.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from wavefleet.plan.findings import Finding, Severity
from wavefleet.plan.moscow import Fit, ServicePlan, Tier
from wavefleet.plan.musts import ENGINE_CATEGORIES
from wavefleet.plan.placement import Placement

__all__ = [
    "MARGIN",
    "Phase",
    "Step",
    "bench_requests",
    "build_roadmap",
    "placement_criteria",
    "placement_deployment_id",
    "placement_port",
]

MARGIN = 0.6
TTFT_SLACK = 1.5
MIN_TTFT_TARGET_MS = 500
MAX_ERROR_RATE = 0.01
REQUESTS_PER_WORKER = 4  # requests per closed-loop worker in the printed load test
NOT_RENDERED = {"windows": "nothing is rendered for Windows hosts (`wave render`); set it up by hand"}
DEFAULT_PORT = {"vllm": 8000, "llama.cpp": 8080}
PHASES = (
    (Tier.MUST, "Week 1: Must"),
    (Tier.SHOULD, "Week 2: Should"),
    (Tier.COULD, "Weeks 3-4: Could"),
)
NOT_FOR_THIS_FLEET = "Not for this fleet"


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str
    service: str | None = None
    where: list[str] = Field(default_factory=list)
    effort_days: float = 0.0
    deployment: str | None = Field(default=None, description="the planned deployment this step deploys")
    criteria: list[str] = Field(default_factory=list, description="`wave bench --criteria` expressions")
    command: str = Field(default="", description="the `wave bench` command that checks the criteria")
    load: dict[str, int] = Field(default_factory=dict, description="concurrency, prompt and output tokens")
    basis: str = ""
    stretch: list[str] = Field(
        default_factory=list, description="criteria not expected to pass, each with why"
    )
    done_when: str = ""


class Phase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    tier: Tier | None
    effort_days: float
    steps: list[Step]


def placement_deployment_id(placement: Placement) -> str:
    """The id `wave render` and the planned inventory give a placement's server."""
    return f"{placement.engine.replace('.', '')}-{placement.device.split('@')[0]}"


def placement_port(placement: Placement, placements: list[Placement]) -> int:
    """The engine's default port, counted up past the ones taken earlier on the same node."""
    node = (placement.host, placement.container)
    port = DEFAULT_PORT.get(placement.engine, 8000)
    for other in placements:
        if other is placement:
            break
        if (other.host, other.container) == node and DEFAULT_PORT.get(other.engine, 8000) == DEFAULT_PORT.get(
            placement.engine, 8000
        ):
            port += 1
    return port


def bench_requests(placement: Placement) -> int:
    return max(placement.sequences * REQUESTS_PER_WORKER, 4)


def placement_criteria(placement: Placement) -> tuple[list[str], dict[str, int], str]:
    """Criteria, load shape and basis for the load test of one placement (targets are estimates)."""
    n = placement.sequences
    queued_ttft_s = n * placement.prompt_tokens / placement.prefill_tokens_per_s
    answer_s = placement.output_tokens / placement.per_request_tokens_per_s
    expected_tps = n * placement.output_tokens / (queued_ttft_s + answer_s)
    tps = math.floor(MARGIN * expected_tps * 10) / 10
    ttft = max(MIN_TTFT_TARGET_MS, math.ceil(TTFT_SLACK * queued_ttft_s * 1000 / 50) * 50)
    tpot = math.ceil(1000 / (MARGIN * placement.per_request_tokens_per_s))
    criteria = [
        f"output_tps>{tps:g}",
        f"p95_ttft_all_ms<{ttft}",
        f"median_tpot_all_ms<{tpot}",
        f"error_rate<{MAX_ERROR_RATE:g}",
    ]
    basis = (
        f"estimates at {n} request(s) of {placement.prompt_tokens}+{placement.output_tokens} tokens: "
        f"{placement.per_request_tokens_per_s:g} tokens/s per request, prefill {placement.prefill_tokens_per_s:.0f} "
        f"tokens/s; output_tps {MARGIN:.0%} of {n} x {placement.output_tokens} / ({queued_ttft_s:.2f} s queued "
        f"first token + {answer_s:.1f} s answer) = {expected_tps:.1f}; p95 TTFT {TTFT_SLACK:g} x {queued_ttft_s:.2f} s "
        f"(every prompt prefilled once), at least {MIN_TTFT_TARGET_MS} ms; TPOT 1000 / ({MARGIN:.0%} of "
        f"{placement.per_request_tokens_per_s:g}); failures count as infinitely late (the *_all metrics)"
    )
    load = {
        "concurrency": n,
        "prompt_tokens": placement.prompt_tokens,
        "output_tokens": placement.output_tokens,
    }
    return criteria, load, basis


def bench_command(
    placement: Placement, placements: list[Placement], address: str, criteria: list[str]
) -> str:
    url = f"http://{address}:{placement_port(placement, placements)}/v1"
    return (
        f"wave bench --url {url} --model {placement.model} --concurrency {placement.sequences} "
        f"--num-requests {bench_requests(placement)} --input-len {placement.prompt_tokens} "
        f"--output-len {placement.output_tokens} --ignore-eos --criteria '{','.join(criteria)}'"
    )


def build_roadmap(
    services: list[ServicePlan],
    placements: list[Placement],
    findings: list[Finding],
    addresses: dict[str, str] | None = None,
) -> list[Phase]:
    """Phases by tier; `addresses` maps host ids to the address the bench commands use."""
    addresses = addresses or {}
    by_id = {s.id: s for s in services}
    elsewhere = {s.id: why for s in services if (why := _not_for_this_fleet(s)) is not None}
    phases = []
    for tier, name in PHASES:
        steps: list[Step] = []
        if tier is Tier.MUST:
            steps += _fix_steps(findings)
        for service in _dependency_order([s for s in services if s.moscow is tier], by_id):
            if service.id in elsewhere:
                continue
            placed_here = [p for p in placements if p.engine == service.id]
            if placed_here:
                # The service's effort goes with its first server; the others repeat known steps.
                steps += [
                    _placement_step(p, placements, addresses.get(p.host, p.host), service, first=i == 0)
                    for i, p in enumerate(placed_here)
                ]
            else:
                steps.append(_service_step(service, placements, addresses))
        phases.append(Phase(name=name, tier=tier, effort_days=sum(s.effort_days for s in steps), steps=steps))
    phases.append(
        Phase(
            name=NOT_FOR_THIS_FLEET,
            tier=None,
            effort_days=0,
            steps=[
                Step(action=f"{by_id[sid].name}: {why}", service=sid)
                for sid, why in elsewhere.items()
                if by_id[sid].moscow is not Tier.WONT
            ],
        )
    )
    wont = [
        Step(action=f"Not now: {s.name}: {s.decided_by.reason}", service=s.id)
        for s in services
        if s.moscow is Tier.WONT
    ]
    phases.append(Phase(name="Won't (this time)", tier=Tier.WONT, effort_days=0, steps=wont))
    return phases


def _not_for_this_fleet(service: ServicePlan) -> str | None:
    """Why the fleet cannot really run it: nothing fits it fully and it is built for clusters or teams."""
    if any(fit is Fit.OK for fit in service.fit.values()) or not any(
        fit is Fit.PARTIAL for fit in service.fit.values()
    ):
        return None
    team = next((r for r in service.reasons if "built for clusters or teams" in r), None)
    if team is None:
        return None
    partial = next(key for key, fit in service.fit.items() if fit is Fit.PARTIAL)
    return f"at best partial ({partial}: {service.fit_reasons[partial]}); built for clusters or teams, not one person"


def _fix_steps(findings: list[Finding]) -> list[Step]:
    errors = [f for f in findings if f.severity is Severity.ERROR]
    if not errors:
        return []
    subjects = sorted({f.subject for f in errors})
    return [
        Step(
            action=(
                f"Before deploying the seed's configs, fix {len(errors)} error finding(s) on "
                f"{', '.join(subjects)} (see Findings): as written they fail or cannot keep their promises"
            ),
            done_when="`wave plan` on the corrected inventory reports no errors",
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


def _service_step(service: ServicePlan, placements: list[Placement], addresses: dict[str, str]) -> Step:
    where = sorted(key for key, fit in service.fit.items() if fit is Fit.OK) or sorted(
        key for key, fit in service.fit.items() if fit is Fit.PARTIAL
    )
    if service.present_on:
        action = f"Keep {service.name}: it already runs on {', '.join(service.present_on)}; wire it in"
    else:
        action = f"Set up {service.name} for {', '.join(where) or 'the fleet'}"
    if service.depends_on:
        action += f" (after {', '.join(service.depends_on)})"
    step = Step(action=action, service=service.id, where=where, effort_days=service.effort_days)
    if service.category not in ENGINE_CATEGORIES:
        return step
    # An alternative engine earns its place only by meeting at least what the plan's engine on the
    # same device promises: the same load test, the same criteria.
    rivals = [p for p in placements if p.device in where and p.platform not in NOT_RENDERED]
    # The engine it is an alternative to, if placed; else the fastest placement it could replace.
    rival = max(
        rivals,
        key=lambda p: (p.engine == service.alternative_to, p.batched_decode_tokens_per_s),
        default=None,
    )
    if rival is None:
        return step.model_copy(update={"done_when": "a first request answers; no placement to compare with"})
    criteria, load, basis = placement_criteria(rival)
    command = bench_command(rival, placements, addresses.get(rival.host, rival.host), criteria)
    return step.model_copy(
        update={
            "where": [rival.device],
            "criteria": criteria,
            "load": load,
            "command": command,
            "basis": f"the load test of {rival.engine} on {rival.device}: an alternative is kept only if it "
            f"meets the same; {basis}",
            "deployment": placement_deployment_id(rival),
            "done_when": f"serving {rival.model} on {rival.device} it passes the same criteria as {rival.engine}",
        }
    )


def _placement_step(
    placement: Placement, placements: list[Placement], address: str, service: ServicePlan, *, first: bool
) -> Step:
    where = f"{placement.host}/{placement.container}" if placement.container else placement.host
    kv = f", KV {placement.kv_dtype}" if placement.kv_dtype else ""
    if placement.engine == "llama.cpp":
        # llama-server divides --ctx-size among its --parallel slots.
        flags = (
            f"--ctx-size {placement.context * placement.sequences} --parallel {placement.sequences} "
            f"({placement.context} tokens per slot)"
        )
    else:
        flags = (
            f"--max-model-len {placement.context} --max-num-seqs {max(placement.max_concurrent_sequences, 1)}"
        )
    action = (
        f"Serve {placement.model} ({placement.quant}{kv}) with {placement.engine} on {placement.device} "
        f"({where}): {flags}"
    )
    deployment = placement_deployment_id(placement)
    if placement.platform in NOT_RENDERED:
        return Step(
            action=f"{action}; no load test: {NOT_RENDERED[placement.platform]}",
            service=placement.engine,
            where=[placement.device],
            effort_days=service.effort_days if first else 0.0,
            deployment=deployment,
            done_when="a first chat request answers",
        )
    criteria, load, basis = placement_criteria(placement)
    return Step(
        action=f"{action}; load-test it at {load['concurrency']} request(s) in flight of "
        f"{load['prompt_tokens']}+{load['output_tokens']} tokens",
        service=placement.engine,
        where=[placement.device],
        effort_days=service.effort_days if first else 0.0,
        deployment=deployment,
        criteria=criteria,
        command=bench_command(placement, placements, address, criteria),
        load=load,
        basis=basis,
        done_when="every criterion passes",
    )
