"""Claims as data: a report's checkable statements, each with its quote and line, and a verdict.

A claims file (YAML, `ClaimsFile`) names the document it quotes and lists claims; each claim says
how to check it (`check.kind`). The plan evaluates every claim against the catalog (hardware,
services, memberships and the sourced statements in catalog/statements/facts.yaml), the sizing engine,
the engines' documented command lines and config grammars, and the plan's own findings, and
reports it as confirmed, contradicted (with the right figure and its source) or unverifiable
(with why). Speed claims are checked at the context they state, else at the inventory's typical
context, and the verdict says which.
"""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from wavefleet.catalog import Catalog
from wavefleet.files import FrozenModel, load_model
from wavefleet.plan.findings import Finding, FindingCode, Severity
from wavefleet.plan.placement import Placement
from wavefleet.plan.sizing import GIB, SizingInput, SizingResult, size_model
from wavefleet.plan.speed import BANDWIDTH_EFFICIENCY, STEP_OVERHEAD_S

__all__ = [
    "Claim",
    "ClaimVerdict",
    "ClaimsFile",
    "Verdict",
    "default_claims_path",
    "evaluate_claims",
    "load_claims",
]

NUMERIC_TOLERANCE = 0.02
SPEC_DRAFT_TOKENS = (3, 4, 5)
MEASUREMENT = Path("docs") / "measurements" / "speculative.json"
Span = tuple[float, float]


class Verdict(StrEnum):
    CONFIRMED = "confirmed"
    CONTRADICTED = "contradicted"
    UNVERIFIABLE = "unverifiable"


class HardwareCheck(FrozenModel):
    kind: Literal["hardware"]
    device: str
    field: str
    value: float | str


class FactCheck(FrozenModel):
    kind: Literal["fact"]
    subject: str
    key: str
    value: bool | float | str | Span


class SpeedCheck(FrozenModel):
    kind: Literal["speed"]
    model: str
    quant: str
    device: str
    engine: str = "vllm"
    kv_dtype: str | None = None
    tokens_per_s: Span
    per: Literal["request", "aggregate"] = "request"
    concurrency: int = 1
    context: int | None = Field(
        default=None, description="tokens the claim states; None: the typical context"
    )


class FitCheck(FrozenModel):
    kind: Literal["fit"]
    model: str
    quant: str
    device: str
    engine: str = "vllm"
    kv_dtype: str | None = None
    memory_utilization: float = 0.9
    fits: bool | None = None
    weights_gb: float | None = Field(default=None, description="weights the claim states, GB")
    kv_gb: float | None = Field(default=None, description="KV cache the claim states, GB")


class RatioCheck(FrozenModel):
    kind: Literal["ratio"]
    field: str
    numerator: str
    denominator: str
    value: Span


class WeightsInCheck(FrozenModel):
    kind: Literal["weights-in"]
    model: str
    quant: str
    capacity_mib: float
    what: str


class CommandCheck(FrozenModel):
    kind: Literal["command"]
    tool: str
    text: str


class ConfigCheck(FrozenModel):
    kind: Literal["config"]
    grammar: Literal["nginx", "promql"]
    text: str


class ImageCheck(FrozenModel):
    kind: Literal["image"]
    tool: str
    version: str
    device: str


class DeploymentCheck(FrozenModel):
    kind: Literal["deployment"]
    deployment: str
    claim: Literal["aggregate", "per-sequence", "concurrency", "ttft", "device"]


class FleetAggregateCheck(FrozenModel):
    kind: Literal["fleet-aggregate"]
    tokens_per_s: float


class SpeculativeCheck(FrozenModel):
    kind: Literal["speculative"]
    speedup: float
    acceptance: Span
    draft_model: str
    draft_quant: str
    draft_device: str
    target_model: str
    target_quant: str
    target_device: str
    target_gpu_layers: int | None = None
    target_host: str | None = None


