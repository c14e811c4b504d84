"""The status page's data and its door: what /ui/status.json reports (from the gateway's own
objects), and who gets in (keys, the login form's session cookie, an open gateway)."""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from helpers import free_port, http_request, invoke_wave
from wavefleet.errors import UsageError
from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends.fake_servers import FakeOpenAIEngine, serve_in_thread
from wavefleet.gateway.config import BackendConfig, GatewayConfig
from wavefleet.gateway.energy import EnergyMeter
from wavefleet.gateway.metrics import ErrorLog, GatewayMetrics
from wavefleet.gateway.model_table import ModelTable
from wavefleet.gateway.monitor.snapshot import LoadSnapshot, StaticMonitor
from wavefleet.gateway.ui.board import StatusBoard, backend_state, devices_of, quantile
from wavefleet.gateway.ui.pages import (
    COOKIE,
    FAILED_LOGINS_PER_MINUTE,
    MAX_LOGIN_ADDRESSES,
    MAX_SESSIONS,
    SESSION_TTL_S,
    FailedLogins,
    Sessions,
)
from wavefleet.telemetry.cost import Tariff
from wavefleet.telemetry.exporter import Telemetry
from wavefleet.telemetry.fake_nvml import RECORDINGS, FakeNvml
from wavefleet.telemetry.nvml import open_nvml
from wavefleet.wire import Fault

KEY = "sk-ui-test-0123456789"


# --- the numbers --------------------------------------------------------------------------------


def test_quantile_interpolates_inside_its_bucket_like_histogram_quantile() -> None:
    bounds = [0.1, 0.2, 0.4]
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None
    # 10 observations in (0.1, 0.2]: the median lies halfway through that bucket
    assert quantile(0.5, bounds, [0, 10, 0, 0]) == pytest.approx(0.15)
    # 5 at or under 0.1, 5 in (0.2, 0.4]: the 95th percentile is 90 % of the way up (0.2, 0.4]
    assert quantile(0.95, bounds, [5, 0, 5, 0]) == pytest.approx(0.2 + 0.2 * 0.9)
    # the open top bucket answers its lower bound, never infinity
    assert quantile(0.95, bounds, [1, 0, 0, 9]) == 0.4


@pytest.mark.parametrize(
    ("changes", "state"),
    [
        ({}, "healthy"),
        ({"breaker": "half-open"}, "half-open"),
        ({"breaker": "open"}, "open"),
        ({"healthy": False, "breaker": "open"}, "failed"),
    ],
)
def test_backend_state_comes_from_health_then_breaker(changes: dict[str, Any], state: str) -> None:
    assert backend_state(LoadSnapshot(backend="a", **changes)) == state


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _board(
    monitor: StaticMonitor, clock: Clock, telemetry: Telemetry | None = None, meter: EnergyMeter | None = None
) -> tuple[StatusBoard, GatewayMetrics]:
    config = GatewayConfig.model_validate(
        {
            "backends": [
                {"name": "gpu", "url": "http://127.0.0.1:9", "models": ["llama", "qwen"]},
                {"name": "cpu", "url": "http://127.0.0.1:10", "kind": "llamacpp", "models": ["qwen"]},
            ]
        }
    )
    table = ModelTable(config, monitor)
    metrics = GatewayMetrics(monitor=monitor, backends=config.backends, inflight={}, listed=table.is_listed)
    board = StatusBoard(
        config=config,
        monitor=monitor,
        table=table,
        metrics=metrics,
        inflight={"gpu": 2},
        telemetry=telemetry,
        meter=meter,
        clock=clock,
    )
    return board, metrics


