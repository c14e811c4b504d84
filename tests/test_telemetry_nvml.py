"""The NVML collector over recorded GPUs (FakeNvml), and over the real NVML where there is one."""

from __future__ import annotations

import pynvml
import pytest

from wavefleet.telemetry import names
from wavefleet.telemetry.fake_nvml import RECORDINGS, FakeNvml
from wavefleet.telemetry.nvml import NvmlCollector, open_nvml
from wavefleet.telemetry.nvml_recording import NOT_SUPPORTED, NvmlFailure, NvmlRecording, record
from wavefleet.telemetry.samples import Metric, Sample


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(recording: str, clock: Clock) -> tuple[FakeNvml, NvmlCollector]:
    nvml = FakeNvml(RECORDINGS[recording], clock=clock)
    collector, why = open_nvml(nvml)
    assert collector is not None, why
    collector.clock = clock
    return nvml, collector


def values(samples: list[Sample], metric: Metric, **labels: str) -> list[float]:
    return [
        s.value
        for s in samples
        if s.metric == metric and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def one(samples: list[Sample], metric: Metric, **labels: str) -> float:
    found = values(samples, metric, **labels)
    assert len(found) == 1, f"{metric.name} {labels}: {found}"
    return found[0]


def test_a_geforce_under_load_reads_as_nvidia_smi_showed_it() -> None:
    _, collector = opened("rtx-4080-super", Clock())
    samples = collector.collect()
    assert one(samples, names.DCGM_POWER_USAGE) == pytest.approx(84.24)
    assert one(samples, names.DCGM_POWER_LIMIT) == 320
    assert one(samples, names.DCGM_FB_TOTAL) == pytest.approx(16376)
    assert one(samples, names.DCGM_FB_USED) == pytest.approx(1474)
    assert one(samples, names.DCGM_FB_RESERVED) == pytest.approx(434)
    assert (one(samples, names.DCGM_GPU_TEMP), one(samples, names.DCGM_SM_CLOCK)) == (46, 2805)
    assert one(samples, names.DCGM_GPU_UTIL) == 7
    assert sorted(values(samples, names.GPU_PROCESS_MEMORY)) == [26214400, 377487360, 527433728]
    assert values(samples, names.UNSUPPORTED) == []
    labels = samples[0].labels
    assert (labels["gpu"], labels["modelName"]) == ("0", "NVIDIA GeForce RTX 4080 SUPER")


def test_a_laptop_gpu_without_power_reports_it_absent_and_measures_energy() -> None:
    clock = Clock()
    nvml, collector = opened("gtx-1650-max-q", clock)
    first = collector.collect()
    assert values(first, names.DCGM_POWER_USAGE) == []  # absent, not zero
    assert values(first, names.DCGM_POWER_LIMIT) == []
    unsupported = {s.labels["field"] for s in first if s.metric == names.UNSUPPORTED}
    assert unsupported == {"power", "power_limit"}
    clock.now += 10
    second = collector.collect()
    assert one(second, names.DCGM_ENERGY) == pytest.approx(52_000_000 + 6 * 10 * 1000)
    assert one(second, names.GPU_ENERGY_POWER) == pytest.approx(6.0)
    assert collector.energy()["gpu0"] == pytest.approx(60.0)
    # a driver that said "not supported" is not asked again
    assert nvml.asked["power_mw"] == 1
    # no v2 memory call on this driver: v1's used (the reservation included)
    assert one(second, names.DCGM_FB_USED) == pytest.approx(196)


def test_a_jetson_answers_nothing_but_its_name_and_every_field_is_listed_unsupported() -> None:
    _, collector = opened("jetson-orin-nano", Clock())
    samples = collector.collect()
    assert {s.metric for s in samples} == {names.UNSUPPORTED}
    assert {s.labels["modelName"] for s in samples} == {"Orin (nvgpu)"}
    assert {s.labels["UUID"] for s in samples} == {""}
    assert {"power", "energy", "memory", "temperature", "utilization"} <= {s.labels["field"] for s in samples}
    assert collector.energy() == {}


def test_energy_keeps_counting_across_a_driver_reload() -> None:
    clock = Clock()
    nvml, collector = opened("rtx-4080-super", clock)
    collector.collect()
    clock.now += 10
    collector.collect()  # 842.4 J so far
    nvml.reload_driver()
    clock.now += 5
    samples = collector.collect()
    assert one(samples, names.DCGM_ENERGY) == pytest.approx(84.24 * 5 * 1000)  # the raw counter dropped
    assert collector.energy()["gpu0"] == pytest.approx(84.24 * 15)
    assert collector.devices[0].energy.restarts == 1


def test_a_passing_error_leaves_the_field_out_for_that_read_only() -> None:
    nvml, collector = opened("rtx-4080-super", Clock())
    nvml.set_answer(0, temperature_c=NvmlFailure(error=pynvml.NVML_ERROR_GPU_IS_LOST))
    samples = collector.collect()
    assert values(samples, names.DCGM_GPU_TEMP) == []
    assert "temperature" in collector.devices[0].errors
    assert values(samples, names.UNSUPPORTED) == []
    nvml.set_answer(0, temperature_c=51)
    assert one(collector.collect(), names.DCGM_GPU_TEMP) == 51


def test_throttle_reasons_are_a_bitmask_and_one_flag_per_reason() -> None:
    nvml, collector = opened("rtx-4080-super", Clock())
    nvml.set_answer(0, clock_event_reasons=0x40 | 0x4)
    samples = collector.collect()
    assert one(samples, names.DCGM_CLOCKS_EVENT_REASONS) == 0x44
    assert one(samples, names.GPU_CLOCK_EVENT_REASON, reason="hw_thermal_slowdown") == 1
    assert one(samples, names.GPU_CLOCK_EVENT_REASON, reason="sw_power_cap") == 1
    assert one(samples, names.GPU_CLOCK_EVENT_REASON, reason="hw_slowdown") == 0
    assert len(values(samples, names.GPU_CLOCK_EVENT_REASON)) == len(names.CLOCK_EVENT_REASONS)


def test_a_field_that_stops_being_supported_is_reported_so() -> None:
    nvml, collector = opened("rtx-4080-super", Clock())
    nvml.set_answer(0, power_mw=NOT_SUPPORTED)
    samples = collector.collect()
    assert values(samples, names.DCGM_POWER_USAGE) == []
    assert one(samples, names.UNSUPPORTED, field="power") == 1


def test_no_driver_means_no_collector_and_says_why() -> None:
    collector, why = open_nvml(FakeNvml(RECORDINGS["no-driver"]))
    assert collector is None
    assert "no NVIDIA driver" in why


def test_a_recording_of_the_fake_replays_as_the_same_answers() -> None:
    nvml = FakeNvml(RECORDINGS["gtx-1650-max-q"], clock=Clock())
    recorded = record(nvml, source="replayed")
    again = NvmlRecording.model_validate_json(recorded.model_dump_json())
    device = again.devices[0]
    assert device.power_mw == NOT_SUPPORTED
    assert device.name == "GeForce GTX 1650 with Max-Q Design"
    assert device.memory != NOT_SUPPORTED and device.energy_mj == 52_000_000
    assert nvml.initialised == 0  # record() shut NVML down again


@pytest.mark.gpu
def test_the_real_nvml_on_a_gpu_machine() -> None:
    collector, why = open_nvml()
    if collector is None:
        pytest.skip(f"needs an NVIDIA GPU: {why}")
    try:
        samples = collector.collect()
        for device in collector.devices:
            got = {s.metric for s in samples if s.labels.get("gpu") == str(device.index)}
            assert names.DCGM_POWER_USAGE in got or "power" in device.unsupported
            assert names.DCGM_FB_TOTAL in got or "memory" in device.unsupported
    finally:
        collector.close()