Check = Annotated[
    HardwareCheck
    | FactCheck
    | SpeedCheck
    | FitCheck
    | RatioCheck
    | WeightsInCheck
    | CommandCheck
    | ConfigCheck
    | ImageCheck
    | DeploymentCheck
    | FleetAggregateCheck
    | SpeculativeCheck,
    Field(discriminator="kind"),
]


class Claim(FrozenModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    quote: str = Field(description="the claim's words, exactly as the document has them")
    line: int = Field(gt=0, description="1-based line of the quote in the document")
    section: str
    check: Check


class ClaimsFile(FrozenModel):
    document: str = Field(description="the quoted document: a file in the repository or a URL")
    claims: list[Claim]


class ClaimVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    quote: str
    where: str = Field(description="document:line (section)")
    verdict: Verdict
    finding: str
    right: str = Field(default="", description="the right figure or statement, when contradicted")
    sources: list[str] = Field(default_factory=list)
    context: str = Field(default="", description="the context a speed was checked at, and why that one")


class _Fact(FrozenModel):
    subject: str
    key: str
    value: bool | float | str | None
    detail: str
    sources: list[str]


class _Command(FrozenModel):
    tool: str
    subcommands: list[str]
    detail: str
    sources: list[str]


class _ConfigRule(FrozenModel):
    grammar: str
    directive: str
    contexts: list[str]
    sources: list[str]


class _MetricPair(FrozenModel):
    used: str
    free: str
    sources: list[str]


class _Knowledge(FrozenModel):
    facts: list[_Fact]
    commands: list[_Command]
    config: list[_ConfigRule]
    metrics: list[_MetricPair]


def default_claims_path() -> Path:
    """The seed report's claims, shipped inside the package (a copy of examples/seed-claims.yaml)."""
    return Path(str(resources.files("wavefleet.plan") / "seed_claims.yaml"))


def load_claims(path: Path) -> ClaimsFile:
    return load_model(ClaimsFile, path)


@cache
def _knowledge() -> _Knowledge:
    return load_model(
        _Knowledge, Path(str(resources.files("wavefleet.catalog") / "statements" / "facts.yaml"))
    )


class _Context:
    """What evaluating needs besides the claim: catalog, findings, placements, typical context."""

    def __init__(
        self,
        catalog: Catalog,
        findings: list[Finding],
        placements: list[Placement],
        typical_context: int,
        host_ram_gib: dict[str, float],
    ) -> None:
        self.catalog, self.findings, self.placements = catalog, findings, placements
        self.typical_context, self.host_ram_gib = typical_context, host_ram_gib


def evaluate_claims(
    claims: ClaimsFile,
    catalog: Catalog,
    findings: list[Finding],
    placements: list[Placement],
    typical_context: int,
    host_ram_gib: dict[str, float],
) -> list[ClaimVerdict]:
    """A verdict for every claim, in the file's order."""
    ctx = _Context(catalog, findings, placements, typical_context, host_ram_gib)
    out = []
    for claim in claims.claims:
        try:
            verdict = _evaluate(claim, ctx)
        except KeyError as exc:
            verdict = _v(
                Verdict.UNVERIFIABLE, f"the check names {exc.args[0]!r}, which the catalog does not know"
            )
        out.append(
            verdict.model_copy(
                update={
                    "id": claim.id,
                    "quote": claim.quote,
                    "where": f"{claims.document}:{claim.line} ({claim.section})",
                }
            )
        )
    return out


def _v(
    verdict: Verdict, finding: str, right: str = "", sources: list[str] | None = None, context: str = ""
) -> ClaimVerdict:
    return ClaimVerdict(
        id="",
        quote="",
        where="",
        verdict=verdict,
        finding=finding,
        right=right,
        sources=sources or [],
        context=context,
    )


def _evaluate(claim: Claim, ctx: _Context) -> ClaimVerdict:
    check = claim.check
    match check:
        case HardwareCheck():
            return _hardware(check, ctx)
        case FactCheck():
            return _fact(check)
        case SpeedCheck():
            return _speed(check, ctx)
        case FitCheck():
            return _fit(check, ctx)
        case RatioCheck():
            return _ratio(check, ctx)
        case WeightsInCheck():
            return _weights_in(check, ctx)
        case CommandCheck():
            return _command(check)
        case ConfigCheck():
            return _config(check)
        case ImageCheck():
            return _image(check, ctx)
        case DeploymentCheck():
            return _deployment(check, ctx)
        case FleetAggregateCheck():
            return _fleet(check, ctx)
        case SpeculativeCheck():
            return _speculative(check, ctx)


def _sources(entry: object, field: str) -> list[str]:
    sources = getattr(entry, "sources", [])
    return [s.ref for s in sources if not s.fields or field in s.fields] or [s.ref for s in sources]


def _span(span: Span) -> str:
    low, high = span
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def _hardware(check: HardwareCheck, ctx: _Context) -> ClaimVerdict:
    hw = ctx.catalog.hardware[check.device]
    known = getattr(hw, check.field)
    sources = _sources(hw, check.field)
    if known is None:
        return _v(Verdict.UNVERIFIABLE, f"the catalog has no {check.field} for {hw.name}")
    if isinstance(check.value, str):
        ok = check.value.lower() in str(known).lower()
        text = f"{hw.name}: {check.field} is {known}"
        return _v(Verdict.CONFIRMED if ok else Verdict.CONTRADICTED, text, "" if ok else str(known), sources)
    ok = math.isclose(check.value, float(known), rel_tol=NUMERIC_TOLERANCE)
    text = f"{hw.name}: {check.field} {known:g} in the catalog (the claim: {check.value:g})"
    return _v(Verdict.CONFIRMED if ok else Verdict.CONTRADICTED, text, "" if ok else f"{known:g}", sources)


def _find_fact(subject: str, key: str) -> _Fact:
    for fact in _knowledge().facts:
        if fact.subject == subject and fact.key == key:
            return fact
    raise KeyError(f"{subject}.{key}")


def _fact(check: FactCheck) -> ClaimVerdict:
    try:
        fact = _find_fact(check.subject, check.key)
    except KeyError:
        return _v(
            Verdict.UNVERIFIABLE, f"no sourced statement about {check.subject} {check.key} in the catalog"
        )
    if fact.value is None:
        return _v(Verdict.UNVERIFIABLE, fact.detail, sources=fact.sources)
    claimed = check.value
    if (
        isinstance(claimed, tuple)
        and isinstance(fact.value, int | float)
        and not isinstance(fact.value, bool)
    ):
        ok = claimed[0] * (1 - NUMERIC_TOLERANCE) <= fact.value <= claimed[1] * (1 + NUMERIC_TOLERANCE)
    elif (
        isinstance(claimed, int | float)
        and isinstance(fact.value, int | float)
        and not isinstance(claimed, bool)
    ):
        ok = math.isclose(float(claimed), float(fact.value), rel_tol=NUMERIC_TOLERANCE, abs_tol=1e-9)
    else:
        ok = claimed == fact.value
    return _v(
        Verdict.CONFIRMED if ok else Verdict.CONTRADICTED,
        fact.detail,
        "" if ok else fact.detail,
        fact.sources,
    )


def _sized(
    ctx: _Context,
    model: str,
    quant: str,
    device: str,
    engine: str,
    *,
    kv_dtype: str | None = None,
    context: int | None = None,
    max_num_seqs: int | None = None,
    memory_utilization: float = 0.9,
    host: str | None = None,
) -> SizingResult:
    catalog = ctx.catalog
    hw = catalog.hardware[device]
    return size_model(
        SizingInput(
            model=catalog.models[model],
            device=hw,
            quant=catalog.quantizations[quant],
            kv_dtype=catalog.quantizations[kv_dtype] if kv_dtype else None,
            context=context,
            max_num_seqs=max_num_seqs,
            memory_utilization=memory_utilization,
            engine=engine,
            host_ram_gib=ctx.host_ram_gib.get(device, 64.0),
            host=catalog.hardware[host] if host else None,
        )
    )


def _context_note(stated: int | None, typical: int) -> tuple[int, str]:
    if stated is not None:
        return stated, f"checked at {stated:,} tokens, the context the claim states"
    return typical, f"checked at {typical:,} tokens, the inventory's typical context (the claim states none)"


def _speed(check: SpeedCheck, ctx: _Context) -> ClaimVerdict:
    context, note = _context_note(check.context, ctx.typical_context)
    r = _sized(ctx, check.model, check.quant, check.device, check.engine, kv_dtype=check.kv_dtype,
               context=context, max_num_seqs=check.concurrency)  # fmt: skip
    hw = ctx.catalog.hardware[check.device]
    sources = _sources(hw, "memory_bandwidth_gbs")
    bound = r.decode_tokens_per_s_upper_bound * (check.concurrency if check.per == "aggregate" else 1)
    low, high = check.tokens_per_s
    what = f"{check.model} {check.quant} on {hw.name}"
    if high > bound:
        return _v(
            Verdict.CONTRADICTED,
            f"{_span(check.tokens_per_s)} tokens/s per {check.per} is above the bandwidth bound for {what}: "
            f"{hw.memory_bandwidth_gbs:g} GB/s over the bytes read per token",
            f"at most {bound:.0f} tokens/s (estimate about {r.batched_decode_tokens_per_s / (1 if check.per == 'aggregate' else check.concurrency):.0f})",
            sources,
            note,
        )
    return _v(
        Verdict.CONFIRMED,
        f"{_span(check.tokens_per_s)} tokens/s per {check.per} is within the bound for {what} "
        f"({bound:.0f} tokens/s; estimate {r.batched_decode_tokens_per_s:.0f} at {check.concurrency})",
        sources=sources,
        context=note,
    )


def _fit(check: FitCheck, ctx: _Context) -> ClaimVerdict:
    context = ctx.typical_context
    r = _sized(ctx, check.model, check.quant, check.device, check.engine, kv_dtype=check.kv_dtype,
               context=context, memory_utilization=check.memory_utilization)  # fmt: skip
    hw = ctx.catalog.hardware[check.device]
    model = ctx.catalog.models[check.model]
    sources = [*_sources(model, "params_b")[:1], *_sources(hw, "memory_gib")[:1]]
    weights_gb = r.weights_gib * GIB / 1e9
    kv_gb = max(r.kv_budget_gib, 0) * GIB / 1e9
    wrong = []
    if check.fits is not None and check.fits != r.fits:
        wrong.append(
            f"{'fits' if r.fits else 'does not fit'}: weights {r.weights_gib:.2f} GiB + overhead {r.overhead_gib:.2f} "
            f"GiB + one {context:,}-token sequence {r.kv_gib_per_sequence:.2f} GiB vs a {r.budget_gib:.2f} GiB budget"
        )
    if check.weights_gb is not None and not math.isclose(check.weights_gb, weights_gb, rel_tol=0.05):
        wrong.append(f"weights {weights_gb:.2f} GB ({r.weights_gib:.2f} GiB), not {check.weights_gb:g} GB")
    if check.kv_gb is not None and not math.isclose(check.kv_gb, kv_gb, rel_tol=0.1):
        wrong.append(f"KV cache {kv_gb:.2f} GB left after weights and overhead, not {check.kv_gb:g} GB")
    summary = (
        f"{check.model} {check.quant} on {hw.name} at {check.memory_utilization:g} of its memory: weights "
        f"{r.weights_gib:.2f} GiB, overhead {r.overhead_gib:.2f} GiB, KV budget {r.kv_budget_gib:.2f} GiB (estimates)"
    )
    if wrong:
        return _v(
            Verdict.CONTRADICTED, summary, "; ".join(wrong), sources, f"one sequence of {context:,} tokens"
        )
    return _v(Verdict.CONFIRMED, summary, sources=sources, context=f"one sequence of {context:,} tokens")


def _ratio(check: RatioCheck, ctx: _Context) -> ClaimVerdict:
    a, b = ctx.catalog.hardware[check.numerator], ctx.catalog.hardware[check.denominator]
    ratio = float(getattr(a, check.field)) / float(getattr(b, check.field))
    ok = check.value[0] - 0.02 <= ratio <= check.value[1] + 0.02
    text = (
        f"{check.field}: {a.name} {getattr(a, check.field):g} / {b.name} {getattr(b, check.field):g} = {ratio:.2f}; "
        "bandwidth-bound decode scales with it"
    )
    return _v(
        Verdict.CONFIRMED if ok else Verdict.CONTRADICTED,
        text,
        "" if ok else f"{ratio:.0%}",
        [*_sources(a, check.field)[:1], *_sources(b, check.field)[:1]],
    )


def _weights_in(check: WeightsInCheck, ctx: _Context) -> ClaimVerdict:
    model, quant = ctx.catalog.models[check.model], ctx.catalog.quantizations[check.quant]
    mib = model.params_b * 1e9 * quant.bits_per_weight / 8 / 2**20
    ok = mib <= check.capacity_mib
    return _v(
        Verdict.CONFIRMED if ok else Verdict.CONTRADICTED,
        f"{check.model} in {quant.name} is {model.params_b:g}e9 x {quant.bits_per_weight:g} bits / 8 = {mib:,.0f} MiB "
        f"of weights, {mib / check.capacity_mib:.0f}x the {check.capacity_mib:g} MiB {check.what}; every token reads "
        "them all from RAM",
        "" if ok else f"{mib:,.0f} MiB of weights",
        [*_sources(model, "params_b")[:1], *_sources(quant, "bits_per_weight")[:1]],
    )


def _command(check: CommandCheck) -> ClaimVerdict:
    grammar = next((c for c in _knowledge().commands if c.tool == check.tool), None)
    if grammar is None:
        return _v(Verdict.UNVERIFIABLE, f"the catalog has no command-line grammar for {check.tool}")
    words = check.text.split()
    sub = words[1] if len(words) > 1 and words[0] == check.tool else ""
    if sub in grammar.subcommands:
        return _v(
            Verdict.CONFIRMED, f"`{check.tool} {sub}` is a documented subcommand", sources=grammar.sources
        )
    return _v(
        Verdict.CONTRADICTED,
        f"`{check.tool} {sub}` is no {check.tool} subcommand (it has {', '.join(grammar.subcommands)})",
        grammar.detail,
        grammar.sources,
    )


def _config(check: ConfigCheck) -> ClaimVerdict:
    knowledge = _knowledge()
    if check.grammar == "promql":
        for pair in knowledge.metrics:
            if re.search(rf"{pair.used}\b[^/]*/\s*{pair.free}\b", check.text):
                return _v(
                    Verdict.CONTRADICTED,
                    f"{pair.used} / {pair.free} divides used by free memory: 0.9 means 47% in use, and it passes 1 "
                    "long before memory runs out",
                    f"{pair.used} / ({pair.used} + {pair.free}) > 0.9",
                    pair.sources,
                )
        return _v(Verdict.CONFIRMED, "no used/free ratio in the expression")
    # A file under conf.d/ is included inside `http`, so its top level is the http context.
    stack: list[str] = []
    words: list[str] = []
    for token in re.findall(r"[{};]|[^\s{};]+", re.sub(r"#[^\n]*", "", check.text)):
        if token == "{":
            stack.append(words[0] if words else "?")
            words = []
        elif token == "}":
            if stack:
                stack.pop()
            words = []
        elif token == ";":
            where = stack[-1] if stack else "http"
            rule = next(
                (r for r in knowledge.config if r.grammar == "nginx" and words and r.directive == words[0]),
                None,
            )
            if rule is not None and where not in rule.contexts:
                return _v(
                    Verdict.CONTRADICTED,
                    f"`{rule.directive}` inside `{where}`: nginx allows it only in {', '.join(rule.contexts)} "
                    "(`nginx -t` rejects the file)",
                    f"move `{rule.directive}` out to the {rule.contexts[0]} level, beside the server block",
                    rule.sources,
                )
            words = []
        else:
            words.append(token)
    return _v(Verdict.CONFIRMED, "every directive the catalog knows sits in a context nginx allows")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _image(check: ImageCheck, ctx: _Context) -> ClaimVerdict:
    hw = ctx.catalog.hardware[check.device]
    try:
        fact = _find_fact(check.tool, f"first-version-for-cc-{hw.compute_capability}")
    except KeyError:
        return _v(
            Verdict.UNVERIFIABLE, f"no sourced first {check.tool} version for CC {hw.compute_capability}"
        )
    first = str(fact.value)
    ok = _version(check.version) >= _version(first)
    return _v(
        Verdict.CONFIRMED if ok else Verdict.CONTRADICTED,
        f"{check.tool} {check.version} on {hw.name} (CC {hw.compute_capability}): {fact.detail}",
        "" if ok else f"{check.tool} >= {first}",
        fact.sources,
    )


_DEPLOYMENT_CODES: dict[str, set[FindingCode]] = {
    "aggregate": {FindingCode.CLAIM_ABOVE_BOUND, FindingCode.CLAIM_ABOVE_ESTIMATE},
    "per-sequence": {FindingCode.CLAIM_ABOVE_BOUND, FindingCode.CLAIM_CONSERVATIVE},
    "concurrency": {FindingCode.CLAIM_CONCURRENCY},
    "ttft": {FindingCode.CLAIM_BELOW_TTFT_BOUND, FindingCode.TTFT_UNCHECKED},
    "device": {FindingCode.UNSUPPORTED_DEVICE, FindingCode.PARTIAL_SUPPORT},
}


def _deployment(check: DeploymentCheck, ctx: _Context) -> ClaimVerdict:
    found = [
        f for f in ctx.findings if f.subject == check.deployment and f.code in _DEPLOYMENT_CODES[check.claim]
    ]
    if check.claim in ("aggregate", "per-sequence"):
        word = "in aggregate" if check.claim == "aggregate" else "per sequence"
        found = [f for f in found if f.code is not FindingCode.CLAIM_ABOVE_BOUND or word in f.message]
    if not found:
        return _v(
            Verdict.CONFIRMED, f"the plan's checks of deployment {check.deployment} find nothing against it"
        )
    finding = found[0]
    text = f"{finding.code}: {finding.message}"
    if finding.code is FindingCode.TTFT_UNCHECKED:
        return _v(Verdict.UNVERIFIABLE, text)
    if finding.code in (FindingCode.CLAIM_CONSERVATIVE, FindingCode.PARTIAL_SUPPORT):
        return _v(Verdict.CONFIRMED, text)
    numbers = finding.numbers
    if check.claim == "device":
        return _v(
            Verdict.CONTRADICTED,
            text,
            "not supported on that device",
            context=f"deployment {check.deployment}",
        )
    right = next(
        (
            f"{k.replace('_', ' ')} {v}"
            for k, v in numbers.items()
            if k not in ("claimed_high", "claimed_ms", "claimed")
        ),
        "",
    )
    severity = "" if finding.severity is Severity.ERROR else " (unlikely rather than impossible)"
    return _v(
        Verdict.CONTRADICTED, text + severity, right, context=f"deployment {check.deployment} as written"
    )


def _fleet(check: FleetAggregateCheck, ctx: _Context) -> ClaimVerdict:
    total = sum(p.batched_decode_tokens_per_s for p in ctx.placements)
    one = max((p.per_request_tokens_per_s for p in ctx.placements), default=0.0)
    parts = ", ".join(f"{p.device} {p.batched_decode_tokens_per_s:.0f}" for p in ctx.placements)
    text = (
        f"the plan's placements together: {total:.0f} tokens/s at their workload ({parts}); one person's request "
        f"runs on one device at a time, at most {one:.0f} tokens/s. Aggregates across devices add only when "
        "every device is busy at once"
    )
    if check.tokens_per_s > total:
        return _v(
            Verdict.CONTRADICTED, text, f"about {total:.0f} tokens/s for the whole fleet at this workload"
        )
    return _v(Verdict.CONFIRMED, text)


def _speculative(check: SpeculativeCheck, ctx: _Context) -> ClaimVerdict:
    measured = _measurement()
    if measured is not None:
        runs, path = measured
        cpu = [r for r in runs if r.draft_on == "cpu"]
        best = max((r.speedup for r in cpu), default=0.0)
        accept = ", ".join(f"{r.acceptance:.0%}" for r in cpu)
        ok = best >= check.speedup
        return _v(
            Verdict.CONFIRMED if ok else Verdict.CONTRADICTED,
            f"measured with llama.cpp --model-draft, draft on the CPU: best speed-up {best:.2f}x "
            f"(acceptance {accept})",
            "" if ok else f"{best:.2f}x",
            [path],
        )
    draft = _sized(ctx, check.draft_model, check.draft_quant, check.draft_device, "llama.cpp",
                   context=ctx.typical_context, max_num_seqs=1)  # fmt: skip
    target = _sized(ctx, check.target_model, check.target_quant, check.target_device, "llama.cpp",
                    context=ctx.typical_context, max_num_seqs=1, host=check.target_host)  # fmt: skip
    kind = ctx.catalog.hardware[check.draft_device].kind
    t_draft = 1 / (draft.decode_tokens_per_s_upper_bound * BANDWIDTH_EFFICIENCY[kind]) + STEP_OVERHEAD_S[kind]
    t_target = 1 / target.decode_tokens_per_s_upper_bound
    best = 0.0
    for acceptance in check.acceptance:
        for k in SPEC_DRAFT_TOKENS:
            accepted = (1 - acceptance ** (k + 1)) / (1 - acceptance)
            best = max(best, accepted * t_target / (k * t_draft + t_target))
    text = (
        f"arithmetic (no measurement yet): target {check.target_model} at {1 / t_target:.1f} tokens/s (bound), draft "
        f"{check.draft_model} on {check.draft_device} at ~{1 / t_draft:.0f} tokens/s; with {_span(check.acceptance)} "
        f"acceptance and {SPEC_DRAFT_TOKENS[0]}-{SPEC_DRAFT_TOKENS[-1]} drafted tokens the speed-up is at most "
        f"{best:.1f}x (verifying k+1 tokens costs about one target token when decode is bandwidth-bound); "
        f"measure with scripts/gpu/speculative.sh, which writes {MEASUREMENT.as_posix()}"
    )
    if check.speedup > best:
        return _v(Verdict.CONTRADICTED, text, f"at most {best:.1f}x")
    return _v(Verdict.UNVERIFIABLE, text)


class SpeculativeRun(BaseModel):
    """One run in docs/measurements/speculative.json (scripts/gpu/speculative.sh writes them)."""

    model_config = ConfigDict(extra="ignore")

    draft_on: Literal["gpu", "cpu"]
    speedup: float
    acceptance: float


class _Measurement(BaseModel):
    model_config = ConfigDict(extra="ignore")

    runs: list[SpeculativeRun]


def _measurement() -> tuple[list[SpeculativeRun], str] | None:
    """Runs in docs/measurements/speculative.json of a source checkout (or the working directory)."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        path = root / MEASUREMENT
        if path.is_file():
            return _Measurement.model_validate(json.loads(path.read_text())).runs, MEASUREMENT.as_posix()
    return None
