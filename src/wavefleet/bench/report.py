"""Results on the terminal and on disk: JSON (all levels, config, environment), per-request CSV,
a PNG plot and a self-contained HTML page. Files are written whole or not at all."""

from __future__ import annotations

import base64
import csv
import html
import importlib.metadata
import io
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wavefleet import __version__
from wavefleet.bench.criteria import CriterionVerdict
from wavefleet.bench.metrics import ALL_REQUESTS_METRICS, Stats, Summary
from wavefleet.bench.runner import RunResult
from wavefleet.extras import require
from wavefleet.files import write_atomic

__all__ = ["Level", "Report", "environment", "print_level", "print_verdicts", "write_outputs"]

METRIC_TITLES = {
    "ttft": "TTFT (ms)",
    "tpot": "TPOT (ms)",
    "itl": "ITL (ms)",
    "e2el": "E2EL (ms)",
    "dispatch_lag": "dispatch lag (ms)",
    "ttft_all": "TTFT, failed = ∞ (ms)",
    "tpot_all": "TPOT, failed = ∞ (ms)",
    "e2el_all": "E2EL, failed = ∞ (ms)",
}


@dataclass
class Level:
    result: RunResult
    summary: Summary


@dataclass
class Report:
    config: dict[str, Any]
    environment: dict[str, Any]
    levels: list[Level] = field(default_factory=list)
    verdicts: list[CriterionVerdict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "environment": self.environment,
            "levels": [_level_dict(level) for level in self.levels],
            "criteria": [
                {
                    "level": v.level,
                    "criterion": str(v.criterion),
                    "value": _finite(v.value),
                    "passed": v.passed,
                }
                for v in self.verdicts
            ],
        }


