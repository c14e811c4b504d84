"""The plan as rich terminal tables: MoSCoW matrix, findings, placements, memberships."""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from wavefleet.plan.findings import Severity
from wavefleet.plan.planner import Plan
from wavefleet.plan.report.common import (
    ACTUAL_COLUMNS,
    ACTUAL_TITLE,
    FIT_MARK,
    actual_rows,
    key_reason,
    services_by_tier,
)

__all__ = ["render_table"]

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
TIER_STYLE = {"must": "bold green", "should": "green", "could": "blue", "wont": "dim"}


def render_table(plan: Plan, *, width: int = 160, color: bool = False) -> str:
    buffer = io.StringIO()
    # Styles come from Text objects only: strings are printed as they are, so "[a source]" stays
    # text instead of being read as markup, and no highlighter or emoji pass runs over them.
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        color_system="auto" if color else None,
        markup=False,
        emoji=False,
        highlight=False,
    )
    console.print(_summary(plan))
    console.print(_matrix(plan))
    console.print(_findings(plan))
    if plan.claims:
        console.print(_claims(plan))
    console.print(_placements(plan))
    console.print(_roadmap(plan))
    console.print(_memberships(plan))
    if plan.actual is not None:
        console.print(_actual(plan))
    for note in plan.notes:
        console.print(Text(note, style="dim"))
    return buffer.getvalue()


def _summary(plan: Plan) -> Group:
    m = plan.moscow
    counts = {s.severity: 0 for s in plan.findings}
    for finding in plan.findings:
        counts[finding.severity] += 1
    effort = ", ".join(f"{tier.label} {days:g}d" for tier, days in m.effort_days.items())
    lines = [
        Text(
            f"Plan for {plan.inventory or 'inventory'}: {len(plan.services)} services, {len(plan.devices)} devices",
            style="bold",
        ),
        Text(f"Effort: {effort}. {m.explanation}.", style="green" if m.within_limit else "red"),
        Text(
            "Findings: "
            + ", ".join(
                f"{counts.get(s, 0)} {s.value}" for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)
            )
        ),
    ]
    s = plan.summary
    lines.append(Text(f"Blocking errors: {len(s.blocking)}", style="bold red" if s.blocking else "green"))
    lines += [Text(f"  - {b}", style="red") for b in s.blocking]
    lines.append(Text("The three most important actions:", style="bold"))
    lines += [Text(f"  {n}. {a}") for n, a in enumerate(s.actions, 1)]
    if plan.claims:
        tally = ", ".join(f"{count} {verdict}" for verdict, count in s.claims.items())
        lines.append(Text(f"Claims of {plan.claims_document}: {tally}"))
    w = plan.workload
    goals = "; ".join(
        f"{tag}: {g.concurrent_requests} at once, {g.prompt_tokens}+{g.output_tokens} tokens, >= {g.min_tokens_per_s:g} tok/s, "
        f"first token <= {g.max_ttft_s:g} s"
        for tag, g in w.goals.items()
    )
    lines.append(Text(f"Workload: {w.users} user(s), typical context {w.typical_context:,} tokens; {goals}"))
    return Group(*lines)


