"""NVIDIA GPUs through NVML (`nvidia-ml-py`, module `pynvml`), exported under DCGM's field names.

`NvmlCollector` asks each GPU for power, the total energy counter, the power limit, utilisation,
memory, temperature, clocks, the P-state, clock event (throttle) reasons and per-process memory.
Every question can come back "not supported" (a laptop GPU's power, any question to a Jetson's
"Orin (nvgpu)", the energy counter before Volta): that metric is then absent, never zero, the
field is listed under `wave_telemetry_unsupported`, and it is not asked again. Other NVML errors
(a GPU fallen off the bus, no permission) leave that field absent for this read only.

`NvmlApi` is the subset of pynvml the collector calls: the `pynvml` module itself satisfies it,
and so does `FakeNvml` (wavefleet.telemetry.fake_nvml), which tests and demos use instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pynvml

from wavefleet.telemetry import names
from wavefleet.telemetry.counter import EnergyTotal
from wavefleet.telemetry.samples import Metric, Sample

__all__ = ["GpuDevice", "NvmlApi", "NvmlCollector", "open_nvml"]

T = TypeVar("T")
MIB = 1024 * 1024
# Answers that mean "this GPU or driver cannot tell": the field is absent for good.
_NEVER = {pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND}


class NvmlApi(Protocol):
    """The pynvml functions the collector uses (same names, same arguments, same errors)."""

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetName(self, handle: Any) -> str: ...
    def nvmlDeviceGetUUID(self, handle: Any) -> str: ...
    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int: ...
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int: ...
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any: ...
    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int: ...
    def nvmlDeviceGetClockInfo(self, handle: Any, clock: int) -> int: ...
    def nvmlDeviceGetPerformanceState(self, handle: Any) -> int: ...
    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int: ...
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]: ...


@dataclass(kw_only=True)
class GpuDevice:
    """One GPU: how to reach it, its labels, what it cannot answer, and its energy so far."""

    index: int
    handle: Any
    name: str
    uuid: str
    unsupported: set[str] = field(default_factory=set)
    memory_v2: bool = True
    energy: EnergyTotal = field(default_factory=lambda: EnergyTotal(scale=1e-3))
    energy_at: float | None = None  # when `energy` was last updated (monotonic s)
    errors: dict[str, str] = field(default_factory=dict)  # field -> last error this read

    @property
    def key(self) -> str:
        return f"gpu{self.index}"

    @property
    def labels(self) -> dict[str, str]:
        return {"gpu": str(self.index), "UUID": self.uuid, "modelName": self.name}


def open_nvml(api: NvmlApi | None = None) -> tuple[NvmlCollector | None, str]:
    """The collector for this machine's GPUs, or None and why there is none."""
    nvml: NvmlApi = pynvml if api is None else api  # the module satisfies the protocol
    try:
        nvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return None, f"NVML did not start ({exc}): no NVIDIA driver here"
    try:
        count = nvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as exc:
        nvml.nvmlShutdown()
        return None, f"NVML could not count GPUs ({exc})"
    if count == 0:
        nvml.nvmlShutdown()
        return None, "NVML found no GPU"
    collector = NvmlCollector(nvml, count)
    try:
        version = _text(nvml.nvmlSystemGetDriverVersion())
    except pynvml.NVMLError:
        version = ""
    driver = f", driver {version}" if version else ""
    gpus = ", ".join(f"{d.key} {d.name}" for d in collector.devices)
    return collector, f"{count} GPU(s) through NVML{driver}: {gpus}"


