"""The plan as Markdown: summary, MoSCoW matrix, findings, placements, roadmap, memberships."""

from __future__ import annotations

from wavefleet.plan.memberships import MembershipReport
from wavefleet.plan.planner import Plan
from wavefleet.plan.report.common import (
    ACTUAL_COLUMNS,
    ACTUAL_TITLE,
    FIT_MARK,
    actual_rows,
    key_reason,
    services_by_tier,
)

__all__ = ["render_markdown"]

PLACEMENT_COLUMNS = [
    "device",
    "host",
    "engine",
    "model",
    "quant",
    "context",
    "sequences",
    "weights GiB",
    "KV GiB",
    "overhead GiB",
    "budget GiB",
    "decode bound tok/s",
    "batched tok/s",
    "per request tok/s",
    "first token s",
    "longest context (bound tok/s)",
]


def render_markdown(plan: Plan) -> str:
    sections = (
        _summary,
        _matrix,
        _findings,
        _claims,
        _workload,
        _placements,
        _roadmap,
        _memberships,
        _power,
        _actual,
        _notes,
    )
    return "\n".join(line for section in sections for line in section(plan)) + "\n"


def _summary(plan: Plan) -> list[str]:
    m = plan.moscow
    effort = ", ".join(f"{tier.label} {days:g} days" for tier, days in m.effort_days.items())
    s = plan.summary
    out = [f"# Plan: {plan.inventory or 'inventory'}", "", "## Summary", ""]
    out += [f"**Blocking errors ({len(s.blocking)})**", ""] + [f"- {b}" for b in s.blocking] + [""]
    out += ["**The three most important actions**", ""] + [f"{n}. {a}" for n, a in enumerate(s.actions, 1)]
    if plan.claims:
        tally = ", ".join(f"{count} {verdict}" for verdict, count in s.claims.items())
        out += ["", f"**Claims of {plan.claims_document}**: {tally} (see Claims)"]
    return [*out, "", f"Effort: {effort}. {m.explanation}.", ""]


def _claims(plan: Plan) -> list[str]:
    if not plan.claims:
        return []
    out = [
        f"## Claims ({plan.claims_document})",
        "",
        _row(["verdict", "claim", "where", "finding", "right", "context", "sources"]),
    ]
    out.append(_row(["---"] * 7))
    out += [
        _row(
            [
                c.verdict.value,
                f"{c.id}: “{c.quote}”",
                c.where,
                c.finding,
                c.right,
                c.context,
                " ".join(c.sources),
            ]
        )
        for c in plan.claims
    ]
    return [*out, ""]


def _workload(plan: Plan) -> list[str]:
    w = plan.workload
    out = [
        "## Workload (what the placements are sized for)",
        "",
        f"{w.users} user(s); typical context {w.typical_context:,} tokens; placements use the {w.serving.goal} workload.",
        "",
        _row(
            [
                "goal",
                "requests at once",
                "prompt tokens",
                "answer tokens",
                "floor tokens/s per request",
                "first token within s",
            ]
        ),
        _row(["---"] * 6),
    ]
    out += [
        _row(
            [
                tag,
                str(g.concurrent_requests),
                str(g.prompt_tokens),
                str(g.output_tokens),
                f"{g.min_tokens_per_s:g}",
                f"{g.max_ttft_s:g}",
            ]
        )
        for tag, g in w.goals.items()
    ]
    return [*out, ""]


def _matrix(plan: Plan) -> list[str]:
    out = ["## MoSCoW matrix", "", "Fit per device: ✓ ok, ~ partial, ✗ no.", ""]
    header = ["tier", "service", "score", "days", *[d.key for d in plan.devices], "why"]
    out += [_row(header), _row(["---"] * len(header))]
    for tier, services in services_by_tier(plan.services).items():
        for s in services:
            fits = [FIT_MARK[s.fit[d.key]] for d in plan.devices]
            out.append(_row([tier.label, s.id, f"{s.score:.2f}", f"{s.effort_days:g}", *fits, key_reason(s)]))
    out += ["", "<details><summary>Every reason, per service</summary>", ""]
    out += [f"- **{s.id}** ({s.moscow.label}): " + "; ".join(s.reasons) for s in plan.services]
    return [*out, "", "</details>", ""]