def environment() -> dict[str, Any]:
    """Where the numbers come from: versions, machine, event loop."""
    try:
        loop = f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        loop = "asyncio"
    return {
        "wavefleet": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "event_loop": loop,
        "client": "wavefleet.bench.http (HTTP/1.1 keep-alive, no connection cap, each request sent once)",
    }


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: both become null (an infinite percentile is one that falls
    on failed requests; NaN is a statistic of nothing)."""
    return None if value is None or not math.isfinite(value) else value


def _number(value: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "—"
    return "∞" if math.isinf(value) else f"{value:,.{digits}f}"


def _stats_dict(stats: Stats) -> dict[str, Any]:
    return {
        "count": stats.count,
        "mean": _finite(stats.mean),
        "median": _finite(stats.median),
        "std": _finite(stats.std),
        "max": _finite(stats.max),
        "percentiles": {f"p{p:g}": _finite(v) for p, v in stats.percentiles.items()},
    }


def _level_dict(level: Level) -> dict[str, Any]:
    summary, result = level.summary, level.result
    return {
        "label": result.load.label,
        "load": asdict(result.load),
        "started_at": result.started_at,
        "connections_opened": result.connections_opened,
        "summary": {
            "completed": summary.completed,
            "failed": summary.failed,
            "error_rate": summary.error_rate,
            "duration_s": summary.duration_s,
            "total_input_tokens": summary.total_input_tokens,
            "total_output_tokens": summary.total_output_tokens,
            "request_throughput": summary.request_throughput,
            "output_throughput": summary.output_throughput,
            "total_token_throughput": summary.total_token_throughput,
            "request_goodput": summary.request_goodput,
            "good_fraction": summary.good_fraction,
            "window": (
                {"kind": summary.window.kind, "seconds": summary.window.seconds} if summary.window else None
            ),
            "request_throughput_window": summary.request_throughput_window,
            "output_throughput_window": summary.output_throughput_window,
            "total_token_throughput_window": summary.total_token_throughput_window,
            "request_goodput_window": summary.request_goodput_window,
            "token_counts": summary.token_counts,
            "stats": {name: _stats_dict(stats) for name, stats in summary.stats.items()},
            "errors": summary.errors,
            "failure_reasons": summary.failures,
        },
    }


CSV_COLUMNS = [
    "level",
    "index",
    "conversation",
    "turn",
    "scheduled_s",
    "sent_s",
    "dispatch_lag_ms",
    "ttft_ms",
    "e2el_ms",
    "tpot_ms",
    "chunks",
    "prompt_tokens",
    "output_tokens",
    "tokens_from_usage",
    "status",
    "failure",
    "error",
]


def _csv_text(levels: Sequence[Level]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for level in levels:
        t0 = level.result.t0
        for r in level.result.records:
            ttft, e2el = r.ttft, r.e2el
            tpot = (
                (e2el - ttft) / (r.output_tokens - 1)
                if ttft is not None and e2el is not None and r.output_tokens > 1
                else None
            )
            writer.writerow(
                [
                    r.level,
                    r.index,
                    r.conversation,
                    r.turn,
                    f"{r.scheduled - t0:.6f}",
                    f"{r.sent - t0:.6f}" if r.sent else "",
                    f"{r.dispatch_lag * 1e3:.3f}",
                    f"{ttft * 1e3:.3f}" if ttft is not None else "",
                    f"{e2el * 1e3:.3f}" if e2el is not None else "",
                    f"{tpot * 1e3:.3f}" if tpot is not None else "",
                    len(r.chunk_times),
                    r.prompt_tokens,
                    r.output_tokens,
                    int(r.tokens_from_usage),
                    r.status,
                    r.failure,
                    r.error,
                ]
            )
    return buffer.getvalue()


def _plot_png(levels: Sequence[Level]) -> bytes:
    require("matplotlib", needed_by="the bench report's PNG plot")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    labels = [level.result.load.label for level in levels]
    xs = list(range(len(levels)))

    def series(metric: str, pick: str) -> list[float]:
        out = []
        for level in levels:
            stats = level.summary.stats[metric]
            value = stats.median if pick == "median" else stats.percentiles.get(float(pick), math.nan)
            out.append(value)
        return out

    figure = Figure(figsize=(12, 3.8), dpi=100)
    ttft, tpot, throughput = figure.subplots(1, 3)
    ttft.plot(xs, series("ttft", "median"), "o-", label="p50")
    ttft.plot(xs, _percentile_series(levels, "ttft", 95), "s--", label="p95")
    ttft.set_title("TTFT (ms)")
    ttft.legend()
    tpot.plot(xs, series("tpot", "median"), "o-", label="p50")
    tpot.plot(xs, _percentile_series(levels, "tpot", 95), "s--", label="p95")
    tpot.set_title("TPOT (ms)")
    tpot.legend()
    throughput.plot(xs, [level.summary.output_throughput for level in levels], "o-")
    throughput.set_title("output throughput (tokens/s)")
    for axes in (ttft, tpot, throughput):
        axes.set_xticks(xs, labels, rotation=20, fontsize=8)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _percentile_series(levels: Sequence[Level], metric: str, p: float) -> list[float]:
    """p95 where it was computed, else NaN (matplotlib leaves a gap)."""
    return [level.summary.stats[metric].percentiles.get(p, math.nan) for level in levels]


def _html_page(report: Report, png: bytes) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return _number(value)
        return html.escape(str(value))

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>wave bench</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th:first-child,td:first-child{text-align:left}.fail{color:#b00}</style>",
        "</head><body><h1>wave bench</h1>",
        f"<p>Target {html.escape(str(report.config.get('url', '')))}, model "
        f"{html.escape(str(report.config.get('model', '')))}. Metrics as vLLM bench serve defines them "
        "(docs/bench.md); token counts from the server's usage.</p>",
        f"<img alt='TTFT, TPOT and output throughput per level' src='data:image/png;base64,{base64.b64encode(png).decode()}'>",
        "<h2>Levels</h2><p>Full run: from the first scheduled send to the end of the last answer "
        "(vLLM's duration). Window: for a rate level the arrival window (until the next arrival was "
        "due); for a concurrency level, while every worker was busy. Goodput over the window counts "
        "the requests that arrived in it (rate) or ended in it (concurrency).</p>"
        "<table><tr><th>level</th><th>ok</th><th>failed</th><th>failures</th><th>full run s</th>"
        "<th>window s</th><th>req/s (full run)</th><th>req/s (window)</th>"
        "<th>output tok/s (full run)</th><th>output tok/s (window)</th>"
        "<th>goodput req/s (full run)</th><th>goodput req/s (window)</th><th>token counts</th></tr>",
    ]
    for level in report.levels:
        s = level.summary
        window = s.window.seconds if s.window else None
        row = [
            level.result.load.label, s.completed, s.failed, _failure_text(s) or "—", s.duration_s, window,
            s.request_throughput, s.request_throughput_window, s.output_throughput,
            s.output_throughput_window, s.request_goodput, s.request_goodput_window, s.token_counts,
        ]  # fmt: skip
        parts.append("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>")
    parts.append("</table>")
    for level in report.levels:
        parts.append(f"<h3>{cell(level.result.load.label)}</h3>")
        header, rows = _stats_rows(level.summary)
        parts.append("<table><tr>" + "".join(f"<th>{cell(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>")
        parts.append("</table>")
    if report.verdicts:
        parts.append(
            "<h2>Criteria</h2><table><tr><th>level</th><th>criterion</th><th>value</th><th>result</th></tr>"
        )
        for v in report.verdicts:
            result = "pass" if v.passed else "<span class='fail'>FAIL</span>"
            parts.append(
                f"<tr><td>{cell(v.level)}</td><td>{cell(str(v.criterion))}</td><td>{cell(v.value)}</td><td>{result}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Configuration</h2><pre>" + html.escape(json.dumps(report.config, indent=2)) + "</pre>")
    parts.append(
        "<h2>Environment</h2><pre>" + html.escape(json.dumps(report.environment, indent=2)) + "</pre>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _stats_rows(summary: Summary) -> tuple[list[str], list[list[Any]]]:
    """The latency table; the failures-as-infinity rows only when some request failed."""
    percentiles = next(iter(summary.stats.values())).percentiles if summary.stats else {}
    header = ["metric", "mean", "median", "std", *(f"p{p:g}" for p in percentiles), "max"]
    rows = [
        [METRIC_TITLES[name], s.mean, s.median, s.std, *s.percentiles.values(), s.max]
        for name, s in summary.stats.items()
        if summary.failed or name not in ALL_REQUESTS_METRICS
    ]
    return header, rows


def _failure_text(summary: Summary) -> str:
    return ", ".join(
        f"{count} {reason}" for reason, count in sorted(summary.failures.items(), key=lambda i: -i[1])
    )


def write_outputs(report: Report, out: Path) -> list[Path]:
    """bench.json, requests.csv, bench.png and bench.html under `out`, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    png = _plot_png(report.levels)
    files: dict[Path, str | bytes] = {
        out / "bench.json": json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n",
        out / "requests.csv": _csv_text(report.levels),
        out / "bench.png": png,
        out / "bench.html": _html_page(report, png),
    }
    umask = os.umask(0)
    os.umask(umask)
    for path, content in files.items():
        write_atomic(path, content)
        path.chmod(0o666 & ~umask)  # the temporary file's 0600 would hide the report from others
    return list(files)