def test_rates_error_rates_and_percentiles_cover_the_window_not_all_time() -> None:
    monitor, clock = StaticMonitor(), Clock()
    monitor.set("cpu", healthy=False, breaker="open", poll_failures=3, error="connection refused")
    board, metrics = _board(monitor, clock)
    series = metrics.series("llama", "gpu")
    for _ in range(100):  # long ago: slow first tokens, all answered
        series.count("200")
        metrics.ttft.observe(series.ttft, 2.0)
    asyncio.run(board.status())
    clock.now += 90.0  # past the window: the old sample is the base of the next window
    asyncio.run(board.status())
    clock.now += 10.0
    for _ in range(18):
        series.count("200")
        metrics.ttft.observe(series.ttft, 0.03)
        metrics.itl.observe(series.itl, 0.02)
    series.count("502")
    series.count("500")
    status = asyncio.run(board.status())

    assert status["window_s"] == pytest.approx(10.0)
    rows = {row["model"]: row for row in status["models"]}  # type: ignore[attr-defined]
    llama = rows["llama"]
    assert llama["requests"] == 120  # since start
    assert llama["requests_per_s"] == pytest.approx(20 / 10.0)  # in the window only
    assert llama["error_rate"] == pytest.approx(2 / 20)
    assert 0.02 < llama["ttft_p50_s"] <= 0.04 and llama["ttft_p95_s"] <= 0.04  # the old 2 s are out
    assert 0.01 < llama["tpot_p50_s"] <= 0.025
    # a model served but never asked for is listed, with nothing to show yet
    assert rows["qwen"]["backends"] == ["gpu", "cpu"] and rows["qwen"]["requests_per_s"] == 0.0
    assert rows["qwen"]["ttft_p50_s"] is None and rows["qwen"]["error_rate"] is None

    backends = {b["name"]: b for b in status["backends"]}  # type: ignore[attr-defined]
    assert backends["gpu"]["state"] == "healthy" and backends["gpu"]["inflight"] == 2
    assert backends["cpu"]["state"] == "failed" and backends["cpu"]["error"] == "connection refused"
    assert backends["cpu"]["models"] == ["qwen"] and backends["cpu"]["kind"] == "llamacpp"
    assert status["summary"] == {"backends": 2, "healthy": 1}


def test_the_first_look_has_no_rate_rather_than_a_made_up_one() -> None:
    board, metrics = _board(StaticMonitor(), Clock())
    metrics.series("llama", "gpu").count("200")
    status = asyncio.run(board.status())
    assert status["window_s"] == 0.0
    assert all(row["requests_per_s"] is None for row in status["models"])  # type: ignore[attr-defined]


def test_the_error_log_keeps_the_newest_few_and_cuts_long_messages() -> None:
    log = ErrorLog()
    for index in range(ErrorLog.KEEP + 5):
        log.add(model="m", backend="b", status=502, message=f"failure {index} " + "x" * 1000)
    entries = log.entries()
    assert len(entries) == ErrorLog.KEEP and log.total == ErrorLog.KEEP + 5
    assert entries[-1].message.startswith(f"failure {ErrorLog.KEEP + 4} ")
    assert all(len(e.message) == ErrorLog.MESSAGE_CHARS for e in entries)


def test_devices_show_what_the_gpu_reports_and_nothing_for_what_it_does_not() -> None:
    gpus, _ = open_nvml(FakeNvml(RECORDINGS["rtx-4080-super"]))
    assert gpus is not None
    telemetry = Telemetry([gpus])
    [device] = devices_of(telemetry.read_each())
    assert device.name.startswith("GPU 0 ") and "4080" in device.name
    assert device.power_w is not None and device.power_w > 0 and not device.power_estimated
    assert device.memory_used_mib is not None and device.memory_total_mib is not None
    assert 0 < device.memory_used_mib <= device.memory_total_mib
    assert device.temperature_c is not None and device.utilisation_pct is not None
    # a GPU that answers "not supported" for power: absent, not zero
    quiet, _ = open_nvml(FakeNvml(RECORDINGS["gtx-1650-max-q"]))
    assert quiet is not None
    [first] = devices_of(Telemetry([quiet]).read_each())
    assert first.power_w is None


def test_the_board_says_no_telemetry_when_the_gateway_has_none() -> None:
    status = asyncio.run(_board(StaticMonitor(), Clock())[0].status())
    telemetry = status["telemetry"]
    assert telemetry["available"] is False and telemetry["devices"] == []  # type: ignore[index]
    assert "no telemetry" in telemetry["note"]  # type: ignore[index]


# --- through HTTP -------------------------------------------------------------------------------


