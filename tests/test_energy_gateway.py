"""Energy per request through the real gateway app: a replayed GPU, fake engines, the audit trail
and /metrics. The requests' energy, their idle shares and the unattributed energy add up to
what the GPU's counter counted."""

from __future__ import annotations

import asyncio
import http.client
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

import reliability_support as support  # tests/ is on pytest's pythonpath
from helpers import chat_body, http_request, invoke_wave
from wavefleet.bench.energy import level_energy, metrics_url, read_counters
from wavefleet.cli import cli
from wavefleet.cli.serve import with_energy_flags
from wavefleet.errors import UsageError
from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends.base import BackendRequest
from wavefleet.gateway.backends.fake import FakeBackend, FakeReply
from wavefleet.gateway.backends.fake_servers import serve_in_thread
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.energy import ENERGY_METER, EnergyMeter
from wavefleet.gateway.monitor.snapshot import StaticMonitor
from wavefleet.telemetry.exporter import Telemetry
from wavefleet.telemetry.fake_nvml import RECORDINGS, FakeNvml
from wavefleet.telemetry.nvml import open_nvml

IDLE_W, PER_REQUEST_W = 30.0, 150.0


class PoweredEngine:
    """A fake engine on the replayed GPU: the GPU draws more while it answers more requests."""

    def __init__(self, nvml: FakeNvml | None) -> None:
        self.nvml = nvml
        self.running = 0

    def _draw(self) -> None:
        if self.nvml is not None:
            self.nvml.set_draw(0, IDLE_W + PER_REQUEST_W * self.running)

    async def __call__(self, request: BackendRequest) -> FakeReply:
        words = str(request.body["messages"][-1]["content"]).split()[:6]
        self.running += 1
        self._draw()
        try:
            await asyncio.sleep(0.03 * len(words))  # the engine's work, in proportion to the answer
        finally:
            self.running -= 1
            self._draw()
        if request.stream:
            return FakeReply.stream(words)
        return FakeReply.chat(" ".join(words), prompt_tokens=len(words) * 3)


def config(db: Path) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "backends": [
                {"name": "gpu", "url": "http://127.0.0.1:9", "kind": "vllm", "models": ["m"]},
                {"name": "far", "url": "http://10.9.8.7:8000", "kind": "vllm", "models": ["r"]},
            ],
            "security": {"audit": True, "audit_db": str(db), "audit_interval_s": 0.05},
            "energy": {"price_per_kwh": 0.30, "currency": "EUR", "sample_interval_s": 0.05},
        }
    )


@contextmanager
def gateway(db: Path, *, telemetry: bool) -> Iterator[tuple[str, EnergyMeter | None]]:
    nvml = FakeNvml(RECORDINGS["rtx-4080-super"]) if telemetry else None
    gpus = open_nvml(nvml)[0] if nvml is not None else None
    engine = PoweredEngine(nvml)
    app = create_app(
        config(db),
        StaticMonitor(),
        backends={"gpu": FakeBackend("gpu", engine, ["m"]), "far": FakeBackend("far", engine, ["r"])},
        telemetry=Telemetry([gpus]) if gpus is not None else None,
    )
    with serve_in_thread(app) as server:
        yield server.url, app.get(ENERGY_METER)


def send_mixed(url: str, count: int) -> list[int]:
    def one(i: int) -> int:
        model = "r" if i % 5 == 4 else "m"
        body = chat_body(" ".join(["word"] * (2 + i % 4)), model=model, stream=i % 3 == 0)
        status, _, _ = http_request("POST", url + "/v1/chat/completions", body, {"x-request-id": f"r{i}"})
        return status

    with ThreadPoolExecutor(6) as pool:
        return list(pool.map(one, range(count)))


def rows(db: Path) -> list[dict[str, Any]]:
    connection = sqlite3.connect(db)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in connection.execute("SELECT * FROM audit ORDER BY request_id")]
    finally:
        connection.close()


def wait_for_rows(
    db: Path, count: int, *, metered: bool = True, within_s: float = 20.0
) -> list[dict[str, Any]]:
    """The audit rows once `count` are written, with the local backend's energy settled if `metered`."""
    deadline = time.monotonic() + within_s
    while True:
        found = rows(db) if db.exists() else []
        local = [r for r in found if r["backend"] == "gpu"]
        if len(found) >= count and (not metered or all(r["energy_j"] is not None for r in local)):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"after {within_s} s: {len(found)} audit rows of {count}: {found}")
        time.sleep(0.05)


