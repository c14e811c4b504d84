"""CPU energy: RAPL read from a sysfs tree replaying a counter trace (this machine has no RAPL),
and the TDP estimate from /proc/stat."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wavefleet.telemetry import names
from wavefleet.telemetry.cpu import CpuTdpEstimate, open_rapl, read_cpu_times
from wavefleet.telemetry.samples import Sample

RANGE_UJ = 262_143_328_850  # max_energy_range_uj of an Intel package


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def zone(root: Path, directory: str, name: str, energy_uj: int, max_uj: int = RANGE_UJ) -> Path:
    path = root / directory
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    return path


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    """A laptop's powercap tree: the package, its cores and DRAM, and the MMIO copy of the package."""
    root = tmp_path / "powercap"
    (root / "intel-rapl").mkdir(parents=True)
    (root / "intel-rapl" / "enabled").write_text("1\n")
    zone(root, "intel-rapl:0", "package-0", RANGE_UJ - 20_000_000)
    zone(root, "intel-rapl:0:0", "core", 5_000_000)
    zone(root, "intel-rapl:0:2", "dram", 1_000_000)
    zone(root, "intel-rapl-mmio:0", "package-0", RANGE_UJ - 20_000_000)
    return root


def set_energy(root: Path, directory: str, energy_uj: int) -> None:
    (root / directory / "energy_uj").write_text(f"{energy_uj}\n")


def test_rapl_zones_export_under_node_exporters_names(powercap: Path) -> None:
    collector, why = open_rapl(powercap)
    assert collector is not None, why
    samples = collector.collect()
    by_name: dict[str, list[Sample]] = {}
    for s in samples:
        by_name.setdefault(s.metric.name, []).append(s)
    assert set(by_name) == {
        "node_rapl_package_joules_total",
        "node_rapl_core_joules_total",
        "node_rapl_dram_joules_total",
    }
    assert {s.labels["path"] for s in by_name["node_rapl_package_joules_total"]} == {
        str(powercap / "intel-rapl:0"),
        str(powercap / "intel-rapl-mmio:0"),
    }
    assert by_name["node_rapl_dram_joules_total"][0].value == pytest.approx(1.0)  # µJ -> J, as node_exporter


def test_a_replayed_trace_with_a_wrap_gives_cpu_energy_and_power(powercap: Path) -> None:
    clock = Clock()
    collector, _ = open_rapl(powercap, clock=clock)
    assert collector is not None
    collector.collect()
    # one second at 35 W package + 3 W DRAM; the package counter wraps on the way
    clock.now += 1
    set_energy(powercap, "intel-rapl:0", 15_000_000)  # 20 J to the wrap, 15 J after it
    set_energy(powercap, "intel-rapl-mmio:0", 15_000_000)
    set_energy(powercap, "intel-rapl:0:2", 4_000_000)
    set_energy(powercap, "intel-rapl:0:0", 30_000_000)
    samples = collector.collect()
    assert collector.energy()["cpu"] == pytest.approx(35 + 3)  # package + DRAM, the MMIO copy not again
    package = [
        s for s in samples if s.metric == names.RAPL_POWER and s.labels["path"].endswith("intel-rapl:0")
    ]
    assert package[0].value == pytest.approx(35)
    assert collector.zones[0].energy.wraps == 1


def test_no_rapl_says_why(tmp_path: Path) -> None:
    collector, why = open_rapl(tmp_path / "absent")
    assert collector is None and "no RAPL here" in why
    (tmp_path / "empty").mkdir()
    assert "no RAPL zones" in open_rapl(tmp_path / "empty")[1]


def test_counters_readable_by_root_only_say_so(powercap: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file: run as a normal user to see the permission message")
    for path in powercap.glob("*/energy_uj"):
        path.chmod(0o200)
    collector, why = open_rapl(powercap)
    assert collector is None and "root only" in why


def stat_line(user: int, idle: int) -> str:
    return f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {user} 0 0 {idle} 0 0 0 0 0 0\n"


def test_the_tdp_estimate_says_it_is_one_and_follows_utilisation(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(stat_line(1000, 1000))
    clock = Clock()
    estimate = CpuTdpEstimate(120, stat=stat, clock=clock)
    first = estimate.collect()
    assert {s.metric for s in first} == {names.CPU_ESTIMATED_ENERGY}  # no utilisation yet: no power
    clock.now += 10
    stat.write_text(stat_line(1500, 1500))  # half the time busy
    samples = {s.metric: s for s in estimate.collect()}
    assert samples[names.CPU_UTILIZATION].value == pytest.approx(0.5)
    assert samples[names.CPU_ESTIMATED_POWER].value == pytest.approx(120 * (0.2 + 0.8 * 0.5))
    assert samples[names.CPU_ESTIMATED_ENERGY].value == pytest.approx(72 * 10)
    assert samples[names.CPU_ESTIMATED_POWER].labels["basis"] == "tdp"
    assert "ESTIMATED" in names.CPU_ESTIMATED_POWER.help
    assert estimate.energy() == {"cpu-estimate": pytest.approx(720)}


def test_this_machines_proc_stat_reads() -> None:
    busy, total = read_cpu_times()
    assert 0 <= busy <= total


def test_a_stat_file_that_is_not_proc_stat_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "stat"
    bad.write_text("intr 1 2 3\n")
    with pytest.raises(ValueError, match="'cpu' line"):
        read_cpu_times(bad)
