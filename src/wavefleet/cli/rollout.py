"""`wave rollout`: start, watch and abort a blue-green model update on a running gateway."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

import click
from rich.console import Console

from wavefleet.agent.units import parse_duration
from wavefleet.errors import UsageError, WaveError

__all__ = ["rollout"]

GATEWAY = click.option(
    "--gateway",
    envvar="WAVE_GATEWAY",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="The gateway's address [env WAVE_GATEWAY].",
)
KEY_ENV = "WAVE_API_KEY"
PREFIX = "/admin/v1/rollouts"


class RolloutFailed(WaveError):
    """The rollout ended rolled back or aborted (`--wait`)."""


def _call(gateway: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(KEY_ENV, "").strip()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{gateway.rstrip('/')}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            answer: dict[str, Any] = json.loads(reply.read())
            return answer
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        raise UsageError(f"the gateway refused: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise UsageError(
            f"cannot reach the gateway at {gateway}: {exc}; give --gateway (or WAVE_GATEWAY) and run `wave serve`"
        ) from None


def _seconds(text: str, option: str, *, zero: bool = False) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = -1.0
    if seconds < 0 or (seconds == 0 and not zero):
        raise UsageError(f"{option} {text!r}: give a duration like 30s, 2m or 1h30m")
    return seconds


def _steps(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        steps = []
    rising = all(b > a for a, b in zip(steps, steps[1:], strict=False))
    if not steps or not rising or steps[0] < 1 or steps[-1] != 100:
        raise UsageError(f"--canary {text!r}: give rising percents that end at 100, e.g. 10,50,100")
    return steps


def _expectation(text: str) -> tuple[str, str]:
    prompt, sep, expected = text.partition("=>")
    if not sep or not prompt.strip() or not expected.strip():
        raise UsageError(f"--expect {text!r}: write PROMPT=>SUBSTRING, e.g. 'What is 2+2?=>4'")
    return prompt.strip(), expected.strip()


@click.group()
def rollout() -> None:
    """Blue-green model updates: green beside blue, proved on live traffic, promoted or rolled back.

    \b
    The gateway runs the rollout (it owns the traffic split and the live metrics); its state is
    in the gateway's wave.db, so a restarted gateway resumes it or rolls it back. Green is a model
    entry of a fleet agent (a new GGUF, context or flags under a new name in agent.yaml).

    \b
    Example:
      wave rollout start chat --to desk/chat-q5 --canary 10,50,100 --bake 30s \\
          --criteria 'error_rate<0.02,ratio.p95_ttft_ms<1.5' --expect 'Capital of France?=>Paris' --wait
      wave rollout status
      wave rollout abort
    """


@rollout.command()
@click.argument("model")
@click.option(
    "--to",
    "spec",
    required=True,
    help="Green: AGENT/ENTRY, ENTRY, or the GGUF file of a fleet agent's model entry.",
)
@click.option("--canary", default="10,50,100", show_default=True, help="Green's share per step, in percent.")
@click.option(
    "--bake",
    default="30s",
    show_default=True,
    help="A step's shortest window: it ends once this has passed and green has --min-requests.",
)
@click.option(
    "--criteria",
    default=None,
    help="`wave bench --criteria` syntax on green's live metrics; ratio.METRIC is green over blue. "
    "Default: error_rate<0.02,ratio.p95_ttft_ms<2,ratio.mean_tpot_ms<2.",
)
@click.option(
    "--drain-timeout", default="30s", show_default=True, help="Longest wait for in-flight requests."
)
@click.option(
    "--min-requests",
    type=click.IntRange(min=0),
    default=None,
    help="Green requests each step waits for. Default: from the criteria (error_rate<0.02: 21, "
    "enough to tell a 2 % error budget from 20 %; at least 10).",
)
@click.option(
    "--max-bake",
    default="10m",
    show_default=True,
    help="The longest a step waits for its --min-requests; then --not-enough-traffic applies.",
)
@click.option(
    "--not-enough-traffic",
    type=click.Choice(["rollback", "judge"]),
    default="rollback",
    show_default=True,
    help="A step that got too few requests by --max-bake: roll back, or judge on what it saw.",
)
@click.option("--expect", multiple=True, help="Quality gate: PROMPT=>SUBSTRING the answer must contain.")
@click.option("--embedding", is_flag=True, help="Smoke-test an embedding too.")
@click.option("--no-retry", is_flag=True, help="Do not retry green's failures on blue (to measure them).")
@click.option("--wait", is_flag=True, help="Follow it to the end; exit 1 when it rolls back.")
@GATEWAY
def start(
    model: str,
    spec: str,
    canary: str,
    bake: str,
    criteria: str | None,
    drain_timeout: str,
    min_requests: int | None,
    max_bake: str,
    not_enough_traffic: str,
    expect: tuple[str, ...],
    embedding: bool,
    no_retry: bool,
    wait: bool,
    gateway: str,
) -> None:
    """Start rolling MODEL out to a new version; prints the rollout's id, blue and green."""
    from wavefleet.gateway.rollout.live import parse_live_criteria
    from wavefleet.gateway.security.events import default_actor

    if criteria is not None:
        parse_live_criteria(criteria)  # a bad one is named here, before the gateway is asked

    body: dict[str, Any] = {
        "model": model,
        "to": spec,
        "canary": _steps(canary),
        "bake_s": _seconds(bake, "--bake"),
        "drain_timeout_s": _seconds(drain_timeout, "--drain-timeout", zero=True),
        "max_bake_s": _seconds(max_bake, "--max-bake"),
        "not_enough_traffic": not_enough_traffic,
        "retry_on_blue": not no_retry,
        "smoke": {"embedding": embedding, "expect": [_expectation(e) for e in expect]},
        "actor": default_actor(),
    }
    if criteria is not None:
        body["criteria"] = criteria
    if min_requests is not None:
        body["min_requests"] = min_requests
    started = _call(gateway, "POST", PREFIX, body)
    console = Console(highlight=False)
    console.print(
        f"rollout {started['id']}: {started['model']} {started['blue']['backend']}/{started['blue']['model']}"
        f" -> {started['green']['backend']}/{started['green']['model']}, steps {started['steps']}",
        markup=False,
    )
    if not wait:
        return
    last = ""
    while True:
        status = _call(gateway, "GET", PREFIX)
        ended = next((r for r in status["recent"] if r["id"] == started["id"]), None)
        active = status["active"]
        current = active if active is not None and active["id"] == started["id"] else ended
        if current is not None and current["step"] != last:
            last = current["step"]
            console.print(f"  {last} (green {current['green_weight']}%)", markup=False)
        if ended is not None and ended["phase"] in ("done", "rolled-back", "aborted"):
            console.print(f"{ended['phase']}: {ended['reason']}", markup=False)
            if ended["phase"] != "done":
                raise RolloutFailed(f"rollout {ended['id']} {ended['phase']}: {ended['reason']}")
            return
        time.sleep(0.5)


