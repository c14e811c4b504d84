"""`wave sim` as a person runs it: a real process, real ports, stopped with Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from openai import OpenAI

from helpers import run_wave, serving_wave, wave_env
from wavefleet.gateway.config import load_gateway_config
from wavefleet.sim.profile import SimProfile, save_profile

ROOT = Path(__file__).resolve().parent.parent
HOME_LAB = ROOT / "examples" / "home-lab.yaml"


@contextmanager
def wave_sim(
    *args: str, until: str = r"serving; Ctrl-C stops"
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    process = subprocess.Popen(
        [sys.executable, "-m", "wavefleet", "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    output = ""
    try:
        for line in process.stdout:
            output += line
            if re.search(until, line):
                break
        else:
            pytest.fail(f"wave sim exited early:\n{output}")
        yield process, output
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
            process.stdout.close()


def urls_in(output: str) -> dict[str, str]:
    return dict(re.findall(r"^listening (\S+) (http://\S+)$", output, re.MULTILINE))


def test_sim_profile_file_serves_until_ctrl_c(tmp_path: Path) -> None:
    profile = SimProfile(
        name="from-file",
        dialect="llamacpp",
        model="tiny",
        prefill_tokens_per_s=5000,
        itl_at_batch=[(1, 0.002)],
        max_num_seqs=3,
        kv_capacity_tokens=4096,
    )
    save_profile(profile, tmp_path / "p.yaml")
    with wave_sim("--profile", str(tmp_path / "p.yaml"), "--name", "cli-engine", "--speed", "5") as (
        process,
        out,
    ):
        url = urls_in(out)["cli-engine"]
        with urllib.request.urlopen(url + "/props") as response:
            assert json.load(response)["total_slots"] == 3
        request = urllib.request.Request(
            url + "/v1/completions",
            data=json.dumps({"model": "tiny", "prompt": "a b", "max_tokens": 4}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            assert json.load(response)["usage"]["completion_tokens"] == 4
    assert process.returncode in (0, 130)


def test_sim_needs_profile_or_inventory() -> None:
    both = run_wave("sim", timeout=60)
    assert both.returncode == 2
    assert "--profile" in both.stderr and "--inventory" in both.stderr
    unknown = run_wave("sim", "--profile", "rtx5070ti-vlm", timeout=60)
    assert unknown.returncode == 2
    assert "rtx5070ti-vllm" in unknown.stderr  # the nearest known name is suggested


def test_sim_bad_profile_file_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndialect: vllm\nmodel: m\nprefill_tokens_per_s: -1\nitl_at_batch: [[1, 0.01]]\n")
    result = run_wave("sim", "--profile", str(bad), timeout=60)
    assert result.returncode == 2
    assert "bad.yaml:4" in result.stderr and "prefill_tokens_per_s" in result.stderr


def test_wave_sim_inventory_writes_a_gateway_config_and_serves(tmp_path: Path) -> None:
    pytest.importorskip(
        "wavefleet.plan.inventory", reason="the planner's inventory model is not on this branch"
    )
    out = tmp_path / "wave.yaml"
    with wave_sim("--inventory", str(HOME_LAB), "--out", str(out), "--speed", "10") as (_, output):
        config = load_gateway_config(out)
        urls = urls_in(output)
        assert {b.name for b in config.backends} == set(urls)
        assert "skipped dcgm-desktop" in output
        for backend in config.backends:
            assert str(backend.url).rstrip("/") == urls[backend.name]
            assert backend.models and backend.device and backend.gpu is not None
            assert backend.profile is not None and "x10 for --speed" in backend.profile.basis
            with urllib.request.urlopen(str(backend.url).rstrip("/") + "/v1/models") as response:
                assert json.load(response)["data"][0]["id"] == backend.models[0]
        with (
            serving_wave("--config", str(out), env=wave_env(WAVE_API_KEY="")) as gateway,
            OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0) as client,
        ):
            reply = client.chat.completions.with_raw_response.create(
                model="llama-3.2-3b", messages=[{"role": "user", "content": "hello there"}], max_tokens=5
            )
            assert reply.headers["x-wave-backend"] == "llamacpp-desktop"  # the only engine serving it
            usage = reply.parse().usage
            assert usage is not None and usage.completion_tokens == 5


def test_detach_returns_once_the_engines_listen_and_leaves_a_pid_file(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = tmp_path / "wave.yaml"
    argv = [sys.executable, "-m", "wavefleet", "sim", "--inventory", str(ROOT / "examples" / "home-lab.yaml")]
    started = subprocess.run(
        [*argv, "--out", str(out), "--detach"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int((tmp_path / "wave-sim.pid").read_text())
    try:
        assert out.exists() and "listening" in (tmp_path / "wave-sim.log").read_text()
        assert f"kill {pid}" in started.stdout
        config = yaml.safe_load(out.read_text())
        with urllib.request.urlopen(
            config["backends"][0]["url"].rstrip("/") + "/v1/models", timeout=5
        ) as reply:
            assert reply.status == 200
        again = subprocess.run(
            [*argv, "--out", str(out), "--detach"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 2 and f"already runs here (pid {pid})" in again.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
    (tmp_path / "wave-sim.pid").unlink(missing_ok=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        failed = subprocess.run(
            [*argv, "--out", str(tmp_path / "other.yaml"), "--detach", "--base-port", str(taken.getsockname()[1])],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert failed.returncode != 0 and "cannot listen" in failed.stderr
