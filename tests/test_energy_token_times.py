"""The token times a charge keeps: the same as filtering each time, at a fraction of the cost."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.energy import EnergyMeter, _times_within
from wavefleet.telemetry.exporter import Telemetry
from wavefleet.telemetry.fake_nvml import RECORDINGS, FakeNvml
from wavefleet.telemetry.nvml import open_nvml


def filtered(times: Sequence[float], lo: float, hi: float) -> tuple[float, ...]:
    """The times within [lo, hi], compared one by one; () unless they are in order."""
    inside = [x for x in times if lo <= x <= hi]
    return tuple(inside) if all(b >= a for a, b in zip(inside, inside[1:], strict=False)) else ()


@given(
    st.lists(
        st.floats(min_value=-5, max_value=15) | st.just(float("nan")) | st.sampled_from([0.0, 1.0, 2.0]),
        max_size=40,
    ),
    st.floats(min_value=-5, max_value=15),
    st.floats(min_value=-5, max_value=15),
    st.booleans(),
)
def test_times_within_keeps_exactly_what_a_filter_keeps(
    times: list[float], lo: float, hi: float, in_order: bool
) -> None:
    if in_order:
        times = sorted(t for t in times if t == t)  # the forwarder's: rising, no NaN
    assert _times_within(times, lo, hi) == filtered(times, lo, hi)
    assert _times_within(tuple(times), lo, hi) == filtered(times, lo, hi)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_only_an_attempt_on_a_measured_device_keeps_token_times() -> None:
    clock = Clock(100.0)
    nvml = FakeNvml(RECORDINGS["rtx-4080-super"], clock=clock)
    gpus, why = open_nvml(nvml)
    assert gpus is not None, why
    backends = [
        BackendConfig.model_validate({"name": "gpu", "url": "http://127.0.0.1:8000", "kind": "vllm"}),
        BackendConfig.model_validate({"name": "far", "url": "http://10.9.8.7:8000", "kind": "vllm"}),
    ]
    meter = EnergyMeter(telemetry=Telemetry([gpus]), backends=backends, clock=clock)
    meter.step()

    near = meter.charge(key="k")
    near.begin("gpu", "m", 100.0)
    assert near.wants_token_times
    near.finish(101.0, first_token=100.2, usage=(5, 4), token_times=[100.1, 100.2, 100.5, 100.9, 101.5])
    near.close(101.0)
    assert near.spans[0].token_times == (100.2, 100.5, 100.9)

    far = meter.charge(key="k")
    far.begin("far", "m", 100.0)
    assert not far.wants_token_times
    far.finish(101.0, first_token=100.2, usage=(5, 4), token_times=[100.2, 100.5, 100.9])
    far.close(101.0)
    assert far.settled and far.result is None  # not measured: unknown, not zero
    assert not far.wants_token_times  # the attempt is over
