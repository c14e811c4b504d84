"""The gateway's energy meter: samples, windows that wait for running neighbours, closure, cost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.energy import EnergyMeter, devices_of
from wavefleet.gateway.monitor.snapshot import EngineTimings
from wavefleet.telemetry.cost import Tariff
from wavefleet.telemetry.exporter import Telemetry
from wavefleet.telemetry.fake_nvml import RECORDINGS, FakeNvml
from wavefleet.telemetry.gpu_model import GpuModel
from wavefleet.telemetry.nvml import open_nvml


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def backend(name: str, url: str, **fields: object) -> BackendConfig:
    return BackendConfig.model_validate({"name": name, "url": url, **fields})


BACKENDS = [
    backend("gpu", "http://127.0.0.1:8000", kind="vllm"),
    backend("far", "http://10.9.8.7:8000", kind="vllm"),
]


def meter_and_gpu(clock: Clock, tariff: Tariff | None = None) -> tuple[EnergyMeter, FakeNvml]:
    nvml = FakeNvml(RECORDINGS["rtx-4080-super"], clock=clock)
    gpus, why = open_nvml(nvml)
    assert gpus is not None, why
    meter = EnergyMeter(telemetry=Telemetry([gpus]), backends=BACKENDS, clock=clock, tariff=tariff)
    return meter, nvml


def walk(meter: EnergyMeter, clock: Clock, until: float, step: float = 0.25) -> None:
    """Sample every `step` seconds up to `until`, as the meter's task does."""
    while clock.t + step <= until + 1e-9:
        clock.t = round(clock.t + step, 6)
        meter.step()


def test_devices_of_a_backend_follow_where_it_runs() -> None:
    devices = ["cpu", "gpu0", "gpu1"]
    assert devices_of(backend("v", "http://127.0.0.1:8000", kind="vllm"), devices) == ["gpu0", "gpu1"]
    assert devices_of(backend("l", "http://localhost:8081", kind="llamacpp", gpu=False), devices) == ["cpu"]
    assert devices_of(backend("one", "http://127.0.0.1:8000", kind="vllm", device="gpu1"), devices) == [
        "gpu1"
    ]
    assert devices_of(backend("two", "http://[::1]:8000", kind="vllm", device="gpu0|gpu1"), devices) == [
        "gpu0",
        "gpu1",
    ]
    assert devices_of(backend("far", "http://10.9.8.7:8000", kind="vllm"), devices) == []
    assert devices_of(backend("j", "http://127.0.0.1:8080", kind="llamacpp", gpu=True), ["board"]) == [
        "board"
    ]
    assert devices_of(backend("me", "http://desk:8000", kind="vllm"), devices, hostnames=["desk"]) == [
        "gpu0",
        "gpu1",
    ]


def test_energy_closes_and_waits_for_a_running_neighbour() -> None:
    clock = Clock(100.0)
    tariff = Tariff(price_per_kwh=0.30, currency="EUR", amortisation_per_hour=0.36)
    meter, nvml = meter_and_gpu(clock, tariff)
    nvml.set_draw(0, 20)
    meter.step()  # the first sample: counting starts here
    walk(meter, clock, 101.0)  # quiet: the idle draw is learnt
    a = meter.charge(key="key:a")
    a.begin("gpu", "m", clock.t)
    nvml.set_draw(0, 120)
    walk(meter, clock, 101.5)
    b = meter.charge(key="key:b")
    b.begin("gpu", "m", clock.t)
    nvml.set_draw(0, 220)
    walk(meter, clock, 102.0)
    a.finish(clock.t, first_token=101.25, usage=(100, 50))
    a.close(clock.t)
    nvml.set_draw(0, 120)
    walk(meter, clock, 102.5)
    # b started before a ended and still runs: a's share depends on b's tokens, not known yet
    assert not a.settled and meter.pending() == 2
    walk(meter, clock, 103.0)
    b.finish(clock.t, first_token=101.75, usage=(20, 30))
    b.close(clock.t)
    nvml.set_draw(0, 20)
    far = meter.charge(key="key:a")
    far.begin("far", "m", clock.t)
    far.finish(clock.t, first_token=None, usage=(5, 5))
    far.close(clock.t)
    assert far.settled and far.result is None  # on another host: unknown, not zero
    walk(meter, clock, 103.5)
    assert a.settled and b.settled and meter.pending() == 0
    assert a.result is not None and b.result is not None
    gpu = meter.devices["gpu0"]
    # 1 s at 20 W, 0.5 s at 120, 0.5 s at 220, 1 s at 120, 0.5 s at 20 (the NVML counter, in mJ)
    assert gpu.counted_j == pytest.approx(20 + 60 + 110 + 120 + 10, abs=0.01)
    assert gpu.idle_w == pytest.approx(20, abs=0.01)
    requests = a.result.energy_j + a.result.idle_j + b.result.energy_j + b.result.idle_j
    assert requests + gpu.unattributed_j == pytest.approx(gpu.counted_j, rel=1e-9)
    assert gpu.unattributed_j == pytest.approx(30, abs=0.01)  # the quiet 1.5 s
    assert a.result.idle_j + b.result.idle_j == pytest.approx(40, abs=0.01)  # 2 s busy at 20 W idle
    assert a.result.energy_j > 0 and b.result.energy_j > 0
    assert a.result.currency == "EUR" and a.result.cost is not None and b.result.cost is not None
    # energy and idle share at 0.30/kWh, plus 0.36/h for the 2 s the GPU was held
    assert a.result.cost + b.result.cost == pytest.approx(requests / 3.6e6 * 0.30 + 0.36 * 2 / 3600)


