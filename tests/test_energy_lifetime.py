"""A request's charge is freed by reference counting once nothing needs it: no garbage per request."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.energy import EnergyMeter
from wavefleet.telemetry.exporter import Telemetry
from wavefleet.telemetry.fake_nvml import RECORDINGS, FakeNvml
from wavefleet.telemetry.nvml import open_nvml


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def no_cycle_collection() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def meter(clock: Clock) -> EnergyMeter:
    gpus, why = open_nvml(FakeNvml(RECORDINGS["rtx-4080-super"], clock=clock))
    assert gpus is not None, why
    backends = [
        BackendConfig.model_validate({"name": "gpu", "url": "http://127.0.0.1:8000", "kind": "vllm"}),
        BackendConfig.model_validate({"name": "far", "url": "http://10.9.8.7:8000", "kind": "vllm"}),
    ]
    return EnergyMeter(telemetry=Telemetry([gpus]), backends=backends, clock=clock)


@pytest.mark.usefixtures("no_cycle_collection")
def test_a_charge_on_an_unmeasured_backend_is_freed_when_the_request_drops_it() -> None:
    clock = Clock(100.0)
    energy = meter(clock)
    energy.step()
    charge = energy.charge(key="k")
    charge.begin("far", "m", 100.0)
    charge.finish(100.5, first_token=100.1, usage=(5, 4), token_times=[100.1, 100.3])
    charge.close(100.5)
    assert charge.settled
    gone = weakref.ref(charge)
    del charge
    assert gone() is None


@pytest.mark.usefixtures("no_cycle_collection")
def test_a_measured_charge_lives_until_settled_then_is_freed() -> None:
    clock = Clock(100.0)
    energy = meter(clock)
    energy.step()
    charge = energy.charge(key="k")
    charge.begin("gpu", "m", 100.0)
    charge.finish(100.5, first_token=100.1, usage=(5, 4), token_times=[100.1, 100.3])
    charge.close(100.5)
    gone = weakref.ref(charge)
    del charge
    assert gone() is not None  # the meter still has to settle it
    while energy.pending():
        clock.t += 0.25
        energy.step()
    assert energy.by_model()["m"].requests == 1  # settled and counted after the request let go
    assert gone() is None


def test_a_meter_meters_something_only_with_a_backend_on_a_measured_device_or_an_agent() -> None:
    clock = Clock(100.0)
    gpus, why = open_nvml(FakeNvml(RECORDINGS["rtx-4080-super"], clock=clock))
    assert gpus is not None, why
    far = BackendConfig.model_validate({"name": "far", "url": "http://10.9.8.7:8000", "kind": "vllm"})
    near = BackendConfig.model_validate({"name": "gpu", "url": "http://127.0.0.1:8000", "kind": "vllm"})
    only_far = EnergyMeter(telemetry=Telemetry([gpus]), backends=[far], clock=clock)
    assert not only_far.meters_any()  # before the first sample no device is known
    only_far.step()
    assert not only_far.meters_any()  # the forwarder charges nothing: no figure would come
    with_agent = EnergyMeter(telemetry=Telemetry([gpus]), backends=[far], clock=clock, agents=["far"])
    assert with_agent.meters_any()
    local = EnergyMeter(telemetry=Telemetry([gpus]), backends=[far, near], clock=clock)
    local.step()
    assert local.meters_any()