def _findings(plan: Plan) -> list[str]:
    out = ["## Findings", "", _row(["severity", "code", "subject", "message"]), _row(["---"] * 4)]
    out += [_row([f.severity.value, f.code, f.subject, f.message]) for f in plan.findings]
    return [*out, ""]


def _placements(plan: Plan) -> list[str]:
    out = ["## Placements (estimates)", "", _row(PLACEMENT_COLUMNS), _row(["---"] * len(PLACEMENT_COLUMNS))]
    for p in plan.placements:
        where = f"{p.host}/{p.container}" if p.container else p.host
        out.append(
            _row(
                [
                    p.device,
                    where,
                    p.engine,
                    p.model,
                    p.quant + (f" (KV {p.kv_dtype})" if p.kv_dtype else ""),
                    str(p.context),
                    f"{p.sequences} ({p.max_concurrent_sequences} fit)",
                    f"{p.weights_gib:.2f}",
                    f"{p.sequences * p.kv_gib_per_sequence:.2f}",
                    f"{p.overhead_gib:.2f}",
                    f"{p.budget_gib:.2f}",
                    f"{p.decode_tokens_per_s_upper_bound:.0f}",
                    f"{p.batched_decode_tokens_per_s:.0f}",
                    f"{p.per_request_tokens_per_s:g}",
                    f"{p.ttft_s:g}",
                    f"{p.longest_context:,} ({p.decode_bound_at_longest_tokens_per_s:.0f})",
                ]
            )
        )
    out += [f"- not placed on {n.device}: {n.reason}" for n in plan.not_placed]
    return [*out, ""]


def _roadmap(plan: Plan) -> list[str]:
    out = ["## Roadmap", ""]
    for phase in plan.roadmap:
        out += [f"### {phase.name} ({phase.effort_days:g} days)", ""]
        for step in phase.steps:
            line = f"- {step.action}"
            if step.effort_days:
                line += f" — {step.effort_days:g} d"
            out.append(line)
            if step.criteria:
                out.append(f"  - success: `--criteria '{','.join(step.criteria)}'`")
            if step.command:
                out.append(f"  - check: `{step.command}`")
            if step.stretch:
                out.append(f"  - stretch: {'; '.join(step.stretch)}")
            if step.done_when:
                out.append(f"  - done when {step.done_when}")
            if step.basis:
                out.append(f"  - targets from {step.basis}")
        out.append("")
    return out


def _memberships(plan: Plan) -> list[str]:
    out = ["## Memberships", ""]
    for report in plan.memberships:
        out += _membership(report)
    return out


def _membership(report: MembershipReport) -> list[str]:
    out = [f"### {report.name} ({report.program.value}{'' if report.held else ', not held'})", ""]
    if report.cost:
        out += [f"Cost: {report.cost}", ""]
    out.append("Unlocks:")
    out += [
        f"- {u.target}" + (f" ({u.moscow.label})" if u.moscow else "") + f": {u.detail}"
        for u in report.unlocks
    ]
    if report.does_not_cover:
        out += ["", "Does not cover:"]
        out += [f"- {item}" for item in report.does_not_cover]
    if report.next_steps:
        out += ["", "Next steps:"]
        out += [f"{n}. {step}" for n, step in enumerate(report.next_steps, 1)]
    return [*out, ""]


def _power(plan: Plan) -> list[str]:
    out = ["## Power (device TDPs at full load, 24 h; an upper estimate for the devices alone)", ""]
    out += [_row(["host", "TDP W", "kWh/day", "cost/day"]), _row(["---"] * 4)]
    out += [
        _row(
            [
                p.host,
                f"{p.devices_tdp_w:g}",
                f"{p.kwh_per_day_at_tdp:g}",
                f"{p.cost_per_day_at_tdp:.2f} {p.currency}",
            ]
        )
        for p in plan.power
    ]
    return [*out, ""]


def _actual(plan: Plan) -> list[str]:
    if plan.actual is None:
        return []
    out = [f"## {ACTUAL_TITLE}", "", f"From `{plan.actual.file}`: {plan.actual.basis}.", ""]
    out += [_row(list(ACTUAL_COLUMNS)), _row(["---"] * len(ACTUAL_COLUMNS))]
    out += [_row(cells) for cells in actual_rows(plan)]
    return [*out, ""]


def _notes(plan: Plan) -> list[str]:
    return ["## Notes", "", *(f"- {note}" for note in plan.notes)]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"