@contextmanager
def gateway(keys: list[str], engine: FakeOpenAIEngine) -> Iterator[str]:
    with ExitStack() as stack:
        server = stack.enter_context(serve_in_thread(engine.app()))
        config = GatewayConfig.model_validate(
            {
                "backends": [{"name": "a", "url": server.url, "models": engine.models}],
                "api_keys": [{"key": k} for k in keys],
            }
        )
        yield stack.enter_context(serve_in_thread(create_app(config, StaticMonitor()))).url


def raw(
    url: str, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request, redirects not followed (the login flow is made of them)."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        reply = connection.getresponse()
        return reply.status, reply.headers, reply.read()
    finally:
        connection.close()


def login(url: str, key: str, origin: str | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if origin is not None:
        headers["Origin"] = origin
    return raw(url, "POST", "/ui/login", body=urllib.parse.urlencode({"key": key}).encode(), headers=headers)


def test_without_a_key_the_page_sends_the_browser_to_the_login_form() -> None:
    with gateway([KEY], FakeOpenAIEngine("a", models=["m"])) as url:
        status, headers, _ = raw(url, "GET", "/ui")
        assert (status, headers["Location"]) == (303, "/ui/login")
        status, headers, body = raw(url, "GET", "/ui/login")
        assert status == 200 and b'name="key"' in body and b'type="password"' in body
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        status, _, body = raw(url, "GET", "/ui/status.json")
        assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"


def test_a_wrong_key_is_refused_and_gets_no_cookie() -> None:
    with gateway([KEY], FakeOpenAIEngine("a", models=["m"])) as url:
        for key in ("sk-wrong", "", KEY + " trailing", "x" * 10_000):
            status, headers, body = login(url, key)
            assert status == 401, key[:20]
            assert headers.get("Set-Cookie") is None
            assert b'role="alert"' in body


def test_the_right_key_opens_a_session_cookie_that_is_not_the_key() -> None:
    with gateway([KEY], FakeOpenAIEngine("a", models=["m"])) as url:
        status, headers, _ = login(url, KEY, origin=url)
        assert (status, headers["Location"]) == (303, "/ui")
        cookie = headers["Set-Cookie"]
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "samesite", "path"} <= flags
        assert "SameSite=Strict" in cookie and "Path=/ui" in cookie
        token = cookie.split(";")[0].split("=", 1)[1]
        assert KEY not in token and len(token) >= 32
        session = {"Cookie": f"{COOKIE}={token}"}
        status, headers, body = raw(url, "GET", "/ui", headers=session)
        assert (
            status == 200 and headers["Content-Type"].startswith("text/html") and b"/ui/static/ui.js" in body
        )
        status, _, body = raw(url, "GET", "/ui/status.json", headers=session)
        assert status == 200
        assert [b["name"] for b in json.loads(body)["backends"]] == ["a"] and json.loads(body)["auth"] is True
        # a made-up token is no session; logging out ends the real one
        assert raw(url, "GET", "/ui/status.json", headers={"Cookie": f"{COOKIE}=made-up"})[0] == 401
        status, headers, _ = raw(url, "POST", "/ui/logout", headers=session)
        assert status == 303 and f"{COOKIE}=" in headers["Set-Cookie"]
        assert raw(url, "GET", "/ui/status.json", headers=session)[0] == 401


def test_the_api_key_works_as_a_bearer_token_and_a_form_from_elsewhere_is_refused() -> None:
    with gateway([KEY], FakeOpenAIEngine("a", models=["m"])) as url:
        status, _, _ = raw(url, "GET", "/ui/status.json", headers={"Authorization": f"Bearer {KEY}"})
        assert status == 200
        status, _, _ = raw(url, "GET", "/ui/status.json", headers={"Authorization": "Bearer sk-wrong"})
        assert status == 401
        status, headers, _ = login(url, KEY, origin="https://evil.example")
        assert status == 403 and headers.get("Set-Cookie") is None


def test_a_gateway_without_keys_shows_the_page_to_everyone() -> None:
    with gateway([], FakeOpenAIEngine("a", models=["m"])) as url:
        assert raw(url, "GET", "/ui")[0] == 200
        status, headers, _ = raw(url, "GET", "/ui/login")
        assert (status, headers["Location"]) == (303, "/ui")
        status, _, body = raw(url, "GET", "/ui/status.json")
        assert status == 200 and json.loads(body)["auth"] is False


def test_the_page_files_ship_in_the_package_and_nothing_else_is_served() -> None:
    with gateway([], FakeOpenAIEngine("a", models=["m"])) as url:
        for name, kind in (
            ("ui.js", "text/javascript"),
            ("ui.css", "text/css"),
            ("icon.svg", "image/svg+xml"),
        ):
            status, headers, body = raw(url, "GET", f"/ui/static/{name}")
            assert status == 200 and headers["Content-Type"].startswith(kind) and body
        for name in ("../pages.py", "index.html.bak", "%2e%2e%2fpages.py"):
            assert raw(url, "GET", f"/ui/static/{name}")[0] == 404


def test_server_side_failures_reach_the_last_errors() -> None:
    engine = FakeOpenAIEngine("a", models=["m"])
    engine.fault = Fault.ERROR
    with gateway([KEY], engine) as url:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        status, _, _ = http_request(
            "POST", f"{url}/v1/chat/completions", body, {"Authorization": f"Bearer {KEY}"}
        )
        assert status == 500
        _, _, reply = raw(url, "GET", "/ui/status.json", headers={"Authorization": f"Bearer {KEY}"})
    status_body = json.loads(reply)
    [error] = status_body["errors"]
    assert (error["model"], error["backend"], error["status"]) == ("m", "a", 500)
    assert "a is broken" in error["message"]
    [row] = status_body["models"]
    assert (row["requests"], row["errors"]) == (1, 1)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xfe=\xff", "application/x-www-form-urlencoded"),
        (b"key=%ff%fe", "application/x-www-form-urlencoded"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
        (b'{"key": "sk"}', "application/json"),
        (b"&".join(b"k%d=v" % i for i in range(5000)), "application/x-www-form-urlencoded"),
    ],
    ids=["raw-bytes", "percent-bytes", "broken-multipart", "json", "many-fields"],
)
def test_a_login_body_the_form_never_sends_is_a_clear_4xx(body: bytes, content_type: str) -> None:
    with gateway([KEY], FakeOpenAIEngine("a", models=["m"])) as url:
        status, headers, reply = raw(
            url, "POST", "/ui/login", body=body, headers={"Content-Type": content_type}
        )
    assert 400 <= status < 500, (status, reply[:200])
    assert headers.get("Set-Cookie") is None