def print_level(console: Console, level: Level) -> None:
    """One level's table, as vLLM prints it: throughput lines, then latency statistics."""
    s = level.summary
    table = Table(title=f"{level.result.load.label}", title_justify="left", show_edge=False)
    header, rows = _stats_rows(s)
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(row[0], *(_number(v) for v in row[1:]))
    console.print(table)
    counts = (
        ""
        if s.token_counts == "usage"
        else f"  [yellow]token counts: {s.token_counts} (no usage from the server: output tokens counted as SSE chunks with text)[/]"
    )
    failures = _failure_text(s)
    good = f"  ({s.good_fraction:.1%} of all requests good)" if s.good_fraction is not None else ""
    console.print(f"  ok {s.completed}  failed {s.failed}" + (f" ({failures})" if failures else "") + good)
    console.print(
        f"  over the run ({s.duration_s:.2f} s, to the last answer):  "
        + _rates(s.request_throughput, s.output_throughput, s.total_token_throughput, s.request_goodput)
    )
    if s.window is not None and s.request_throughput_window is not None:
        workers = level.result.load.concurrency
        where = (
            "over the arrival window"
            if s.window.kind == "arrivals"
            else "while the worker was busy"
            if workers == 1
            else f"while all {workers} workers were busy"
        )
        console.print(
            f"  {where} ({s.window.seconds:.2f} s):  "
            + _rates(
                s.request_throughput_window,
                s.output_throughput_window or 0.0,
                s.total_token_throughput_window or 0.0,
                s.request_goodput_window,
            )
        )
    if counts:
        console.print(counts)
    for error, count in sorted(s.errors.items(), key=lambda item: -item[1])[:5]:
        console.print(f"  [red]{count} x[/] {escape(error)}", highlight=False)


def _rates(requests: float, output: float, total: float, goodput: float | None) -> str:
    text = f"req/s {requests:,.2f}  output tok/s {output:,.1f}  total tok/s {total:,.1f}"
    return text + (f"  goodput {goodput:,.2f} req/s" if goodput is not None else "")


def print_verdicts(console: Console, verdicts: Sequence[CriterionVerdict]) -> None:
    table = Table(title="criteria", title_justify="left", show_edge=False)
    for name in ("level", "criterion", "value", "result"):
        table.add_column(name)
    for v in verdicts:
        value = "—" if math.isnan(v.value) else "∞" if math.isinf(v.value) else f"{v.value:,.4g}"
        table.add_row(v.level, str(v.criterion), value, "pass" if v.passed else "[bold red]FAIL[/]")
    console.print(table)