def _claims(plan: Plan) -> Group:
    """One entry per claim: its verdict beside the quote, where it is, the finding, the right
    figure, the context and the sources (a two-column grid: far fewer cells than a table)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column()
    style = {"confirmed": "green", "contradicted": "bold red", "unverifiable": "yellow"}
    for c in plan.claims:
        body = Text(f"{c.id}: “{c.quote}”\n", style="bold")
        body.append(f"{c.where}\n", style="dim")
        body.append(c.finding)
        if c.right and c.right not in c.finding:
            body.append(f" Right: {c.right}.")
        if c.context:
            body.append(f" Context: {c.context}.", style="dim")
        if c.sources:
            body.append(f" Sources: {' '.join(c.sources)}", style="dim")
        grid.add_row(Text(c.verdict.value, style=style[c.verdict.value]), body)
    return Group(Text(f"Claims of {plan.claims_document}", style="bold"), grid)


def _matrix(plan: Plan) -> Table:
    legend = ", ".join(f"D{n} {d.key} ({d.host})" for n, d in enumerate(plan.devices, 1))
    table = Table(
        title="MoSCoW matrix (fit: ✓ ok, ~ partial, ✗ no)", caption=legend, show_lines=False, expand=True
    )
    table.add_column("tier", no_wrap=True)
    table.add_column("service", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("days", justify="right", no_wrap=True)
    # One column of marks, each under its device's D<n>: a cell per device would cost rich
    # a measurement per cell for a single character.
    slot = len(f"D{len(plan.devices)}") + 1
    table.add_column(
        "".join(f"{f'D{n}':^{slot}}" for n, _ in enumerate(plan.devices, 1)).rstrip(), no_wrap=True
    )
    table.add_column("why", ratio=1)
    for tier, services in services_by_tier(plan.services).items():
        for service in services:
            table.add_row(
                Text(tier.label, style=TIER_STYLE[tier.value]),
                service.id,
                f"{service.score:.2f}",
                f"{service.effort_days:g}",
                "".join(f"{FIT_MARK[service.fit[d.key]]:^{slot}}" for d in plan.devices).rstrip(),
                key_reason(service),
            )
    return table


def _findings(plan: Plan) -> Table:
    table = Table(title="Findings (from the inventory's deployments and facts)", expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("code", no_wrap=True)
    table.add_column("subject", no_wrap=True)
    table.add_column("message", ratio=1)
    for finding in plan.findings:
        table.add_row(
            Text(finding.severity.value, style=SEVERITY_STYLE[finding.severity]),
            finding.code,
            finding.subject,
            finding.message,
        )
    return table


def _placements(plan: Plan) -> Table:
    table = Table(title="Placements (estimates)", expand=True)
    for name in (
        "device",
        "engine",
        "model",
        "quant",
        "context",
        "seqs",
        "GiB w/kv/oh of budget",
        "tok/s bound",
        "batched",
        "per request / first token",
        "longest context",
        "criteria",
    ):
        table.add_column(name)
    for p in plan.placements:
        table.add_row(
            p.device,
            p.engine,
            p.model,
            p.quant + (f" kv {p.kv_dtype}" if p.kv_dtype else ""),
            str(p.context),
            f"{p.sequences} ({p.max_concurrent_sequences} fit)",
            f"{p.weights_gib:.1f}/{p.sequences * p.kv_gib_per_sequence:.1f}/{p.overhead_gib:.1f} of {p.budget_gib:.1f}",
            f"{p.decode_tokens_per_s_upper_bound:.0f}",
            f"{p.batched_decode_tokens_per_s:.0f}",
            f"{p.per_request_tokens_per_s:g} tok/s, {p.ttft_s:g} s",
            f"{p.longest_context:,} ({p.decode_bound_at_longest_tokens_per_s:.0f} tok/s)",
            _criteria_of(plan, p.device),
        )
    for n in plan.not_placed:
        table.add_row(n.device, "", "", "", "", "", "", "", "", n.reason, "", "")
    return table


def _roadmap(plan: Plan) -> Group:
    lines = [Text("Roadmap", style="bold")]
    for phase in plan.roadmap:
        lines.append(Text(f"{phase.name} ({phase.effort_days:g} days)", style="bold"))
        for step in phase.steps:
            lines.append(Text(f"  - {step.action}"))
            if step.criteria:
                lines.append(Text(f"      success: --criteria '{','.join(step.criteria)}'", style="green"))
            if step.command:
                lines.append(Text(f"      check: {step.command}", style="dim"))
            if step.done_when and not step.criteria:
                lines.append(Text(f"      done when {step.done_when}", style="dim"))
    return Group(*lines)


def _actual(plan: Plan) -> Group:
    table = Table(title=ACTUAL_TITLE, expand=True)
    for column in ACTUAL_COLUMNS:
        table.add_column(column, overflow="fold")
    for cells in actual_rows(plan):
        table.add_row(*cells)
    basis = f"From {plan.actual.file}: {plan.actual.basis}." if plan.actual is not None else ""
    return Group(table, Text(basis, style="dim"))


def _memberships(plan: Plan) -> Table:
    table = Table(title="Memberships", expand=True)
    table.add_column("program", no_wrap=True)
    table.add_column("unlocks")
    table.add_column("does not cover")
    table.add_column("next step")
    for m in plan.memberships:
        unlocks = ", ".join(f"{u.target}" + (f" ({u.moscow.label})" if u.moscow else "") for u in m.unlocks)
        table.add_row(
            m.program.value + ("" if m.held else " (not held)"),
            unlocks,
            m.does_not_cover[0] if m.does_not_cover else "",
            m.next_steps[0] if m.next_steps else "",
        )
    return table


def _criteria_of(plan: Plan, device: str) -> str:
    for phase in plan.roadmap:
        for step in phase.steps:
            if step.criteria and step.where == [device] and (step.action.startswith("Serve ")):
                return ",".join(step.criteria)
    return ""