def test_an_unreachable_backend_is_a_last_error_naming_it() -> None:
    config = GatewayConfig.model_validate(
        {"backends": [{"name": "gone", "url": f"http://127.0.0.1:{free_port()}", "models": ["m"]}]}
    )
    with serve_in_thread(create_app(config, StaticMonitor())) as server:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        status, _, _ = http_request("POST", f"{server.url}/v1/chat/completions", body)
        assert status == 502
        _, _, reply = raw(server.url, "GET", "/ui/status.json")
    [error] = json.loads(reply)["errors"]
    assert (error["model"], error["backend"], error["status"]) == ("m", "gone", 502)
    assert "gone" in error["message"]


def test_sessions_end_after_their_time_and_the_table_stays_bounded() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    token = sessions.open("Bearer k")
    assert sessions.authorization(token) == "Bearer k"
    assert sessions.authorization("other") is None and sessions.authorization(None) is None
    clock.now += SESSION_TTL_S
    assert sessions.authorization(token) is None
    first = sessions.open("Bearer first")
    for _ in range(MAX_SESSIONS):
        sessions.open("Bearer later")
    assert sessions.authorization(first) is None  # the oldest went first


def test_telemetry_fake_without_telemetry_is_a_usage_error() -> None:
    result = invoke_wave("serve", "--backend", "a=http://127.0.0.1:9", "--telemetry-fake", "rtx-4080-super")
    assert isinstance(result.exception, UsageError)  # `wave` exits 2 with its message
    assert "give both, or neither" in str(result.exception)


