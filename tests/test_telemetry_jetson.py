"""tegrastats: recorded lines from several Jetson boards and releases (tests/data/tegrastats.txt,
each with its source), the collector's samples and energy, and a real tegrastats-like process."""

from __future__ import annotations

import gc
import sys
import time
import warnings
from pathlib import Path

import pytest

from wavefleet.telemetry import names
from wavefleet.telemetry.jetson import TegrastatsCollector, TegrastatsFormatError, parse_tegrastats

DATA = Path(__file__).parent / "data" / "tegrastats.txt"


def recorded() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    current = ""
    for line in DATA.read_text().splitlines():
        if line.startswith("# [") and "]" in line:
            current = line[3 : line.index("]")]
        elif line and not line.startswith("#"):
            groups.setdefault(current, []).append(line)
    return groups


LINES = recorded()


def test_every_recorded_line_has_a_source_and_parses() -> None:
    text = DATA.read_text()
    assert set(LINES) == {"orin-nano", "orin-nx", "agx-orin", "xavier", "nano", "documented"}
    assert text.count("# source:") == 5  # the documented group cites the grammar instead
    for group, lines in LINES.items():
        for line in lines:
            sample = parse_tegrastats(line)
            assert sample.input_mw, group
            assert sample.ram_total_mb, group


def test_an_orin_nano_line() -> None:
    sample = parse_tegrastats(LINES["orin-nano"][0])
    assert sample.timestamp == "07-29-2026 18:00:27"
    assert (sample.ram_used_mb, sample.ram_total_mb) == (2272, 7620)
    assert sample.gpu_load_pct == 0 and sample.gpu_freq_mhz is None
    assert sample.rails == {
        "VDD_IN": (4673, 4673),
        "VDD_CPU_GPU_CV": (527, 527),
        "VDD_SOC": (1339, 1339),
    }
    assert sample.input_rail == "VDD_IN" and sample.input_mw == 4673
    assert sample.temperatures["tj"] == pytest.approx(56.656)
    assert set(sample.temperatures) == {"cpu", "soc2", "soc0", "gpu", "tj", "soc1"}


def test_a_loggers_prefix_and_changing_averages() -> None:
    sample = parse_tegrastats(LINES["orin-nx"][2])
    assert sample.timestamp == "06-25-2025 09:43:12"
    assert sample.rails["VDD_IN"] == (5712, 5774)
    assert sample.temperatures["cv2"] == pytest.approx(51.156)


def test_a_board_without_an_input_rail_sums_its_rails() -> None:
    sample = parse_tegrastats(LINES["agx-orin"][0])
    assert sample.input_rail is None
    assert sample.input_mw == 5193 + 1997 + 4421 + 502


def test_older_releases_without_units_and_the_nanos_input_rail() -> None:
    xavier = parse_tegrastats(LINES["xavier"][0])
    assert xavier.rails["VDD_IN"] == (14025, 14416)
    assert (xavier.gpu_load_pct, xavier.gpu_freq_mhz) == (59, 1300)
    assert xavier.ram_used_mb == 4722
    assert xavier.temperatures["BCPU"] == -45
    assert "NVENC" not in xavier.rails
    nano = parse_tegrastats(LINES["nano"][0])
    assert nano.input_rail == "POM_5V_IN" and nano.input_mw == 4520
    assert nano.gpu_freq_mhz == 76


def test_one_frequency_per_gpc_and_absent_sensors() -> None:
    sample = parse_tegrastats(LINES["documented"][0])
    assert (sample.gpu_load_pct, sample.gpu_freq_mhz) == (97, 1020)
    assert "cv0" not in sample.temperatures  # -256C: not fitted
    assert sample.input_mw == 14650


@pytest.mark.parametrize("line", ["", "hello", "CPU [0%@729] GR3D_FREQ 0%", "RAMP 1/2"])
def test_lines_that_are_not_tegrastats_are_refused(line: str) -> None:
    with pytest.raises(TegrastatsFormatError, match="not a tegrastats line"):
        parse_tegrastats(line)


def test_the_collector_exports_the_latest_line_and_integrates_energy() -> None:
    collector = TegrastatsCollector()
    assert collector.collect() == [] and collector.energy() == {}
    collector.feed(LINES["orin-nx"][0], at=10.0)  # 5.793 W
    collector.feed("garbage", at=10.5)
    collector.feed(LINES["orin-nx"][2], at=11.0)  # 5.712 W
    assert collector.bad_lines == 1
    assert collector.energy()["board"] == pytest.approx((5.793 + 5.712) / 2)
    samples = collector.collect()
    power = {s.labels["rail"]: s.value for s in samples if s.metric == names.JETSON_POWER}
    assert power == {"VDD_IN": 5.712, "VDD_CPU_GPU_CV": 1.172, "VDD_SOC": 1.579, "total": 5.712}
    by_metric = {s.metric: s.value for s in samples if not s.labels}
    assert by_metric[names.JETSON_RAM_USED_RATIO] == pytest.approx(3412 / 15657)
    assert by_metric[names.JETSON_GPU_UTILIZATION] == 0
    assert by_metric[names.JETSON_ENERGY] == pytest.approx(5.7525)
    sensors = {s.labels["sensor"] for s in samples if s.metric == names.JETSON_TEMPERATURE}
    assert {"cpu", "gpu", "tj"} <= sensors


def test_a_line_without_rails_says_power_is_absent() -> None:
    collector = TegrastatsCollector()
    rails = LINES["orin-nano"][0].index(" VDD_IN")
    collector.feed(
        LINES["orin-nano"][0][:rails], at=1.0
    )  # as tegrastats prints it to a normal user on some images
    samples = collector.collect()
    assert not [s for s in samples if s.metric in (names.JETSON_POWER, names.JETSON_ENERGY)]
    assert [s.labels for s in samples if s.metric == names.UNSUPPORTED] == [{"field": "power_rails"}]
    assert collector.energy() == {}


def test_the_collector_reads_a_running_tegrastats(tmp_path: Path) -> None:
    script = tmp_path / "tegrastats"
    lines = LINES["orin-nano"]
    script.write_text(
        f"#!{sys.executable}\nimport sys, time\n"
        f"for line in {lines!r} * 50:\n    print(line, flush=True)\n    time.sleep(0.02)\n"
        "time.sleep(60)\n"
    )
    script.chmod(0o755)
    collector = TegrastatsCollector()
    collector.start([str(script), "--interval", "20"])
    assert collector.running
    try:
        deadline = time.monotonic() + 20
        while collector.energy().get("board", 0) <= 0:
            assert time.monotonic() < deadline, "no energy from the running tegrastats"
            time.sleep(0.02)
        samples = collector.collect()
        assert any(s.metric == names.JETSON_POWER and s.labels["rail"] == "total" for s in samples)
    finally:
        collector.close()
    assert not collector.running
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del collector
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []  # its pipe was closed
