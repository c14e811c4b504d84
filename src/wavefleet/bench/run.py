"""One `wave bench` run from its options: wait for the server, find the model, announce the plan,
run each level behind a progress bar, print and write the report, check the criteria.

    run_bench(BenchOptions(concurrency=(1, 4), num_requests=50), Console())   # BenchError on failure
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from wavefleet.bench.arrivals import expected_span
from wavefleet.bench.criteria import check
from wavefleet.bench.metrics import summarize
from wavefleet.bench.options import DEFAULT_REQUESTS, BenchOptions
from wavefleet.bench.report import Level, Report, environment, print_level, print_verdicts, write_outputs
from wavefleet.bench.runner import LoadSpec, ProgressInfo, run_load
from wavefleet.errors import BenchError
from wavefleet.extras import require

__all__ = ["ProgressBar", "plan_lines", "run_bench"]


def run_bench(options: BenchOptions, console: Console) -> None:
    """Run every level; BenchError when no request of a level succeeded or a criterion failed."""
    if options.out is not None:  # before the load runs, not after
        require("matplotlib", needed_by="wave bench --out (the PNG plot)")
    workload = options.workload()
    loads = options.loads(workload)
    _wait_until_listening(options.url, options.wait_s)
    model = options.model or _first_model(options.url, options.api_key)
    target = options.target(model)
    slo, percentiles, criteria = options.slo, list(options.percentiles), list(options.criteria)
    report = Report(
        config={
            "url": target.url,
            "model": model,
            "endpoint": target.endpoint,
            "ignore_eos": target.ignore_eos,
            "extra_body": target.extra_body,
            "workload": workload.describe(),
            "slo_ms": {"ttft": slo.ttft_ms, "tpot": slo.tpot_ms, "e2el": slo.e2el_ms},
            "percentiles": percentiles,
            "criteria": [str(c) for c in criteria],
            "timer_start": "scheduled send time (includes client queueing)",
            "timeout_s": target.timeout_s,
            "resends": "never: each request is sent once; a timeout is a failed request",
        },
        environment=environment(),
    )
    for line in plan_lines(loads, defaulted=options.count_defaulted):
        console.print(line)
    for load in loads:
        with ProgressBar(console, load, disabled=not options.show_progress) as progress:
            result = run_load(target, workload, load, progress)
        summary = summarize(result.records, result.duration_s, slo, percentiles, window=result.window)
        level = Level(result, summary)
        report.levels.append(level)
        print_level(console, level)
    checked = report.levels if options.criteria_on == "each" else report.levels[-1:]
    for level in checked:
        report.verdicts += check(criteria, level.result.load.label, level.summary)
    if options.out is not None:
        written = write_outputs(report, options.out)
        console.print("wrote " + ", ".join(str(path) for path in written))
    if report.verdicts:
        print_verdicts(console, report.verdicts)
    dead = [level for level in report.levels if level.summary.completed == 0]
    if dead:
        top = max(dead[0].summary.errors.items(), key=lambda item: item[1], default=("no requests sent", 0))
        raise BenchError(f"no request succeeded at {dead[0].result.load.label}: {top[0]}")
    failed = [v for v in report.verdicts if not v.passed]
    if failed:
        raise BenchError(
            f"{len(failed)} of {len(report.verdicts)} criteria failed: "
            + ", ".join(f"{v.criterion} at {v.level}" for v in failed)
        )


def _wait_until_listening(base_url: str, wait_s: float) -> None:
    """Return once something accepts connections at `base_url` (any HTTP answer will do), or raise
    BenchError after `wait_s` seconds of refused connections."""
    parts = urllib.parse.urlsplit(base_url)
    address = (parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80))
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        try:
            socket.create_connection(address, timeout=5).close()
            return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise BenchError(
                    f"nothing answers at {base_url} ({exc.strerror or exc}) after {wait_s:g} s: start the "
                    "gateway first (`wave serve` or `wave up`), or point --url at the server"
                ) from exc
            if not said:
                Console(stderr=True, highlight=False).print(
                    f"waiting up to {wait_s:g} s for {base_url} to listen", style="dim"
                )
                said = True
            time.sleep(0.25)


def _first_model(base_url: str, api_key: str | None) -> str:
    request = urllib.request.Request(base_url.rstrip("/") + "/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            models = json.load(reply).get("data") or []
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BenchError(
            f"cannot list models at {base_url}/models ({exc}); pass --model or check --url"
        ) from exc
    if not models:
        raise BenchError(f"{base_url}/models lists no model; pass --model")
    return str(models[0]["id"])


def _span(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plan_lines(loads: list[LoadSpec], *, defaulted: bool) -> list[str]:
    """What the run will do and how long it should take, said before anything is sent."""
    counts = [load.num_requests for load in loads]
    levels = f"{len(loads)} level{'s' if len(loads) != 1 else ''}"
    if all(count is not None for count in counts):
        cut = " at most" if any(load.duration_s is not None for load in loads) else ""
        levels += f",{cut} {sum(c or 0 for c in counts)} requests"
    lines = [f"wave bench: {levels}"]
    if defaulted:
        lines[0] += f"; {DEFAULT_REQUESTS} requests per level (the default; set --num-requests or --duration)"
    known, unknown = 0.0, 0
    width = max(len(load.label) for load in loads)
    for load in loads:
        seconds, what = _level_plan(load)
        if seconds is None:
            unknown += 1
        else:
            known += seconds
        lines.append(f"  {load.label:<{width}}  {what}")
    if unknown == 0:
        lines.append(f"  expected: about {_span(known)} of sending, plus each level's drain")
    elif known:
        lines.append(
            f"  expected: about {_span(known)} of sending for the timed levels, plus the "
            f"{unknown} closed-loop level{'s' if unknown != 1 else ''} (ETA in the progress bar)"
        )
    return lines


def _level_plan(load: LoadSpec) -> tuple[float | None, str]:
    """Seconds of sending the level is expected to take (None: up to the server), and why."""
    drain = "then the requests in flight finish"
    count, duration = load.num_requests, load.duration_s
    if load.rate is None:
        workers = f"{load.concurrency} in flight at a time"
        if duration is not None:
            most = f" (at most {count} requests)" if count is not None else ""
            return duration, f"sending for {_span(duration)}{most}, {workers}; {drain}"
        return None, f"{count} requests, {workers}: as long as the server takes (ETA once requests finish)"
    if count is None:
        assert duration is not None
        expected = load.rate * duration
        return duration, f"about {expected:.0f} requests arriving over {_span(duration)}, {drain}"
    span = expected_span(load.rate, count, ramp_up_s=load.ramp_up_s)
    if duration is not None and duration < span:
        return duration, f"up to {count} requests arriving over {_span(duration)}, {drain}"
    return span, f"{count} requests arriving over about {_span(span)}, {drain}"


def _amount(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


class ProgressBar:
    """A rich progress bar fed by the runner's progress callback (or nothing, when disabled).

    A level with a request count shows requests ended (answered or failed) of the count; a
    level with only a --duration shows seconds of sending of the duration, then the drain.
    Both show the requests in flight, the time elapsed and an ETA from the pace so far.
    """

    def __init__(self, console: Console, load: LoadSpec, disabled: bool) -> None:
        self.disabled = disabled
        self.by_time = load.num_requests is None
        self.sending = "arrivals" if load.rate is not None else "sending"
        self.bar = Progress(
            TextColumn(f"{load.label:<24}"),
            BarColumn(),
            TextColumn("{task.fields[amount]}"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        total = load.duration_s if self.by_time else load.num_requests
        self.task = self.bar.add_task(load.label, total=total, amount="", detail="")
        self(
            ProgressInfo(
                done=0,
                sent=0,
                in_flight=0,
                planned=load.num_requests,
                elapsed_s=0.0,
                planned_s=load.duration_s,
                sending=True,
            )
        )

    def __enter__(self) -> ProgressBar | None:
        if self.disabled:
            return None
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.disabled:
            self.bar.stop()

    def __call__(self, info: ProgressInfo) -> None:
        waiting = info.sent - info.done - info.in_flight  # issued, waiting for a --max-concurrency slot
        detail = f"{info.in_flight} in flight" + (f", {waiting} waiting" if waiting > 0 else "")
        if self.by_time:
            assert info.planned_s is not None
            completed = min(info.elapsed_s, info.planned_s)
            amount = f"{_amount(completed)}/{_amount(info.planned_s)} s of {self.sending}"
            detail = f"{info.done} requests done, {detail}"
        else:
            completed = info.done
            amount = f"{info.done}/{info.planned} requests"
        if not info.sending and info.done < info.sent:
            detail = "draining: " + detail
        self.bar.update(self.task, completed=completed, amount=amount, detail=detail)