def test_failed_logins_from_one_address_are_limited_with_a_clear_429() -> None:
    with gateway([KEY], FakeOpenAIEngine("a", models=["m"])) as url:
        status, _, _ = login(url, KEY)
        assert status == 303  # a right key costs nothing
        for _ in range(FAILED_LOGINS_PER_MINUTE):
            status, _, _ = login(url, "sk-guess")
            assert status == 401
        for key in ("sk-guess", KEY):  # limited: not even the right key is checked (no oracle)
            status, headers, body = login(url, key)
            assert status == 429 and headers.get("Set-Cookie") is None
            assert 1 <= int(headers["Retry-After"]) <= 60 // FAILED_LOGINS_PER_MINUTE + 1
            assert b'role="alert"' in body and b"Too many refused logins" in body
        # the API's bearer keys are not the login form's business
        status, _, _ = raw(url, "GET", "/ui/status.json", headers={"Authorization": f"Bearer {KEY}"})
        assert status == 200


def test_failed_logins_refill_over_the_minute_and_each_address_has_its_own() -> None:
    clock = Clock()
    throttle = FailedLogins(per_minute=6, clock=clock)
    for _ in range(6):
        assert throttle.wait_s("10.0.0.1") == 0
        throttle.failed("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") == pytest.approx(10)
    assert throttle.wait_s("10.0.0.2") == 0
    clock.now += 10
    assert throttle.wait_s("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") > 0
    for i in range(MAX_LOGIN_ADDRESSES + 5):  # a flood of addresses cannot grow the table
        throttle.failed(f"10.1.{i // 256}.{i % 256}")
    assert len(throttle) <= MAX_LOGIN_ADDRESSES


def test_energy_and_cost_per_hour_and_per_thousand_tokens_cover_the_window() -> None:
    clock = Clock()
    nvml = FakeNvml(RECORDINGS["rtx-4080-super"], clock=clock)
    gpus, why = open_nvml(nvml)
    assert gpus is not None, why
    config_backends = [
        BackendConfig.model_validate({"name": "gpu", "url": "http://127.0.0.1:9", "gpu": True})
    ]
    meter = EnergyMeter(
        telemetry=Telemetry([gpus]),
        backends=config_backends,
        clock=clock,
        tariff=Tariff(price_per_kwh=0.30, currency="EUR"),
    )
    board, _ = _board(StaticMonitor(), clock, meter=meter)
    nvml.set_draw(0, 20)
    meter.step()
    asyncio.run(board.status())  # the window's base: nothing measured yet
    for _ in range(10):  # ten requests of 100 tokens, each 1 s at 380 W above 20 W idle
        clock.now += 1.0
        meter.step()
        charge = meter.charge(key="k")
        charge.begin("gpu", "llama", clock.now)
        nvml.set_draw(0, 400)
        clock.now += 1.0
        charge.finish(clock.now, first_token=clock.now - 0.5, usage=(10, 100))
        charge.close(clock.now)
        meter.step()  # a sample at each end, so the counter's steps line up with the requests
        nvml.set_draw(0, 20)
    for _ in range(3):
        clock.now += 0.25
        meter.step()
    assert meter.pending() == 0
    status = asyncio.run(board.status())
    window = status["window_s"]
    assert status["energy"] == {"metered": True, "currency": "EUR"}
    llama = {row["model"]: row for row in status["models"]}["llama"]  # type: ignore[attr-defined]
    request_wh = 400 * 1.0 / 3600  # its energy and its idle share
    assert llama["wh_per_h"] == pytest.approx(10 * request_wh * 3600 / window, rel=0.01)
    assert llama["wh_per_1k_tokens"] == pytest.approx(request_wh * 10, rel=0.01)
    assert llama["cost_per_1k_tokens"] == pytest.approx(request_wh * 10 / 1000 * 0.30, rel=0.01)
    assert llama["cost_per_h"] == pytest.approx(llama["wh_per_h"] / 1000 * 0.30, rel=1e-6)
    assert {row["model"]: row for row in status["models"]}["qwen"]["wh_per_h"] is None  # type: ignore[attr-defined]