@rollout.command()
@click.option("--json", "as_json", is_flag=True, help="Print the gateway's answer as JSON.")
@GATEWAY
def status(as_json: bool, gateway: str) -> None:
    """The rollout under way (step, split, live numbers), the last ones, and served versions."""
    answer = _call(gateway, "GET", PREFIX)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    console = Console(highlight=False)
    active = answer["active"]
    if active is None:
        console.print("no rollout under way", markup=False)
    else:
        console.print(
            f"{active['id']} {active['model']}: {active['step']}, green {active['green_weight']}% "
            f"({active['green']['backend']}/{active['green']['model']})",
            markup=False,
        )
        if active.get("placement"):
            console.print(
                f"  placed {active['placement']['mode']}: {active['placement']['why']}", markup=False
            )
        for side in ("green", "blue"):
            numbers = active.get("live", {}).get(side, {})
            shown = ", ".join(
                f"{k} {v:g}"
                for k, v in numbers.items()
                if k in ("completed", "failed", "p95_ttft_ms", "mean_tpot_ms")
            )
            console.print(f"  {side}: {shown or 'no requests yet'}", markup=False)
        if active.get("baseline"):
            console.print(f"  compared with {active['baseline']}", markup=False)
        if active["phase"] == "canary":
            console.print(
                f"  window: at least {active['bake_s']:g} s and {active['min_requests']} green requests, "
                f"at most {active['max_bake_s']:g} s (then {active['not_enough_traffic']})",
                markup=False,
            )
    for done in answer["recent"]:
        if active is not None and done["id"] == active["id"]:
            continue
        console.print(f"{done['id']} {done['model']}: {done['phase']} {done['reason']}", markup=False)


@rollout.command()
@GATEWAY
def abort(gateway: str) -> None:
    """Roll back the rollout under way: all traffic to blue, green drained."""
    answer = _call(gateway, "POST", f"{PREFIX}/abort")
    click.echo(f"aborting rollout {answer['aborting']} of {answer['model']}: rolling back to blue")
