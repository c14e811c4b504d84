"""`wave bench`: load-test an OpenAI-compatible endpoint with vLLM's metric definitions.

The flags' text is parsed here into one `BenchOptions` (bench/options.py); `run_bench`
(bench/run.py) does the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from rich.console import Console

from wavefleet.bench.criteria import Criterion, parse_criteria
from wavefleet.bench.metrics import Slo
from wavefleet.bench.options import DEFAULT_REQUESTS, DEFAULT_URL, BenchOptions
from wavefleet.bench.run import run_bench
from wavefleet.bench.workload import parse_length_dist
from wavefleet.errors import UsageError

__all__ = ["bench"]

N = TypeVar("N", int, float)


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
def bench(
    *,
    url: str,
    model: str | None,
    api_key: str | None,
    endpoint: Literal["chat", "completions"],
    concurrency: str | None,
    rate: str | None,
    burstiness: float,
    ramp_up_s: float,
    max_concurrency: int | None,
    num_requests: int | None,
    duration_s: float | None,
    input_len: int,
    output_len: int,
    length_dist: str,
    conversations: int | None,
    prefix_len: int,
    turns: int,
    prompts_file: Path | None,
    ignore_eos: bool,
    extra_body: str | None,
    timeout_s: float,
    wait_s: float,
    seed: int,
    goodput: tuple[str, ...],
    percentiles: str,
    criteria: str | None,
    criteria_on: Literal["each", "last"],
    out: Path | None,
    no_progress: bool,
) -> None:
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
    slo = _parse_slo(goodput)
    checks = parse_criteria(criteria, with_goodput=not slo.empty) if criteria else []
    options = BenchOptions(
        url=url,
        model=model,
        api_key=api_key,
        endpoint=endpoint,
        ignore_eos=ignore_eos,
        extra_body=_parse_extra_body(extra_body),
        timeout_s=timeout_s,
        wait_s=wait_s,
        concurrency=tuple(_parse_levels(concurrency, int, "concurrency")) if concurrency else (),
        rates=tuple(_parse_levels(rate, float, "rate")) if rate else (),
        burstiness=burstiness,
        ramp_up_s=ramp_up_s,
        max_concurrency=max_concurrency,
        num_requests=num_requests,
        duration_s=duration_s,
        seed=seed,
        input_len=input_len,
        output_len=output_len,
        length_dist=parse_length_dist(length_dist),
        conversations=conversations,
        prefix_len=prefix_len,
        turns=turns,
        prompts_file=prompts_file,
        slo=slo,
        percentiles=tuple(_parse_percentiles(percentiles, checks)),
        criteria=tuple(checks),
        criteria_on=criteria_on,
        out=out,
        show_progress=not no_progress,
    )
    run_bench(options, Console(highlight=False))


def _parse_levels(text: str, kind: Callable[[str], N], name: str) -> list[N]:
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise UsageError(f"--{name} takes comma-separated numbers, e.g. 1,4,16; got {text!r}") from exc
    if not values or any(v <= 0 for v in values):
        raise UsageError(f"--{name} needs positive numbers; got {text!r}")
    return values


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
