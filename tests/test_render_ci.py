"""The model pipeline's CI job: a Jenkinsfile on the inventory's CI runner whose shell steps run
the real `wave model` commands in order (here, outside Jenkins, as Jenkins runs them: sh -xe)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_wave, wave_env
from wavefleet.catalog import Catalog
from wavefleet.engines import EngineKind
from wavefleet.errors import MissingExtraError
from wavefleet.models.bundled import bundled_model_path
from wavefleet.models.quantize import INSTALL_FIX, find_llama_quantize
from wavefleet.plan.inventory import default_inventory_path, load_inventory
from wavefleet.render.ci import JENKINSFILE, jenkinsfile_problems, shell_steps
from wavefleet.render.from_inventory import EngineSource, fleet_from_inventory
from wavefleet.render.render import render_fleet, render_to
from wavefleet.render.spec import FleetSpec


def home_lab(source: EngineSource = EngineSource.PLAN) -> FleetSpec:
    catalog = Catalog.load()
    return fleet_from_inventory(
        load_inventory(default_inventory_path(), catalog), catalog, source=source
    ).fleet


def test_the_ci_runner_of_the_home_lab_gets_the_job() -> None:
    fleet = home_lab()
    assert fleet.ci is not None and fleet.ci.node == "xps15-lxc-106"  # LXC 106 runs Jenkins
    tree = render_fleet(fleet)
    text = tree.artifacts[f"xps15-lxc-106/{JENKINSFILE}"].content
    assert jenkinsfile_problems(text) == []
    fetch, quantize, check, rollout = shell_steps(text)
    assert '"$WAVE" model fetch "$SOURCE"' in fetch
    assert fetch.startswith("set -eu +x\n")  # no trace of a URL that may carry a token
    assert '"$WAVE" model quantize' in quantize and '--type "$QUANT"' in quantize
    assert '"$WAVE" model check' in check and "--out check.json" in check
    assert '"$WAVE" rollout start "$MODEL"' in rollout
    # the rollout stage runs only when asked, and says what it needs
    stage = text[text.index("stage('Roll out')") :]
    assert "expression { return params.ROLLOUT }" in stage and "fleet runtime" in stage
    assert "vllm" not in text.split("stages {", 1)[1]  # not the seed's `vllm quantize … --dtype fp8`
    # every llama.cpp engine the render placed is a choice, with its placement for the check
    for engine in fleet.engines:
        if engine.kind is EngineKind.LLAMACPP:
            assert f"'{engine.name}'" in text
            assert f"{engine.name}) set -- --device {engine.device} --ctx {engine.max_model_len}" in check
    readme = tree.artifacts["xps15-lxc-106/README.md"].content
    assert "Pipeline job `wavefleet-model`" in readme and "/opt/wavefleet/venv" in readme


def test_an_inventory_without_a_ci_runner_renders_no_job_and_says_so(tmp_path: Path) -> None:
    text = default_inventory_path().read_text()
    assert "runs: [jenkins]" in text
    inventory = tmp_path / "no-ci.yaml"
    inventory.write_text(text.replace("runs: [jenkins]", "runs: []"))
    done = run_wave("render", "--inventory", str(inventory), "--out", str(tmp_path / "out"), env=wave_env())
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "CI job: none rendered" in said and "jenkins" in said
    assert not list((tmp_path / "out").rglob(JENKINSFILE))
    done = run_wave("render", "--out", str(tmp_path / "with"), env=wave_env())
    said = " ".join(done.stdout.split())
    assert f"CI job: xps15-lxc-106/{JENKINSFILE}" in said


def test_the_check_finds_what_would_break_the_jenkinsfile() -> None:
    text = "pipeline {\n  stages {\n    sh '''\n      echo a\\\\b\n    '''\n  }\n"
    problems = jenkinsfile_problems(text)
    assert any("left open" in p for p in problems)
    assert any("backslash" in p for p in problems) and any("set -eu" in p for p in problems)
    assert jenkinsfile_problems("a { b(')') }\n// } a comment\n") == []


@pytest.fixture(scope="module")
def llama_quantize() -> Path:
    try:
        return find_llama_quantize().path
    except MissingExtraError:
        pytest.skip(f"llama-quantize is not built here; {INSTALL_FIX}")


def test_the_rendered_steps_run_the_pipeline_for_real(llama_quantize: Path, tmp_path: Path) -> None:
    fleet = home_lab()
    out = tmp_path / "deploy"
    render_to(fleet, out)
    assert fleet.ci is not None
    fetch, quantize, check, _rollout = shell_steps((out / fleet.ci.node / JENKINSFILE).read_text())
    wave = tmp_path / "bin" / "wave"
    wave.parent.mkdir()
    wave.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m wavefleet "$@"\n')
    wave.chmod(0o755)
    source = bundled_model_path()
    env = wave_env(
        WAVE=str(wave),
        SOURCE=str(source),
        SHA256=hashlib.sha256(source.read_bytes()).hexdigest(),
        MODEL="smollm2",
        QUANT="Q4_0",
        ALLOW_REQUANTIZE="true",  # the bundled file is Q4_1 already
        ENGINE="llamacpp-ryzen-9-9900x",
        ROLLOUT="false",
        MODELS_DIR=str(tmp_path / "models"),
        WAVE_DB=str(tmp_path / "wave.db"),
        WAVE_ACTOR="jenkins:wavefleet-model#7",
    )
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    for name, step in (("fetch", fetch), ("quantize", quantize), ("check", check)):
        done = subprocess.run(
            ["/bin/sh", "-xe", "-c", step],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
    report = json.loads((workspace / "check.json").read_text())
    assert report["passed"] is True and report["model"]["file_type"] == "Q4_0"
    assert report["placement"]["device"] == "ryzen-9-9900x"
    assert (tmp_path / "models" / "smollm2-Q4_0.gguf").is_file()
    rows = sqlite3.connect(tmp_path / "wave.db").execute(
        "SELECT actor, action, outcome FROM events ORDER BY id"
    )
    assert rows.fetchall() == [
        ("jenkins:wavefleet-model#7", "model.fetch", "ok"),
        ("jenkins:wavefleet-model#7", "model.quantize", "ok"),
        ("jenkins:wavefleet-model#7", "model.check", "ok"),
    ]
    # an ENGINE the job was not rendered for stops the check with a clear message
    env["ENGINE"] = "llamacpp-elsewhere"
    done = subprocess.run(
        ["/bin/sh", "-e", "-c", check], cwd=workspace, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and "not an engine this job was rendered for" in done.stderr