class NvmlCollector:
    name = "nvml"

    def __init__(self, api: NvmlApi, count: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.clock = clock
        self.devices = [self._open(index) for index in range(count)]

    def _open(self, index: int) -> GpuDevice:
        handle = self.api.nvmlDeviceGetHandleByIndex(index)
        device = GpuDevice(index=index, handle=handle, name="", uuid="")
        device.name = self._ask(device, "name", lambda: _text(self.api.nvmlDeviceGetName(handle))) or "GPU"
        device.uuid = self._ask(device, "uuid", lambda: _text(self.api.nvmlDeviceGetUUID(handle))) or ""
        return device

    def close(self) -> None:
        self.api.nvmlShutdown()

    def energy(self) -> dict[str, float]:
        """Joules each GPU counted since the collector's first read (restarts handled)."""
        return {d.key: d.energy.joules for d in self.devices if "energy" not in d.unsupported}

    def collect(self) -> list[Sample]:
        out: list[Sample] = []
        for device in self.devices:
            device.errors.clear()
            out += self._device(device)
        return out

    def _device(self, d: GpuDevice) -> list[Sample]:
        api, h, labels = self.api, d.handle, d.labels
        out: list[Sample] = []

        def put(metric: Metric, value: float | None, **extra: str) -> None:
            if value is not None:
                out.append(Sample(metric, float(value), labels | extra))

        power_mw = self._ask(d, "power", lambda: api.nvmlDeviceGetPowerUsage(h))
        put(names.DCGM_POWER_USAGE, None if power_mw is None else power_mw / 1000)
        energy_mj = self._ask(d, "energy", lambda: api.nvmlDeviceGetTotalEnergyConsumption(h))
        if energy_mj is not None:
            put(names.DCGM_ENERGY, energy_mj)
            before, then = d.energy.joules, d.energy_at
            d.energy.update(energy_mj)
            d.energy_at = now = self.clock()
            if then is not None and now > then:
                put(names.GPU_ENERGY_POWER, (d.energy.joules - before) / (now - then))
        limit_mw = self._ask(d, "power_limit", lambda: api.nvmlDeviceGetEnforcedPowerLimit(h))
        put(names.DCGM_POWER_LIMIT, None if limit_mw is None else limit_mw / 1000)
        util = self._ask(d, "utilization", lambda: api.nvmlDeviceGetUtilizationRates(h))
        if util is not None:
            put(names.DCGM_GPU_UTIL, util.gpu)
            put(names.DCGM_MEM_COPY_UTIL, util.memory)
        memory = self._memory(d)
        if memory is not None:
            put(names.DCGM_FB_TOTAL, memory.total / MIB)
            put(names.DCGM_FB_FREE, memory.free / MIB)
            put(names.DCGM_FB_USED, memory.used / MIB)
            reserved = getattr(memory, "reserved", None)
            put(names.DCGM_FB_RESERVED, None if reserved is None else reserved / MIB)
        put(
            names.DCGM_GPU_TEMP,
            self._ask(d, "temperature", lambda: api.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
        )
        put(
            names.DCGM_SM_CLOCK,
            self._ask(d, "sm_clock", lambda: api.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
        )
        put(
            names.DCGM_MEM_CLOCK,
            self._ask(d, "mem_clock", lambda: api.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)),
        )
        put(names.DCGM_PSTATE, self._ask(d, "pstate", lambda: api.nvmlDeviceGetPerformanceState(h)))
        reasons = self._ask(d, "clock_event_reasons", lambda: api.nvmlDeviceGetCurrentClocksEventReasons(h))
        if reasons is not None:
            put(names.DCGM_CLOCKS_EVENT_REASONS, reasons)
            for bit, reason in names.CLOCK_EVENT_REASONS.items():
                put(names.GPU_CLOCK_EVENT_REASON, 1 if reasons & bit else 0, reason=reason)
        processes = self._ask(d, "processes", lambda: api.nvmlDeviceGetComputeRunningProcesses(h))
        for process in processes or []:
            used = getattr(process, "usedGpuMemory", None)
            put(names.GPU_PROCESS_MEMORY, used, pid=str(process.pid))  # None: the driver cannot tell
        for name in sorted(d.unsupported):
            put(names.UNSUPPORTED, 1, field=name)
        return out

    def _memory(self, d: GpuDevice) -> Any:
        """Memory with the driver's reservation apart (v2, as nvidia-smi shows it), else v1."""
        if d.memory_v2:
            try:
                return self.api.nvmlDeviceGetMemoryInfo(d.handle, version=pynvml.nvmlMemory_v2)
            except pynvml.NVMLError as exc:
                if exc.value not in _NEVER | {pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH}:
                    d.errors["memory"] = str(exc)
                    return None
                d.memory_v2 = False  # an older driver: v1 answers, used including the reservation
        return self._ask(d, "memory", lambda: self.api.nvmlDeviceGetMemoryInfo(d.handle))

    def _ask(self, d: GpuDevice, name: str, call: Callable[[], T]) -> T | None:
        if name in d.unsupported:
            return None
        try:
            return call()
        except pynvml.NVMLError as exc:
            if exc.value in _NEVER:
                d.unsupported.add(name)
            else:
                d.errors[name] = str(exc)
            return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
