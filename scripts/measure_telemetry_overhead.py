#!/usr/bin/env python3
"""What one read of each telemetry collector costs in CPU time, and a whole /metrics scrape.

    PYTHONPATH=src python scripts/measure_telemetry_overhead.py [--reads 2000]

Collectors as on a host here without GPUs or RAPL: NVML through FakeNvml (the RTX 4080 SUPER
recording: the collector's own work, not the driver's), RAPL over a powercap tree in a temporary
folder (4 zones, real file reads), the TDP estimate over the real /proc/stat, tegrastats' collect
(plus its parse of one line, which its reader thread does per line). Prints CPU µs per read
(median and 95th percentile, thread CPU time) and the scrape's, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from wavefleet.telemetry.cpu import CpuTdpEstimate, open_rapl
from wavefleet.telemetry.exporter import Collector, PrometheusBridge, Telemetry
from wavefleet.telemetry.fake_nvml import RECORDINGS, FakeNvml
from wavefleet.telemetry.jetson import TegrastatsCollector, parse_tegrastats
from wavefleet.telemetry.nvml import open_nvml

LINE = (
    "07-29-2026 18:00:27 RAM 2272/7620MB (lfb 4x4MB) SWAP 221/3810MB (cached 0MB) CPU [0%@729,0%@1036,"
    "0%@1036,0%@1036,0%@729,0%@729] GR3D_FREQ 0% cpu@54.937C soc2@55.562C soc0@56.156C gpu@55.468C "
    "tj@56.656C soc1@56.656C VDD_IN 4673mW/4673mW VDD_CPU_GPU_CV 527mW/527mW VDD_SOC 1339mW/1339mW"
)


def powercap(root: Path) -> Path:
    for directory, name in (
        ("intel-rapl:0", "package-0"),
        ("intel-rapl:0:0", "core"),
        ("intel-rapl:0:1", "uncore"),
        ("intel-rapl:0:2", "dram"),
    ):
        (root / directory).mkdir(parents=True)
        (root / directory / "name").write_text(name + "\n")
        (root / directory / "max_energy_range_uj").write_text("262143328850\n")
        (root / directory / "energy_uj").write_text("123456789\n")
    return root


def cpu_us(call: object, reads: int) -> tuple[float, float]:
    assert callable(call)
    times = []
    for _ in range(reads):
        begin = time.thread_time_ns()
        call()
        times.append((time.thread_time_ns() - begin) / 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gpus, _ = open_nvml(FakeNvml(RECORDINGS["rtx-4080-super"]))
        rapl, _ = open_rapl(powercap(Path(tmp) / "powercap"))
        board = TegrastatsCollector()
        board.feed(LINE)
        board.feed(LINE)
        assert gpus is not None and rapl is not None
        collectors: list[Collector] = [gpus, rapl, CpuTdpEstimate(65), board]
        results = {c.name: cpu_us(c.collect, args.reads) for c in collectors}
        results["tegrastats line parse"] = cpu_us(lambda: parse_tegrastats(LINE), args.reads)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(PrometheusBridge(Telemetry(collectors)))
        results["whole /metrics scrape"] = cpu_us(lambda: generate_latest(registry), args.reads // 4)
    for name, (median, p95) in results.items():
        print(f"{name:>24}: {median:8.1f} µs CPU per read (p95 {p95:.1f})")
    print(json.dumps({name: {"median_us": m, "p95_us": p} for name, (m, p) in results.items()}))


if __name__ == "__main__":
    main()
