"""Which collectors apply on this host, and why the others do not.

- NVIDIA GPUs: NVML starts and counts at least one GPU.
- CPU: RAPL counters readable under /sys/class/powercap; else, given the CPU's TDP (a catalog id
  or watts), the TDP estimate; else nothing, and the note says how to get the estimate.
- Jetson: a `tegrastats` on the PATH (JetPack ships it); its process runs until `close()`. The
  board and its L4T release are named from /proc/device-tree/model and /etc/nv_tegra_release
  (as jetson-stats reads them).

Every choice is written down in `Discovered.notes`, for `wave telemetry` to show.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from wavefleet.telemetry.cpu import DEFAULT_IDLE_SHARE, POWERCAP, CpuTdpEstimate, open_rapl
from wavefleet.telemetry.exporter import Collector, Telemetry
from wavefleet.telemetry.jetson import TEGRASTATS, TegrastatsCollector
from wavefleet.telemetry.nvml import NvmlApi, open_nvml

__all__ = ["Discovered", "JetsonBoard", "discover", "jetson_board"]


@dataclass(frozen=True)
class JetsonBoard:
    model: str  # "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    l4t: str  # "R36.4.3", or "" when /etc/nv_tegra_release is missing


def jetson_board(root: Path = Path("/")) -> JetsonBoard | None:
    """The Jetson this is, from the device tree and the L4T release file; None elsewhere."""
    try:
        model = (root / "proc/device-tree/model").read_bytes().rstrip(b"\0").decode(errors="replace").strip()
    except OSError:
        return None
    if "jetson" not in model.lower():
        return None
    try:
        release = (root / "etc/nv_tegra_release").read_text()
    except OSError:
        release = ""
    # "# R36 (release), REVISION: 4.3, GCID: ..."
    found = re.search(r"#\s*(R\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
    return JetsonBoard(model, f"{found.group(1)}.{found.group(2)}" if found else "")


@dataclass
class Discovered:
    telemetry: Telemetry
    notes: list[str] = field(default_factory=list)


def discover(
    *,
    nvml: NvmlApi | None = None,
    powercap: Path = POWERCAP,
    cpu_tdp_w: float | None = None,
    cpu_idle_share: float = DEFAULT_IDLE_SHARE,
    tegrastats: str | None = None,
    tegrastats_interval_ms: int = 500,
    root: Path = Path("/"),
) -> Discovered:
    """The collectors for this host. `tegrastats` is the program's path (default: the PATH's)."""
    collectors: list[Collector] = []
    notes = []
    gpus, why = open_nvml(nvml)
    notes.append(f"GPU: {why}")
    if gpus is not None:
        collectors.append(gpus)
    rapl, why = open_rapl(powercap)
    if rapl is not None:
        collectors.append(rapl)
        notes.append(f"CPU: {why}")
    elif cpu_tdp_w is not None:
        collectors.append(CpuTdpEstimate(cpu_tdp_w, idle_share=cpu_idle_share))
        notes.append(
            f"CPU: {why}; ESTIMATING from TDP {cpu_tdp_w:g} W and utilisation "
            f"(idle at {cpu_idle_share:.0%} of TDP, an assumption)"
        )
    else:
        notes.append(f"CPU: {why}; no estimate either: give --cpu (a catalog id) or --cpu-tdp WATTS")
    program = tegrastats or shutil.which(TEGRASTATS)
    jetson = jetson_board(root)
    named = f"{jetson.model}{f', L4T {jetson.l4t}' if jetson.l4t else ''}: " if jetson else ""
    if program is None:
        notes.append(
            f"Jetson: {named}no tegrastats on the PATH (JetPack installs /usr/bin/tegrastats)"
            if jetson
            else "Jetson: no tegrastats here (not a Jetson)"
        )
    else:
        board = TegrastatsCollector()
        board.start([program, "--interval", str(tegrastats_interval_ms)])
        collectors.append(board)
        notes.append(f"Jetson: {named}reading {program} every {tegrastats_interval_ms} ms")
    return Discovered(Telemetry(collectors), notes)
