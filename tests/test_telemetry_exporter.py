"""The exporter answers Prometheus with valid exposition under the ecosystem's names, keeps going
when a collector breaks, and `wave telemetry` shows, serves and records it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from wavefleet.cli import cli
from wavefleet.telemetry.cpu import CpuTdpEstimate
from wavefleet.telemetry.discovery import JetsonBoard, discover, jetson_board
from wavefleet.telemetry.exporter import Telemetry, serve
from wavefleet.telemetry.fake_nvml import RECORDINGS, FakeNvml
from wavefleet.telemetry.jetson import TegrastatsCollector
from wavefleet.telemetry.nvml import open_nvml
from wavefleet.telemetry.samples import Sample

ROOT = Path(__file__).resolve().parent.parent
ORIN_NANO = (
    "07-29-2026 18:00:27 RAM 2272/7620MB (lfb 4x4MB) SWAP 221/3810MB (cached 0MB) CPU [0%@729,0%@1036] "
    "GR3D_FREQ 0% cpu@54.937C gpu@55.468C tj@56.656C VDD_IN 4673mW/4673mW VDD_CPU_GPU_CV 527mW/527mW "
    "VDD_SOC 1339mW/1339mW"
)


class Broken:
    name = "broken"

    def collect(self) -> list[Sample]:
        raise OSError("the sensor went away")

    def energy(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        pass


@pytest.fixture
def telemetry(tmp_path: Path) -> Telemetry:
    gpus, why = open_nvml(FakeNvml(RECORDINGS["rtx-4080-super"]))
    assert gpus is not None, why
    board = TegrastatsCollector()
    board.feed(ORIN_NANO, at=1.0)
    board.feed(ORIN_NANO, at=2.0)
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 0 100 0 0 0 0 0 0\n")
    return Telemetry([gpus, board, CpuTdpEstimate(65, stat=stat), Broken()])


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


def test_prometheus_reads_every_collector_and_a_broken_one_is_down(telemetry: Telemetry) -> None:
    served = serve(telemetry, host="127.0.0.1", port=0)
    try:
        text = scrape(f"http://127.0.0.1:{served.port}/metrics")
    finally:
        served.stop()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    power = families["DCGM_FI_DEV_POWER_USAGE"].samples[0]
    assert power.value == pytest.approx(84.24)
    assert power.labels == {
        "gpu": "0",
        "UUID": "GPU-00000000-0000-0000-0000-000000000000",
        "modelName": "NVIDIA GeForce RTX 4080 SUPER",
    }
    assert "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION untyped" in text  # DCGM's counter name, no _total
    assert "# TYPE wave_jetson_energy_joules_total counter" in text
    assert re.search(r'^jetson_power_watts\{rail="total"\} 4\.673$', text, re.M)
    assert re.search(r'^wave_telemetry_collector_up\{collector="broken"\} 0\.0$', text, re.M)
    assert re.search(r'^wave_telemetry_collector_up\{collector="nvml"\} 1\.0$', text, re.M)
    assert "wave_cpu_estimated_energy_joules_total" in text


def test_the_exposition_passes_promtools_lint(telemetry: Telemetry) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; ./dev test installs it")
    served = serve(telemetry, host="127.0.0.1", port=0)
    try:
        text = scrape(f"http://127.0.0.1:{served.port}/metrics")
    finally:
        served.stop()
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    problems = [
        line
        for line in (checked.stdout + checked.stderr).splitlines()
        # GPU series keep dcgm-exporter's labels (UUID, modelName) so they join with its series
        if line.strip() and "label names should be written in 'snake_case' not 'camelCase'" not in line
    ]
    assert problems == [], checked.stdout + checked.stderr


def test_a_port_in_use_is_a_clear_error(telemetry: Telemetry) -> None:
    served = serve(telemetry, host="127.0.0.1", port=0)
    try:
        runner = CliRunner()
        result = runner.invoke(
            cli,
            ["telemetry", "--serve", "--port", str(served.port), "--fake", "no-driver"],
            standalone_mode=False,
        )
        assert "cannot listen" in str(result.exception) and "--port" in str(result.exception)
    finally:
        served.stop()


def test_wave_telemetry_prints_absent_fields_as_not_supported() -> None:
    result = CliRunner().invoke(
        cli,
        ["telemetry", "--fake", "gtx-1650-max-q", "--cpu-tdp", "45", "--interval", "0.05"],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"gpu=0\s+power\s+not supported \(absent\)", result.output)
    assert "ESTIMATING from TDP 45 W" in result.output
    assert "DCGM_FI_DEV_POWER_USAGE" not in result.output
    assert "wave_gpu_energy_power_watts" in result.output


def test_wave_telemetry_json_lines() -> None:
    result = CliRunner().invoke(
        cli, ["telemetry", "--fake", "rtx-4080-super", "--json", "--interval", "0.05"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    power = [r for r in rows if r["metric"] == "DCGM_FI_DEV_POWER_USAGE"]
    assert power and power[0]["unit"] == "W" and power[0]["value"] == pytest.approx(84.24)


def test_a_recording_replays(tmp_path: Path) -> None:
    path = tmp_path / "gpu.json"
    runner = CliRunner()
    recorded = runner.invoke(cli, ["telemetry", "--fake", "jetson-orin-nano", "--record", str(path)])
    assert recorded.exit_code == 0, recorded.output
    assert json.loads(path.read_text())["devices"][0]["name"] == "Orin (nvgpu)"
    replayed = runner.invoke(cli, ["telemetry", "--fake", str(path), "--json", "--interval", "0.05"])
    assert replayed.exit_code == 0, replayed.output
    assert {json.loads(line)["metric"] for line in replayed.output.splitlines()} == {
        "wave_telemetry_unsupported"
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fake", "nope"], "neither a recording"),
        (["--cpu", "rtx-5070-ti"], "not a CPU"),
        (["--cpu", "ryzen-9-9900x", "--cpu-tdp", "50"], "not both"),
    ],
)
def test_wrong_options_say_what_to_do(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["telemetry", *args], standalone_mode=False)
    assert message in str(result.exception)


def test_wave_telemetry_serves_until_interrupted() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wavefleet",
            "telemetry",
            "--serve",
            "--port",
            "0",
            "--fake",
            "rtx-4080-super",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            found = re.search(r"serving (http://\S+/metrics)", line)
            url = found.group(1) if found else None
        assert url, "no 'serving' line"
        assert "DCGM_FI_DEV_FB_USED" in scrape(url)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_discovery_names_a_jetson_and_its_release(tmp_path: Path) -> None:
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(
        b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\0"
    )
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"
    )
    board = jetson_board(tmp_path)
    assert board == JetsonBoard(
        "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "R36.4.3"
    )
    script = tmp_path / "tegrastats"
    script.write_text(f"#!{sys.executable}\nimport time\nprint({ORIN_NANO!r}, flush=True)\ntime.sleep(60)\n")
    script.chmod(0o755)
    found = discover(
        nvml=FakeNvml(RECORDINGS["jetson-orin-nano"]),
        powercap=tmp_path / "none",
        tegrastats=str(script),
        root=tmp_path,
    )
    try:
        notes = "\n".join(found.notes)
        assert "GPU: 1 GPU(s) through NVML: gpu0 Orin (nvgpu)" in notes
        assert (
            "Jetson: NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super, L4T R36.4.3: reading"
            in notes
        )
        assert "no estimate either: give --cpu" in notes
        assert [c.name for c in found.telemetry.collectors] == ["nvml", "tegrastats"]
    finally:
        found.telemetry.close()
    assert jetson_board(tmp_path / "elsewhere") is None


def test_discovery_on_a_desktop_with_a_recorded_gpu() -> None:
    found = discover(nvml=FakeNvml(RECORDINGS["rtx-4080-super"]), tegrastats=None, root=Path("/nonexistent"))
    try:
        assert "driver 595.71.05: gpu0 NVIDIA GeForce RTX 4080 SUPER" in found.notes[0]
    finally:
        found.telemetry.close()
