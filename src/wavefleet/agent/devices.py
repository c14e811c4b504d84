"""What each device really has: total and free memory, and what one process uses of it.

    ram = HostMemory()                      # /proc/meminfo, capped by the cgroup's memory limit
    ram.read()                              # MemoryReading(total=..., free=..., source='...')
    gpu = GpuMemory(pynvml, index=0)        # NVML: the telemetry part's API (FakeNvml in tests)
    gpu.process_bytes(pid)                  # NVML's per-process memory, None when it cannot tell

Host RAM: the total is MemTotal, or the cgroup's limit when lower; free is MemAvailable, or what
the cgroup has left when lower (its usage less the inactive page cache it can drop). cgroup v2
(`memory.max`) and v1 (`memory.limit_in_bytes`) are both read, from the process's own group up
to the root, so a limit set on a parent counts too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pynvml

from wavefleet.telemetry.nvml import NvmlApi

__all__ = ["DeviceMemory", "GpuMemory", "HostMemory", "MemoryReading", "open_gpu"]

_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a number near 2^63


@dataclass(frozen=True, slots=True)
class MemoryReading:
    total: int
    free: int
    source: str  # where the numbers come from, for status and logs


class DeviceMemory(Protocol):
    """A device's memory as the agent needs it."""

    def read(self) -> MemoryReading: ...

    def process_bytes(self, pid: int) -> int | None:
        """Memory this process holds on the device; None when the device cannot tell."""
        ...


class HostMemory:
    """Host RAM from /proc/meminfo and the cgroup limits (see the module's docstring)."""

    def __init__(self, *, proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")) -> None:
        self._proc = proc
        self._cgroup = cgroup

    def read(self) -> MemoryReading:
        info = _meminfo(self._proc / "meminfo")
        total = info.get("MemTotal", 0)
        free = info.get("MemAvailable", info.get("MemFree", 0))
        source = "/proc/meminfo"
        limit = self._cgroup_room()
        if limit is not None:
            limit_total, limit_free = limit
            if limit_total < total or limit_free < free:
                source += " and the cgroup's memory limit"
            total, free = min(total, limit_total), min(free, limit_free)
        return MemoryReading(total=total, free=max(free, 0), source=source)

    def process_bytes(self, pid: int) -> int | None:
        """The process's resident memory (VmRSS): a cross-check, as mapped weights count once touched."""
        try:
            status = (self._proc / str(pid) / "status").read_text()
        except OSError:
            return None
        found = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.M)
        return int(found.group(1)) * 1024 if found else None

    def _cgroup_room(self) -> tuple[int, int] | None:
        """(limit, limit - usage that cannot be dropped) of the tightest group up the tree; None: no limit."""
        limits: list[int] = []
        rooms: list[int] = []
        for folder, limit_file, usage_file in self._groups():
            limit = _number(folder / limit_file)
            usage = _number(folder / usage_file)
            if limit is None or limit >= _UNLIMITED or usage is None:
                continue
            stat = _meminfo(folder / "memory.stat", unit=1, separator=" ")
            droppable = stat.get("inactive_file", stat.get("total_inactive_file", 0))
            limits.append(limit)
            rooms.append(limit - max(usage - droppable, 0))
        return (min(limits), min(rooms)) if limits else None

    def _groups(self) -> list[tuple[Path, str, str]]:
        """The memory cgroup folders of this process, its own first, then each parent up to the root."""
        found: list[tuple[Path, str, str]] = []
        try:
            lines = (self._proc / "self" / "cgroup").read_text().splitlines()
        except OSError:
            lines = []
        own = {"v2": "/", "v1": "/"}
        for line in lines:
            parts = line.split(":", 2)
            if len(parts) != 3:
                continue
            if parts[0] == "0" and parts[1] == "":
                own["v2"] = parts[2]
            elif "memory" in parts[1].split(","):
                own["v1"] = parts[2]
        for version, base, limit_file, usage_file in (
            ("v2", self._cgroup, "memory.max", "memory.current"),
            ("v1", self._cgroup / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"),
        ):
            relative = Path(own[version].lstrip("/"))
            # inside a container the group's own path is often the mount's root
            start = base / relative if (base / relative / limit_file).exists() else base
            folder = start
            while True:
                if (folder / limit_file).exists():
                    found.append((folder, limit_file, usage_file))
                if folder == base or base not in folder.parents:
                    break
                folder = folder.parent
        return found


class GpuMemory:
    """An NVIDIA GPU's memory through NVML (`pynvml`, or any `NvmlApi` such as the telemetry part's fake)."""

    def __init__(self, api: NvmlApi, index: int) -> None:
        self._api = api
        self.index = index
        self._handle: Any = api.nvmlDeviceGetHandleByIndex(index)

    def read(self) -> MemoryReading:
        memory = self._api.nvmlDeviceGetMemoryInfo(self._handle)
        return MemoryReading(total=int(memory.total), free=int(memory.free), source=f"NVML, GPU {self.index}")

    def process_bytes(self, pid: int) -> int | None:
        try:
            processes = self._api.nvmlDeviceGetComputeRunningProcesses(self._handle)
        except pynvml.NVMLError:
            return None
        used = [getattr(p, "usedGpuMemory", None) for p in processes if p.pid == pid]
        return int(used[0]) if used and used[0] is not None else None


def open_gpu(index: int, api: NvmlApi | None = None) -> GpuMemory:
    """GPU `index` through NVML; RuntimeError saying why when NVML or the GPU is not there."""
    nvml: NvmlApi = pynvml if api is None else api
    try:
        nvml.nvmlInit()
        count = nvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as exc:
        raise RuntimeError(f"NVML did not start ({exc}): no NVIDIA driver here") from exc
    if not 0 <= index < count:
        raise RuntimeError(f"NVML counts {count} GPU(s); there is no GPU {index}")
    return GpuMemory(nvml, index)


def _meminfo(path: Path, *, unit: int = 1024, separator: str = ":") -> dict[str, int]:
    """`Key: 123 kB` lines (or `key 123` ones, memory.stat) as bytes."""
    values: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, rest = line.partition(separator)
        number = rest.split()
        if number and number[0].isdigit():
            values[key.strip()] = int(number[0]) * unit
    return values


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return _UNLIMITED
    return int(text) if text.isdigit() else None