def test_a_request_before_the_first_sample_or_without_a_tariff_has_no_cost() -> None:
    clock = Clock(10.0)
    meter, _ = meter_and_gpu(clock)
    early = meter.charge(key="static")
    early.begin("gpu", "m", clock.t)  # the devices are not known yet
    early.close(clock.t)
    assert early.settled and early.result is None
    meter.step()
    c = meter.charge(key="static")
    c.begin("gpu", "m", clock.t)
    walk(meter, clock, 11.0)
    c.finish(clock.t, first_token=10.5, usage=(3, 4))
    c.close(clock.t)
    walk(meter, clock, 11.25)
    assert c.result is not None and c.result.cost is None and c.result.currency is None
    assert c.result.energy_j + c.result.idle_j > 0


def test_a_long_request_stops_holding_back_its_neighbours_after_max_wait() -> None:
    clock = Clock(100.0)
    nvml = FakeNvml(RECORDINGS["rtx-4080-super"], clock=clock)
    gpus, _ = open_nvml(nvml)
    assert gpus is not None
    meter = EnergyMeter(telemetry=Telemetry([gpus]), backends=BACKENDS, clock=clock, max_wait_s=1.0)
    nvml.set_draw(0, 20)
    meter.step()
    walk(meter, clock, 101.0)
    long = meter.charge(key="static")
    long.begin("gpu", "m", clock.t)
    nvml.set_draw(0, 100)
    walk(meter, clock, 101.5)
    short = meter.charge(key="static")
    short.begin("gpu", "m", clock.t)
    walk(meter, clock, 102.0)
    short.finish(clock.t, first_token=101.75, usage=(10, 10))
    short.close(clock.t)
    walk(meter, clock, 102.75)
    assert short.settled and not long.settled  # settled while the long one still runs
    walk(meter, clock, 105.0)
    long.finish(clock.t, first_token=101.5, usage=(10, 200))
    long.close(clock.t)
    nvml.set_draw(0, 20)
    walk(meter, clock, 105.5)
    assert long.settled and long.result is not None and short.result is not None
    gpu = meter.devices["gpu0"]
    both = long.result.energy_j + long.result.idle_j + short.result.energy_j + short.result.idle_j
    assert both + gpu.unattributed_j == pytest.approx(gpu.counted_j, rel=1e-9)
    assert gpu.counted_j == pytest.approx(20 * 1.5 + 100 * 4, abs=0.01)
    assert long.result.energy_j > short.result.energy_j


def serve_through_meter(
    meter: EnergyMeter, nvml: FakeNvml, clock: Clock, run: dict[str, Any]
) -> dict[str, Any]:
    """The synthetic GPU's run replayed through the meter as the gateway would see it: its power
    drawn by the fake GPU, each request a charge with its stream's times, a sample every 200 ms."""
    events: list[tuple[float, int, Callable[[], None]]] = []
    for t, _, watts in run["power"]:
        events.append((t, 0, lambda w=watts: nvml.set_draw(0, w)))
    charges: dict[str, Any] = {}
    for r in run["requests"]:
        charge = charges[r["id"]] = meter.charge(key=r["kind"])
        events.append((r["start"], 1, lambda c=charge, r=r: c.begin("gpu", "m", r["start"])))
        events.append((r["end"], 2, lambda c=charge, r=r: finish(c, r)))
    end = run["readings"][-1][0]
    events += [(k * 0.2, 3, meter.step) for k in range(int(end / 0.2) + 1)]
    for t, _, act in sorted(events, key=lambda e: (e[0], e[1])):
        clock.t = t
        act()
    clock.t = end + 30
    meter.step()
    assert meter.pending() == 0
    return charges


def finish(charge: Any, r: dict[str, Any]) -> None:
    charge.finish(
        r["end"],
        first_token=r["first_token"],
        usage=(r["prompt_tokens"], r["completion_tokens"]),
        token_times=r["token_times"],
    )
    charge.close(r["end"])


@pytest.mark.parametrize("long", [(12_000, 16), (2_000, 64)])
def test_a_long_prompt_beside_a_short_one_is_charged_in_the_ratio_of_their_solo_energies(
    long: tuple[int, int],
) -> None:
    run = GpuModel().check_run(repeats=2, long=long)
    clock = Clock(0.0)
    nvml = FakeNvml(RECORDINGS["rtx-4080-super"], clock=clock)
    nvml.set_draw(0, GpuModel().idle_w)
    gpus, why = open_nvml(nvml)
    assert gpus is not None, why
    alone = [r for r in run["requests"] if r["kind"].endswith("alone")]
    speeds = EngineTimings(  # what llama-server's /metrics counts: its prompt and generation timers
        requests=len(alone),
        prefill_tokens=sum(r["prompt_tokens"] for r in alone),
        prefill_s=sum(r["prompt_ms"] for r in alone) / 1000,
        decode_tokens=sum(r["completion_tokens"] - 1 for r in alone),
        decode_s=sum((r["completion_tokens"] - 1) / r["predicted_per_second"] for r in alone),
    )
    meter = EnergyMeter(
        telemetry=Telemetry([gpus]), backends=BACKENDS, clock=clock, timings=lambda backend: speeds
    )
    charges = serve_through_meter(meter, nvml, clock, run)
    gpu = meter.devices["gpu0"]
    total = sum(c.result.energy_j + c.result.idle_j for c in charges.values()) + gpu.unattributed_j
    assert total == pytest.approx(gpu.counted_j, rel=1e-6)
    for repeat in range(2):
        e = {
            kind: charges[f"{kind}-{repeat}"].result.energy_j
            for kind in ("long-alone", "short-alone", "long-together", "short-together")
        }
        ratio_alone = e["long-alone"] / e["short-alone"]
        ratio_together = e["long-together"] / e["short-together"]
        assert ratio_together / ratio_alone - 1 == pytest.approx(0, abs=0.15)
