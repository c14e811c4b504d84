"""Renderers for a plan: a rich terminal table, Markdown, JSON (the scripting contract) and HTML."""

from __future__ import annotations

from enum import StrEnum

from wavefleet.plan.planner import Plan

__all__ = ["Format", "render"]


class Format(StrEnum):
    TABLE = "table"
    MARKDOWN = "markdown"
    JSON = "json"
    HTML = "html"


def render(plan: Plan, fmt: Format, *, width: int = 160, color: bool = False) -> str:
    """The plan as text in `fmt`; imports each renderer only when asked for (keeps `wave plan` fast)."""
    if fmt is Format.JSON:
        from wavefleet.plan.report.as_json import render_json

        return render_json(plan)
    if fmt is Format.MARKDOWN:
        from wavefleet.plan.report.as_markdown import render_markdown

        return render_markdown(plan)
    if fmt is Format.HTML:
        from wavefleet.plan.report.as_html import render_html

        return render_html(plan)
    from wavefleet.plan.report.as_table import render_table

    return render_table(plan, width=width, color=color)
