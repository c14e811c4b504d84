"""`wave bench`: load-test an OpenAI-compatible endpoint with vLLM's metric definitions."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from wavefleet.bench.arrivals import expected_span
from wavefleet.bench.criteria import Criterion, check, parse_criteria
from wavefleet.bench.metrics import Slo, summarize
from wavefleet.bench.report import Level, Report, environment, print_level, print_verdicts, write_outputs
from wavefleet.bench.runner import LoadSpec, ProgressInfo, Target, run_load
from wavefleet.bench.workload import (
    JsonlWorkload,
    MultiTurnWorkload,
    SyntheticWorkload,
    Workload,
    parse_length_dist,
)
from wavefleet.errors import BenchError, UsageError

__all__ = ["bench"]

DEFAULT_REQUESTS = 200
# `wave up` and `wave serve` listen on 8080 by default: the bench measures that gateway unless told.
DEFAULT_URL = "http://127.0.0.1:8080/v1"


@click.command(context_settings={"max_content_width": 100})
@click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    help="Base URL of the OpenAI API (the default is where `wave up` and `wave serve` listen).",
)
@click.option("--model", help="Model name to request (default: the first of GET /v1/models).")
@click.option("--api-key", envvar="WAVE_API_KEY", help="Bearer key (or set WAVE_API_KEY).")
@click.option("--endpoint", type=click.Choice(["chat", "completions"]), default="chat", show_default=True)
@click.option(
    "--concurrency", help="Closed-loop levels: workers each keeping one request in flight, e.g. 1,4,16,64."
)
@click.option("--rate", help="Open-loop levels in requests/s, e.g. 5,10,20 (arrivals follow --burstiness).")
@click.option(
    "--burstiness",
    type=float,
    default=1.0,
    show_default=True,
    help="Gamma shape of the gaps: 1 = Poisson, <1 burstier, >1 smoother.",
)
@click.option(
    "--ramp-up",
    "ramp_up_s",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Seconds over which the open-loop rate grows linearly from 0.",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    help="Open loop: cap on requests in flight (waiting counts in TTFT and dispatch lag).",
)
@click.option(
    "--num-requests",
    type=click.IntRange(min=1),
    help=f"Requests per level (default {DEFAULT_REQUESTS} unless --duration).",
)
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds per level to keep sending (in-flight requests finish).",
)
@click.option(
    "--input-len",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Prompt length in tokens (~words); with --multi-turn, per user turn.",
)
@click.option(
    "--output-len", type=click.IntRange(min=1), default=128, show_default=True, help="max_tokens per request."
)
@click.option(
    "--length-dist",
    default="fixed",
    show_default=True,
    help="fixed, uniform:R (range ratio) or normal:S (std/mean).",
)
@click.option(
    "--multi-turn",
    "conversations",
    type=click.IntRange(min=1),
    help="Shared-prefix chats: this many conversations.",
)
@click.option(
    "--prefix-len",
    type=click.IntRange(min=0),
    default=512,
    show_default=True,
    help="Multi-turn: shared system prefix tokens.",
)
@click.option(
    "--turns",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Multi-turn: turns per conversation.",
)
@click.option(
    "--prompts",
    "prompts_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help='JSONL file: {"prompt"|"messages", "max_tokens"?} per line.',
)
@click.option(
    "--ignore-eos",
    is_flag=True,
    help="Ask the engine to generate exactly max_tokens (ignore_eos, min_tokens).",
)
@click.option("--extra-body", help="JSON object merged into every request body.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    help="Seconds from sending a request to the end of its answer; past it the request fails "
    "as `timeout` (it is never sent again).",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the server to start listening (a gateway started just before).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for prompts and arrival times.")
@click.option(
    "--goodput", multiple=True, help="SLOs for goodput, e.g. --goodput 'ttft:500 tpot:50 e2el:5000'."
)
@click.option(
    "--percentiles", default="50,90,95,99", show_default=True, help="Percentiles reported for every latency."
)
@click.option("--criteria", help="Success criteria, e.g. 'p95_ttft_ms<50,output_tps>120,error_rate<0.01'.")
@click.option(
    "--criteria-on",
    type=click.Choice(["each", "last"]),
    default="each",
    show_default=True,
    help="Check criteria on every level or only the last.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write bench.json, requests.csv, bench.png, bench.html here.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs and scripts).")
def bench(**options: Any) -> None:
    """Load-test an OpenAI-compatible endpoint; metrics are vLLM bench serve's.

    Every request streams with usage, so TTFT, TPOT, ITL and E2EL are measured per request and
    token counts come from the server. Latency clocks start at the scheduled send time, so a
    client-side queue cannot hide (dispatch lag is reported too).

    \b
    Examples:
      wave bench --concurrency 1,4,16 --num-requests 100        # the gateway on 127.0.0.1:8080
      wave bench --url http://127.0.0.1:8000/v1 --concurrency 4   # a vLLM server directly
      wave bench --rate 2,5,10 --duration 60 --burstiness 0.5 --max-concurrency 64
      wave bench --multi-turn 16 --prefix-len 1024 --turns 5 --concurrency 8
      wave bench --prompts prompts.jsonl --concurrency 4 --goodput 'ttft:500 tpot:50'
      wave bench --concurrency 8 --criteria 'p95_ttft_all_ms<500,output_tps>100' --out results/

    Exit codes: 0 ok, 1 a criterion failed (or no request succeeded), 2 bad arguments.
    """
    console = Console(highlight=False)
    slo = _parse_slo(options["goodput"])
    criteria = parse_criteria(options["criteria"], with_goodput=not slo.empty) if options["criteria"] else []
    percentiles = _parse_percentiles(options["percentiles"], criteria)
    workload = _workload(options)
    _wait_until_listening(options["url"], options["wait_s"])
    model = options["model"] or _first_model(options["url"], options["api_key"])
    target = Target(
        base_url=options["url"],
        model=model,
        api_key=options["api_key"],
        endpoint=options["endpoint"],
        ignore_eos=options["ignore_eos"],
        extra_body=_parse_extra_body(options["extra_body"]),
        timeout_s=options["timeout_s"],
    )
    loads = _loads(options, workload)
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
    for line in plan_lines(
        loads, defaulted=options["num_requests"] is None and options["duration_s"] is None
    ):
        console.print(line)
    for load in loads:
        with ProgressBar(console, load, disabled=options["no_progress"]) as progress:
            result = run_load(target, workload, load, progress)
        summary = summarize(result.records, result.duration_s, slo, percentiles, window=result.window)
        level = Level(result, summary)
        report.levels.append(level)
        print_level(console, level)
    checked = report.levels if options["criteria_on"] == "each" else report.levels[-1:]
    for level in checked:
        report.verdicts += check(criteria, level.result.load.label, level.summary)
    if options["out"]:
        written = write_outputs(report, options["out"])
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


def _parse_levels(text: str, kind: type[int] | type[float], name: str) -> list[Any]:
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise UsageError(f"--{name} takes comma-separated numbers, e.g. 1,4,16; got {text!r}") from exc
    if not values or any(v <= 0 for v in values):
        raise UsageError(f"--{name} needs positive numbers; got {text!r}")
    return values


def _loads(options: dict[str, Any], workload: Workload) -> list[LoadSpec]:
    if not options["concurrency"] and not options["rate"]:
        options["concurrency"] = "1"
    num, duration = options["num_requests"], options["duration_s"]
    if num is None and duration is None:
        num = DEFAULT_REQUESTS
        if isinstance(workload, MultiTurnWorkload):
            num = workload.conversations * workload.turns
    common: dict[str, Any] = {"num_requests": num, "duration_s": duration, "seed": options["seed"]}
    loads = (
        [
            LoadSpec(concurrency=c, **common)
            for c in _parse_levels(options["concurrency"] or "", int, "concurrency")
        ]
        if options["concurrency"]
        else []
    )
    if options["rate"]:
        for rate in _parse_levels(options["rate"], float, "rate"):
            loads.append(
                LoadSpec(
                    rate=rate,
                    burstiness=options["burstiness"],
                    ramp_up_s=options["ramp_up_s"],
                    max_concurrency=options["max_concurrency"],
                    **common,
                )
            )
    return loads


def _workload(options: dict[str, Any]) -> Workload:
    dist = parse_length_dist(options["length_dist"])
    if options["prompts_file"] and options["conversations"]:
        raise UsageError("choose one workload: --prompts FILE or --multi-turn N")
    if options["prompts_file"]:
        return JsonlWorkload(options["prompts_file"], default_max_tokens=options["output_len"])
    if options["conversations"]:
        return MultiTurnWorkload(
            conversations=options["conversations"],
            prefix_len=options["prefix_len"],
            turns=options["turns"],
            turn_len=options["input_len"],
            output_len=options["output_len"],
            seed=options["seed"],
        )
    return SyntheticWorkload(
        input_len=options["input_len"],
        output_len=options["output_len"],
        input_dist=dist,
        output_dist=dist,
        seed=options["seed"],
    )


def _parse_slo(values: tuple[str, ...]) -> Slo:
    limits: dict[str, float] = {}
    for part in " ".join(values).replace(",", " ").split():
        name, _, number = part.partition(":")
        if name not in ("ttft", "tpot", "e2el"):
            raise UsageError(f"bad --goodput item {part!r}: use ttft:MS, tpot:MS or e2el:MS")
        try:
            limits[name] = float(number)
        except ValueError as exc:
            raise UsageError(f"bad --goodput item {part!r}: {number!r} is not milliseconds") from exc
    return Slo(limits.get("ttft"), limits.get("tpot"), limits.get("e2el"))


def _parse_percentiles(text: str, criteria: list[Criterion]) -> list[float]:
    values = set(_parse_levels(text, float, "percentiles")) if text.strip() else set()
    if any(v > 100 for v in values):
        raise UsageError(f"--percentiles must lie in (0, 100]; got {text!r}")
    values |= {c.percentile for c in criteria if c.percentile is not None}
    return sorted(values)


def _parse_extra_body(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--extra-body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError("--extra-body must be a JSON object, e.g. '{\"temperature\": 0}'")
    return value


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
