"""A fake NVML: the pynvml functions the collector calls, answering from a recording.

    nvml = FakeNvml(RECORDINGS["gtx-1650-max-q"], clock=lambda: now)
    collector, _ = open_nvml(nvml)

It raises pynvml's own `NVMLError` subclasses for recorded errors (`NVMLError_NotSupported` for
code 3), so code under test meets the same exceptions as on real hardware. The energy counter
advances with the clock at the device's true draw (`draw_mw`, else its recorded power), and
`reload_driver()` restarts it from zero, as a driver reload does.

The recordings:

- `rtx-4080-super`: the values of nvidia_gpu_exporter's capture of a GeForce RTX 4080 SUPER under
  load, driver 595.71.05 (utkuozdemir/nvidia_gpu_exporter,
  internal/integration/testdata/linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05__load.metrics).
  nvidia-smi's query has no energy field, so the counter's start value is made up (it then
  advances at the recorded 84.24 W).
- `gtx-1650-max-q`: a constructed profile, not a capture. The energy counter works on a GTX 1650
  with Max-Q Design (gpuopenanalytics/pynvml#18, driver 430.09); power is recorded "not
  supported" as low-end GeForce boards answer it (nicehash/excavator#137, influxdata/telegraf#6258)
  and the power limit as a mobile GPU's (Syllo/nvtop#79). The numbers (an idle 4 GiB card
  drawing 6 W) are typical values.
- `jetson-orin-nano`: NVML on JetPack 6 and 7 starts and counts one GPU, "Orin (nvgpu)", and
  answers "not supported" to power, energy, power limit, temperature, utilisation, memory and
  clocks (HazyResearch/intelligence-per-watt#40); the other answers (UUID, P-state, reasons,
  processes) are recorded as not supported too, an assumption.
- `no-driver`: nvmlInit fails, as on this development machine (NVML_ERROR_LIBRARY_NOT_FOUND).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pynvml

from wavefleet.telemetry.nvml_recording import (
    NOT_SUPPORTED,
    GpuRecording,
    MemoryRecord,
    NvmlFailure,
    NvmlRecording,
    ProcessRecord,
)

__all__ = ["RECORDINGS", "FakeNvml"]


@dataclass(frozen=True)
class _Handle:
    index: int


class FakeNvml:
    """pynvml's functions over a recording; see the module doc."""

    def __init__(self, recording: NvmlRecording, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.recording = recording
        self.clock = clock
        self.devices = list(recording.devices)
        self.initialised = 0
        self.asked: Counter[str] = Counter()  # questions asked, by recorded field
        start = clock()
        self._energy_mj = [
            None if isinstance(d.energy_mj, NvmlFailure) else float(d.energy_mj) for d in self.devices
        ]
        self._advanced_at = [start for _ in self.devices]
        self._draw_mw = [_true_draw(d) for d in self.devices]

    # --- what a test changes --------------------------------------------------------------------

    def set_draw(self, index: int, watts: float) -> None:
        """The GPU draws `watts` from now on (its power reading says so where power is supported)."""
        self._advance(index)
        self._draw_mw[index] = watts * 1000
        device = self.devices[index]
        if not isinstance(device.power_mw, NvmlFailure):
            self.devices[index] = device.model_copy(update={"power_mw": round(watts * 1000)})

    def set_answer(self, index: int, **answers: Any) -> None:
        """Change recorded answers, e.g. `clock_event_reasons=0x40` or `power_mw=NOT_SUPPORTED`."""
        self.devices[index] = self.devices[index].model_copy(update=answers)

    def reload_driver(self) -> None:
        """Energy counters restart from zero."""
        for index, energy in enumerate(self._energy_mj):
            if energy is not None:
                self._advance(index)
                self._energy_mj[index] = 0.0

    # --- pynvml -----------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        if self.recording.init is not None:
            raise pynvml.NVMLError(self.recording.init.error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.recording.driver

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._check_init()
        if not 0 <= index < len(self.devices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(index)

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        return self._get(handle, "name")  # type: ignore[no-any-return]

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        return self._get(handle, "uuid")  # type: ignore[no-any-return]

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        return self._get(handle, "power_mw")  # type: ignore[no-any-return]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        self._get(handle, "energy_mj")  # raises what the recording says
        self._advance(handle.index)
        energy = self._energy_mj[handle.index]
        assert energy is not None
        return int(energy)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        return self._get(handle, "power_limit_mw")  # type: ignore[no-any-return]

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Any:
        return SimpleNamespace(
            gpu=self._get(handle, "utilization_gpu"), memory=self._get(handle, "utilization_memory")
        )

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: int | None = None) -> Any:
        memory: MemoryRecord = self._get(handle, "memory")
        if version:
            if memory.reserved is None:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
            return SimpleNamespace(
                total=memory.total, free=memory.free, used=memory.used, reserved=memory.reserved
            )
        # v1 counts the driver's reservation as used
        return SimpleNamespace(total=memory.total, free=memory.free, used=memory.total - memory.free)

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._get(handle, "temperature_c")  # type: ignore[no-any-return]

    def nvmlDeviceGetClockInfo(self, handle: _Handle, clock: int) -> int:
        fields = {pynvml.NVML_CLOCK_SM: "sm_clock_mhz", pynvml.NVML_CLOCK_MEM: "mem_clock_mhz"}
        if clock not in fields:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._get(handle, fields[clock])  # type: ignore[no-any-return]

    def nvmlDeviceGetPerformanceState(self, handle: _Handle) -> int:
        return self._get(handle, "pstate")  # type: ignore[no-any-return]

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Handle) -> int:
        return self._get(handle, "clock_event_reasons")  # type: ignore[no-any-return]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[Any]:
        found: list[ProcessRecord] = self._get(handle, "processes")
        return [SimpleNamespace(pid=p.pid, usedGpuMemory=p.used_gpu_memory) for p in found]

    # --- inside -----------------------------------------------------------------------------------

    def _check_init(self) -> None:
        if self.initialised <= 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def _get(self, handle: _Handle, name: str) -> Any:
        self._check_init()
        self.asked[name] += 1
        answer = getattr(self.devices[handle.index], name)
        if isinstance(answer, NvmlFailure):
            raise pynvml.NVMLError(answer.error)
        return answer

    def _advance(self, index: int) -> None:
        now = self.clock()
        energy = self._energy_mj[index]
        if energy is not None:
            self._energy_mj[index] = energy + self._draw_mw[index] * (now - self._advanced_at[index])
        self._advanced_at[index] = now


def _true_draw(device: GpuRecording) -> float:
    if device.draw_mw is not None:
        return device.draw_mw
    return 0.0 if isinstance(device.power_mw, NvmlFailure) else float(device.power_mw)


MIB = 1024 * 1024

RECORDINGS: dict[str, NvmlRecording] = {
    "rtx-4080-super": NvmlRecording(
        source="nvidia_gpu_exporter capture, GeForce RTX 4080 SUPER under load (see wavefleet.telemetry.fake_nvml)",
        driver="595.71.05",
        devices=[
            GpuRecording(
                name="NVIDIA GeForce RTX 4080 SUPER",
                uuid="GPU-00000000-0000-0000-0000-000000000000",
                power_mw=84240,
                energy_mj=1_000_000_000,
                power_limit_mw=320_000,
                utilization_gpu=7,
                utilization_memory=2,
                memory=MemoryRecord(total=17171480576, free=15172894720, used=1545601024, reserved=455081984),
                temperature_c=46,
                sm_clock_mhz=2805,
                mem_clock_mhz=11251,
                pstate=2,
                clock_event_reasons=0,
                processes=[
                    ProcessRecord(pid=2165, used_gpu_memory=26214400),
                    ProcessRecord(pid=5021, used_gpu_memory=377487360),
                    ProcessRecord(pid=5022, used_gpu_memory=527433728),
                ],
            )
        ],
    ),
    "gtx-1650-max-q": NvmlRecording(
        source="constructed from sources: energy works, power does not (see wavefleet.telemetry.fake_nvml)",
        driver="430.09",
        devices=[
            GpuRecording(
                name="GeForce GTX 1650 with Max-Q Design",
                uuid="GPU-11111111-1111-1111-1111-111111111111",
                power_mw=NOT_SUPPORTED,
                energy_mj=52_000_000,
                power_limit_mw=NOT_SUPPORTED,
                utilization_gpu=0,
                utilization_memory=0,
                memory=MemoryRecord(total=4096 * MIB, free=3900 * MIB, used=196 * MIB, reserved=None),
                temperature_c=48,
                sm_clock_mhz=300,
                mem_clock_mhz=405,
                pstate=8,
                clock_event_reasons=0x1,
                processes=[],
                draw_mw=6000,
            )
        ],
    ),
    "jetson-orin-nano": NvmlRecording(
        source="NVML on JetPack 6/7 (HazyResearch/intelligence-per-watt#40; see wavefleet.telemetry.fake_nvml)",
        devices=[
            GpuRecording(
                name="Orin (nvgpu)",
                uuid=NOT_SUPPORTED,
                power_mw=NOT_SUPPORTED,
                energy_mj=NOT_SUPPORTED,
                power_limit_mw=NOT_SUPPORTED,
                utilization_gpu=NOT_SUPPORTED,
                utilization_memory=NOT_SUPPORTED,
                memory=NOT_SUPPORTED,
                temperature_c=NOT_SUPPORTED,
                sm_clock_mhz=NOT_SUPPORTED,
                mem_clock_mhz=NOT_SUPPORTED,
                pstate=NOT_SUPPORTED,
                clock_event_reasons=NOT_SUPPORTED,
                processes=NOT_SUPPORTED,
            )
        ],
    ),
    "no-driver": NvmlRecording(
        source="a machine without the NVIDIA driver",
        init=NvmlFailure(error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND),
    ),
}
