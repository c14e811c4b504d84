"""CPU energy: RAPL's counters where the kernel exposes them, else an estimate that says it is one.

RAPL (`/sys/class/powercap/intel-rapl:*`, also used for AMD CPUs) counts µJ per zone: the
package, and below it the cores, the uncore and often DRAM. `RaplCollector` exports each zone
as node_exporter does (`node_rapl_<zone>_joules_total{index, path}`, the raw counter in J) and
keeps a total across wraps at `max_energy_range_uj`. The CPU's energy for attribution is the
packages plus DRAM (DRAM is not inside the package's count); the `intel-rapl-mmio` zones repeat
the package through another interface and are not added again.

Where there is no RAPL (a VM, an ARM board, or counters readable by root only),
`CpuTdpEstimate` estimates power from the CPU's TDP and its utilisation in /proc/stat:
TDP x (idle share + (1 - idle share) x utilisation), with an idle share of 20 % unless told
otherwise. It is an assumption, exported under its own names (`wave_cpu_estimated_*`) so it is
never mistaken for a measurement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wavefleet.telemetry import names
from wavefleet.telemetry.counter import EnergyTotal
from wavefleet.telemetry.samples import Sample

__all__ = [
    "DEFAULT_IDLE_SHARE",
    "POWERCAP",
    "CpuTdpEstimate",
    "RaplCollector",
    "RaplZone",
    "open_rapl",
    "read_cpu_times",
]

POWERCAP = Path("/sys/class/powercap")
PROC_STAT = Path("/proc/stat")
DEFAULT_IDLE_SHARE = 0.2


@dataclass(kw_only=True)
class RaplZone:
    path: Path
    name: str  # node_exporter's: "package" for "package-0", "dram", "core", ...
    index: int
    energy: EnergyTotal
    counts_for_cpu: bool

    @property
    def labels(self) -> dict[str, str]:
        return {"index": str(self.index), "path": str(self.path)}


def open_rapl(
    root: Path = POWERCAP, *, clock: Callable[[], float] = time.monotonic
) -> tuple[RaplCollector | None, str]:
    """The RAPL collector for this machine, or None and why there is none."""
    if not root.is_dir():
        return None, f"no RAPL here ({root} is missing: a VM, or a CPU without RAPL)"
    zones = _zones(root)
    if not zones:
        return None, f"no RAPL zones under {root}"
    try:
        (zones[0].path / "energy_uj").read_text()
    except PermissionError:
        return None, (
            f"RAPL is here but {zones[0].path}/energy_uj is readable by root only: "
            "run as root, or grant read access (e.g. a udev rule setting mode 0444)"
        )
    except OSError as exc:
        return None, f"RAPL counters under {root} cannot be read ({exc.strerror})"
    return RaplCollector(zones, clock=clock), f"RAPL: {', '.join(f'{z.name}-{z.index}' for z in zones)}"


def _zones(root: Path) -> list[RaplZone]:
    zones = []
    seen: dict[str, int] = {}
    for entry in sorted(root.iterdir()):
        try:
            raw_name = (entry / "name").read_text().strip()
        except OSError:
            continue  # the control type directory (intel-rapl) has no name
        name, index = _index_and_name(raw_name, seen)
        seen[name] = index + 1
        try:
            wraps_at: float | None = int((entry / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            wraps_at = None
        counts = entry.name.startswith("intel-rapl:") and name in ("package", "dram")
        zones.append(
            RaplZone(
                path=entry,
                name=name,
                index=index,
                energy=EnergyTotal(scale=1e-6, wraps_at=wraps_at),
                counts_for_cpu=counts,
            )
        )
    return zones


def _index_and_name(name: str, seen: dict[str, int]) -> tuple[str, int]:
    """node_exporter's rule: "package-0" is package, index 0; a name without one is numbered by use."""
    head, _, tail = name.partition("-")
    if tail.isdigit() and "-" not in tail:
        return head, int(tail)
    return name, seen.get(name, 0)


class RaplCollector:
    name = "rapl"

    def __init__(self, zones: list[RaplZone], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.zones = zones
        self.clock = clock
        self._last: dict[Path, tuple[float, float]] = {}  # zone -> (time, joules)
        self.errors: dict[str, str] = {}

    def close(self) -> None:
        pass

    def energy(self) -> dict[str, float]:
        """The CPU's joules since the first read: packages plus DRAM, wraps handled."""
        counted = [z for z in self.zones if z.counts_for_cpu]
        return {"cpu": sum(z.energy.joules for z in counted)} if counted else {}

    def collect(self) -> list[Sample]:
        out = []
        self.errors.clear()
        for zone in self.zones:
            try:
                raw = int((zone.path / "energy_uj").read_text())
            except (OSError, ValueError) as exc:
                self.errors[str(zone.path)] = str(exc)
                continue
            joules = zone.energy.update(raw)
            now = self.clock()
            out.append(Sample(names.rapl_metric(zone.name), raw / 1e6, zone.labels))
            last = self._last.get(zone.path)
            if last is not None and now > last[0]:
                watts = (joules - last[1]) / (now - last[0])
                out.append(Sample(names.RAPL_POWER, watts, zone.labels | {"zone": zone.name}))
            self._last[zone.path] = (now, joules)
        return out


def read_cpu_times(stat: Path = PROC_STAT) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat's first line."""
    fields = stat.read_text().split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu":
        raise ValueError(f"{stat} does not start with the 'cpu' line")
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    values = [int(v) for v in fields[1:9]]
    total = sum(values)
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return total - idle, total


class CpuTdpEstimate:
    """CPU power estimated from TDP and utilisation (see the module doc): not a measurement."""

    name = "cpu-estimate"

    def __init__(
        self,
        tdp_w: float,
        *,
        idle_share: float = DEFAULT_IDLE_SHARE,
        stat: Path = PROC_STAT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if tdp_w <= 0 or not 0 <= idle_share <= 1:
            raise ValueError("TDP must be positive and the idle share between 0 and 1")
        self.tdp_w, self.idle_share, self.stat, self.clock = tdp_w, idle_share, stat, clock
        self.joules = 0.0
        self._last: tuple[float, int, int] | None = None  # (time, busy, total)

    def close(self) -> None:
        pass

    def energy(self) -> dict[str, float]:
        return {"cpu-estimate": self.joules}

    def collect(self) -> list[Sample]:
        busy, total = read_cpu_times(self.stat)
        now = self.clock()
        last, self._last = self._last, (now, busy, total)
        labels = {"basis": "tdp", "tdp_w": f"{self.tdp_w:g}", "idle_share": f"{self.idle_share:g}"}
        out = [Sample(names.CPU_ESTIMATED_ENERGY, self.joules, labels)]
        if last is None or total <= last[2] or now <= last[0]:
            return out  # one reading: no utilisation yet, so no power
        utilisation = min(1.0, max(0.0, (busy - last[1]) / (total - last[2])))
        watts = self.tdp_w * (self.idle_share + (1 - self.idle_share) * utilisation)
        self.joules += watts * (now - last[0])
        return [
            Sample(names.CPU_ESTIMATED_ENERGY, self.joules, labels),
            Sample(names.CPU_ESTIMATED_POWER, watts, labels),
            Sample(names.CPU_UTILIZATION, utilisation),
        ]
