"""Every roadmap criterion runs with `wave bench --criteria` as printed, against `wave sim` of the plan.

The simulated fleet runs `--speed` times faster than the devices, so the test scales each printed
threshold by the same factor (throughputs up, latencies down, plus FIXED_MS on first-token and
end-to-end latencies) before it runs the printed command against the simulated engine of the
step's deployment.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wavefleet.catalog import Catalog
from wavefleet.plan.inventory import default_inventory_path, load_inventory
from wavefleet.plan.planned import planned_inventory_yaml
from wavefleet.plan.planner import build_plan

SPEED = 10.0
# What one request costs the bench client and the simulator's HTTP server, which the speed-up does
# not shrink: a few milliseconds, and up to ~20 ms of dispatch lag on a 2-core machine at load 9,
# added to scaled first-token and end-to-end thresholds (per-token ones have no such fixed part).
FIXED_MS = 25.0
ROOT = Path(__file__).resolve().parents[1]


def _scaled(criterion: str) -> str:
    metric, op, value = re.fullmatch(r"([a-z0-9_]+)(<=|>=|<|>)(.+)", criterion).groups()  # type: ignore[union-attr]
    number = float(value)
    if metric.endswith("_tps"):
        number *= SPEED
    elif metric.endswith("_ms"):
        number = number / SPEED + (FIXED_MS if "ttft" in metric or "e2el" in metric else 0.0)
    return f"{metric}{op}{number:g}"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], list[tuple[str, str]]]:
    catalog = Catalog.load()
    inventory = load_inventory(default_inventory_path(), catalog)
    plan = build_plan(inventory, catalog)
    work = tmp_path_factory.mktemp("roadmap")
    (work / "planned.yaml").write_text(planned_inventory_yaml(inventory, plan))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    started = subprocess.run(
        [sys.executable, "-m", "wavefleet", "sim", "--inventory", "planned.yaml", "--speed", str(SPEED),
         "--out", "wave.yaml", "--detach"],
        cwd=work, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int((work / "wave-sim.pid").read_text())
    try:
        config = yaml.safe_load((work / "wave.yaml").read_text())
        urls = {b["name"]: b["url"] for b in config["backends"]}
        steps = [
            (step.deployment, step.command)
            for phase in plan.roadmap
            for step in phase.steps
            if step.criteria and step.deployment is not None
        ]
        yield urls, steps
    finally:
        os.kill(pid, signal.SIGTERM)


def test_every_deploying_step_has_criteria_and_a_command(
    simulated: tuple[dict[str, str], list[tuple[str, str]]],
) -> None:
    catalog = Catalog.load()
    plan = build_plan(load_inventory(default_inventory_path(), catalog), catalog)
    for phase in plan.roadmap:
        for step in phase.steps:
            if step.action.startswith("Serve ") and "no load test" not in step.action:
                assert step.criteria and step.command, step.action
                assert f"--criteria '{','.join(step.criteria)}'" in step.command


def test_every_criterion_passes_on_the_simulated_plan(
    simulated: tuple[dict[str, str], list[tuple[str, str]]],
) -> None:
    urls, steps = simulated
    assert steps
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    seen: set[tuple[str, str]] = set()
    for deployment, command in steps:
        if (deployment, command) in seen:
            continue
        seen.add((deployment, command))
        argv = shlex.split(command)
        assert argv[:2] == ["wave", "bench"]
        argv[argv.index("--url") + 1] = urls[deployment].rstrip("/") + "/v1"
        at = argv.index("--criteria") + 1
        argv[at] = ",".join(_scaled(c) for c in argv[at].split(","))
        done = subprocess.run(
            [sys.executable, "-m", "wavefleet", "bench", *argv[2:], "--no-progress"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"{deployment}: {argv[at]}\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
