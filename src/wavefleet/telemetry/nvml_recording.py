"""What NVML answered on a machine, question by question, as a file `FakeNvml` can replay.

`record(api)` asks every question the collector asks and keeps each answer or error code;
`wave telemetry --record FILE` writes it as JSON. An error is `{"error": <NVML error code>}`
(3 is NVML_ERROR_NOT_SUPPORTED).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pynvml
from pydantic import Field

from wavefleet.files import FrozenModel

__all__ = ["GpuRecording", "MemoryRecord", "NvmlFailure", "NvmlRecording", "ProcessRecord", "record"]

T = TypeVar("T")


class NvmlFailure(FrozenModel):
    """The call raised pynvml.NVMLError with this code."""

    error: int = Field(description="NVML error code, e.g. 3 = NVML_ERROR_NOT_SUPPORTED")


NOT_SUPPORTED = NvmlFailure(error=pynvml.NVML_ERROR_NOT_SUPPORTED)


class MemoryRecord(FrozenModel):
    total: int = Field(ge=0, description="bytes")
    free: int = Field(ge=0)
    used: int = Field(ge=0)
    reserved: int | None = Field(default=None, ge=0, description="None: the driver has no v2 call")


class ProcessRecord(FrozenModel):
    pid: int
    used_gpu_memory: int | None = Field(default=None, description="bytes; None: not available")


class GpuRecording(FrozenModel):
    name: str | NvmlFailure
    uuid: str | NvmlFailure
    power_mw: int | NvmlFailure
    energy_mj: int | NvmlFailure = Field(description="the energy counter when the recording starts")
    power_limit_mw: int | NvmlFailure
    utilization_gpu: int | NvmlFailure
    utilization_memory: int | NvmlFailure
    memory: MemoryRecord | NvmlFailure
    temperature_c: int | NvmlFailure
    sm_clock_mhz: int | NvmlFailure
    mem_clock_mhz: int | NvmlFailure
    pstate: int | NvmlFailure
    clock_event_reasons: int | NvmlFailure
    processes: list[ProcessRecord] | NvmlFailure
    draw_mw: float | None = Field(
        default=None,
        description="true draw that advances the fake's energy counter; default: power_mw "
        "(set it where power is not supported but energy is)",
    )


class NvmlRecording(FrozenModel):
    source: str = Field(description="where the answers come from (a capture, a URL, a machine)")
    driver: str = ""
    init: NvmlFailure | None = Field(default=None, description="nvmlInit's error, if it failed")
    devices: list[GpuRecording] = Field(default_factory=list)


def record(api: Any, source: str) -> NvmlRecording:
    """Ask a live NVML (the pynvml module) every question the collector asks."""
    try:
        api.nvmlInit()
    except pynvml.NVMLError as exc:
        return NvmlRecording(source=source, init=NvmlFailure(error=exc.value))
    try:
        driver = _answer(lambda: _text(api.nvmlSystemGetDriverVersion()))
        devices = [_device(api, api.nvmlDeviceGetHandleByIndex(i)) for i in range(api.nvmlDeviceGetCount())]
    finally:
        api.nvmlShutdown()
    return NvmlRecording(source=source, driver=driver if isinstance(driver, str) else "", devices=devices)


def _device(api: Any, h: Any) -> GpuRecording:
    utilization = _answer(lambda: api.nvmlDeviceGetUtilizationRates(h))
    gpu, memory = (
        (utilization, utilization)
        if isinstance(utilization, NvmlFailure)
        else (utilization.gpu, utilization.memory)
    )
    return GpuRecording(
        name=_answer(lambda: _text(api.nvmlDeviceGetName(h))),
        uuid=_answer(lambda: _text(api.nvmlDeviceGetUUID(h))),
        power_mw=_answer(lambda: api.nvmlDeviceGetPowerUsage(h)),
        energy_mj=_answer(lambda: api.nvmlDeviceGetTotalEnergyConsumption(h)),
        power_limit_mw=_answer(lambda: api.nvmlDeviceGetEnforcedPowerLimit(h)),
        utilization_gpu=gpu,
        utilization_memory=memory,
        memory=_memory(api, h),
        temperature_c=_answer(lambda: api.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
        sm_clock_mhz=_answer(lambda: api.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
        mem_clock_mhz=_answer(lambda: api.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)),
        pstate=_answer(lambda: api.nvmlDeviceGetPerformanceState(h)),
        clock_event_reasons=_answer(lambda: api.nvmlDeviceGetCurrentClocksEventReasons(h)),
        processes=_processes(api, h),
    )


def _memory(api: Any, h: Any) -> MemoryRecord | NvmlFailure:
    v2 = _answer(lambda: api.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2))
    if not isinstance(v2, NvmlFailure):
        return MemoryRecord(total=v2.total, free=v2.free, used=v2.used, reserved=v2.reserved)
    v1 = _answer(lambda: api.nvmlDeviceGetMemoryInfo(h))
    return v1 if isinstance(v1, NvmlFailure) else MemoryRecord(total=v1.total, free=v1.free, used=v1.used)


def _processes(api: Any, h: Any) -> list[ProcessRecord] | NvmlFailure:
    found = _answer(lambda: api.nvmlDeviceGetComputeRunningProcesses(h))
    if isinstance(found, NvmlFailure):
        return found
    return [ProcessRecord(pid=p.pid, used_gpu_memory=p.usedGpuMemory) for p in found]


def _answer(call: Callable[[], T]) -> T | NvmlFailure:
    try:
        return call()
    except pynvml.NVMLError as exc:
        return NvmlFailure(error=exc.value)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