def metric_sums(url: str) -> dict[str, float]:
    status, _, body = http_request("GET", url + "/metrics")
    assert status == 200
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            name = sample.name
            if name.startswith(
                (
                    "wave_request_energy",
                    "wave_request_idle",
                    "wave_request_cost",
                    "wave_device_metered",
                    "wave_device_unattributed",
                )
            ) and name.endswith("_total"):
                sums[name] = sums.get(name, 0.0) + sample.value
    return sums


def test_requests_energy_idle_and_unattributed_add_up_to_the_counter(tmp_path: Path) -> None:
    db = tmp_path / "wave.db"
    count = 20
    with gateway(db, telemetry=True) as (url, meter):
        assert meter is not None
        assert set(send_mixed(url, count)) == {200}
        found = wait_for_rows(db, count)
        sums = metric_sums(url)
    gpu = meter.devices["gpu0"]
    local = [r for r in found if r["backend"] == "gpu"]
    far = [r for r in found if r["backend"] == "far"]
    assert len(local) == 16 and len(far) == 4
    assert all(r["energy_j"] is None and r["cost"] is None for r in far)  # not measured: absent
    attributed = sum(r["energy_j"] + r["idle_j"] for r in local)
    assert gpu.counted_j > 0 and attributed > 0
    assert attributed + gpu.unattributed_j == pytest.approx(gpu.counted_j, rel=1e-6)
    assert all(r["energy_j"] >= 0 and r["idle_j"] >= 0 and r["currency"] == "EUR" for r in local)
    assert sum(r["cost"] for r in local) == pytest.approx(attributed / 3.6e6 * 0.30, rel=1e-6)
    assert sums["wave_request_energy_joules_total"] == pytest.approx(sum(r["energy_j"] for r in local))
    assert sums["wave_request_idle_energy_joules_total"] == pytest.approx(sum(r["idle_j"] for r in local))
    assert sums["wave_request_energy_measured_requests_total"] == 16
    assert sums["wave_request_cost_total"] == pytest.approx(sum(r["cost"] for r in local))
    # one scrape closes too: requests + idle shares + unattributed = what was metered (by then)
    metered = sums["wave_device_metered_energy_joules_total"]
    assert 0 < metered <= gpu.counted_j * (1 + 1e-9)
    assert sums["wave_request_energy_joules_total"] + sums["wave_request_idle_energy_joules_total"] + sums[
        "wave_device_unattributed_energy_joules_total"
    ] == pytest.approx(metered, rel=1e-6)


def test_without_telemetry_energy_is_absent_not_zero(tmp_path: Path) -> None:
    db = tmp_path / "wave.db"
    with gateway(db, telemetry=False) as (url, meter):
        assert meter is None
        assert set(send_mixed(url, 5)) == {200}
        found = wait_for_rows(db, 5, metered=False)
        sums = metric_sums(url)
    assert all(r[c] is None for r in found for c in ("energy_j", "idle_j", "cost", "currency"))
    assert sums == {}


def test_bench_reports_joules_per_token_and_cost_from_the_gateways_counters(tmp_path: Path) -> None:
    with gateway(tmp_path / "wave.db", telemetry=True) as (url, _):
        before = read_counters(url + "/v1")
        assert before is not None and before.requests == 0
        assert set(send_mixed(url, 10)) == {200}
        energy = level_energy(before, lambda: read_counters(url + "/v1"), completed=8)
        assert energy is not None and energy.requests == 8  # the two sent elsewhere are not metered
        assert energy.tokens == sum(2 + i % 4 for i in range(10) if i % 5 != 4)
        assert energy.j_per_token == pytest.approx((energy.energy_j + energy.idle_j) / energy.tokens)
        assert energy.currency == "EUR" and energy.cost_per_million_tokens is not None
        result = CliRunner().invoke(
            cli,
            [
                "bench",
                "--url",
                url + "/v1",
                "--model",
                "m",
                "--concurrency",
                "2",
                "--num-requests",
                "6",
                "--input-len",
                "8",
                "--output-len",
                "4",
                "--no-progress",
            ],
        )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the console wraps lines
    assert "J/output token" in said and "EUR per 1M output tokens" in said
    assert "(6 requests metered by the gateway)" in said


def test_bench_says_nothing_of_energy_where_the_server_has_no_counters(tmp_path: Path) -> None:
    with gateway(tmp_path / "wave.db", telemetry=False) as (url, _):
        assert read_counters(url + "/v1") is None
        result = CliRunner().invoke(
            cli,
            [
                "bench",
                "--url",
                url + "/v1",
                "--model",
                "m",
                "--concurrency",
                "1",
                "--num-requests",
                "2",
                "--input-len",
                "8",
                "--output-len",
                "4",
                "--no-progress",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "J/output token" not in result.output


def test_the_metrics_url_is_beside_the_api() -> None:
    assert metrics_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/metrics"
    assert metrics_url("http://gw:8080/v1/") == "http://gw:8080/metrics"
    assert metrics_url("https://gw/proxy/v1") == "https://gw/proxy/metrics"


def test_a_tariff_without_telemetry_is_a_usage_error() -> None:
    result = invoke_wave("serve", "--backend", "a=http://127.0.0.1:9", "--tariff", "0.3")
    assert isinstance(result.exception, UsageError)
    assert "--tariff price the energy --telemetry measures" in str(result.exception)
    result = invoke_wave("serve", "--backend", "a=http://127.0.0.1:9", "--telemetry", "--tariff", "-1")
    assert result.exit_code == 2 and "-1" in result.output


def test_energy_flags_lay_over_the_config() -> None:
    base = GatewayConfig.model_validate(
        {"backends": [{"name": "a", "url": "http://127.0.0.1:9"}], "energy": {"currency": "EUR"}}
    )
    merged = with_energy_flags(base, tariff=0.25, currency=None, amortisation=0.05)
    tariff = merged.energy.tariff()
    assert tariff is not None and (tariff.price_per_kwh, tariff.currency, tariff.amortisation_per_hour) == (
        0.25,
        "EUR",
        0.05,
    )
    assert base.energy.tariff() is None  # energy only: no price, no amortisation
    with pytest.raises(UsageError, match="--currency is empty"):
        with_energy_flags(base, tariff=None, currency=" ", amortisation=None)


def test_wave_serve_telemetry_meters_each_request_into_the_audit_trail(tmp_path: Path) -> None:
    engine = support.EngineProcess("a", "--tokens", "3")
    db = tmp_path / "wave.db"
    try:
        gateway = support.GatewayProcess(
            *("--backend", f"a={engine.url},gpu=true", "--audit-db", str(db), "--telemetry"),
            *("--telemetry-fake", "rtx-4080-super", "--tariff", "0.30", "--currency", "EUR"),
            log=tmp_path / "gw.log",
        )
        try:
            for i in range(3):
                status, _, _ = http_request(
                    "POST", gateway.url + "/v1/chat/completions", chat_body(f"hi {i}")
                )
                assert status == 200
            found = wait_for_rows(db, 3)
        finally:
            gateway.stop()
    finally:
        engine.stop()
    assert all(r["energy_j"] is not None and r["idle_j"] is not None for r in found)
    assert all(r["energy_j"] + r["idle_j"] > 0 and r["currency"] == "EUR" and r["cost"] > 0 for r in found)


class DrippingReply(FakeReply):
    """A stream whose events come `gap_s` apart, as an engine makes tokens."""

    def __init__(self, words: list[str], gap_s: float) -> None:
        super().__init__(200, events=FakeReply.stream(words).events())
        self.gap_s = gap_s

    async def chunks(self) -> AsyncIterator[bytes]:
        async for event in super().chunks():
            yield event
            await asyncio.sleep(self.gap_s)


def test_tokens_streamed_before_the_client_leaves_are_charged(tmp_path: Path) -> None:
    nvml = FakeNvml(RECORDINGS["rtx-4080-super"])
    gpus = open_nvml(nvml)[0]
    assert gpus is not None

    async def engine(request: BackendRequest) -> FakeReply:
        nvml.set_draw(0, IDLE_W + PER_REQUEST_W)
        return DrippingReply([f"w{i} " for i in range(200)], gap_s=0.02)

    app = create_app(
        config(tmp_path / "wave.db"),
        StaticMonitor(),
        backends={"gpu": FakeBackend("gpu", engine, ["m"]), "far": FakeBackend("far", engine, ["r"])},
        telemetry=Telemetry([gpus]),
    )
    with serve_in_thread(app) as server:
        meter = app[ENERGY_METER]
        host, port = server.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request(
            "POST",
            "/v1/chat/completions",
            json.dumps(chat_body("go", model="m", stream=True)),
            {"Content-Type": "application/json"},
        )
        answer = connection.getresponse()
        seen = 0
        while seen < 6:
            if answer.readline().startswith(b"data:"):
                seen += 1
        connection.close()  # the client leaves mid-stream
        deadline = time.monotonic() + 20
        sums = metric_sums(server.url)
        while not sums.get("wave_request_energy_measured_requests_total"):
            assert time.monotonic() < deadline, f"the request's energy was never settled: {sums}"
            time.sleep(0.05)
            sums = metric_sums(server.url)
    assert meter.pending() == 0
    # the events it was sent (one token each after the role-only first), not the 200 it asked for
    assert 5 <= sums["wave_request_energy_measured_completion_tokens_total"] < 200
