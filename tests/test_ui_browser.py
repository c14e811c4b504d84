"""The status page in a real headless Chromium (DevTools protocol, tests/browser.py), against
`wave serve` in its own process in front of engine processes that the tests kill and restart.

Set WAVE_UI_SCREENSHOTS=DIR to keep the desktop and phone screenshots (docs/images holds them):

    WAVE_UI_SCREENSHOTS=docs/images pytest tests/test_ui_browser.py -k screenshots
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image

import reliability_support as support
from browser import CdpError, Chromium, Page, chromium_path
from helpers import free_port, http_request

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="needs chromium (./dev test installs it)"),
    pytest.mark.slow,
]

KEY = "sk-ui-browser-0123456789"
HOSTILE = '<img src=x onerror="window.pwned=1">'
T = TypeVar("T")

BACKENDS = """(() => Object.fromEntries([...document.querySelectorAll('#backends [data-backend]')]
  .map(card => [card.dataset.backend, card.dataset.state])))()"""


@dataclass
class Fleet:
    gateway: support.GatewayProcess
    engines: dict[str, support.EngineProcess]
    ports: dict[str, int]

    def restart(self, name: str) -> None:
        self.engines[name] = support.EngineProcess(name, "--port", str(self.ports[name]), "--tokens", "12")


def _config(path: Path, ports: dict[str, int], dead: int) -> Path:
    backends = [
        {"name": name, "url": f"http://127.0.0.1:{port}", "models": ["llama-3.1-8b"], "gpu": True}
        for name, port in ports.items()
    ]
    # a machine that is switched off: nothing listens on its port
    backends.append({"name": "laptop", "url": f"http://127.0.0.1:{dead}", "models": ["qwen2.5-3b"]})
    path.write_text(json.dumps({"backends": backends, "poll_interval_s": 0.25, "policy": "round-robin"}))
    return path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    ports = {"desktop": free_port(), "nuc": free_port()}
    engines = {
        name: support.EngineProcess(name, "--port", str(port), "--tokens", "12")
        for name, port in ports.items()
    }
    folder = tmp_path_factory.mktemp("ui")
    config = _config(folder / "wave.json", ports, free_port())
    gateway = support.GatewayProcess(
        "--config", str(config), "--api-key", KEY, "--telemetry", "--telemetry-fake", "rtx-4080-super",
        "--tariff", "0.30", "--currency", "EUR", log=folder / "gateway.log",
    )  # fmt: skip
    started = Fleet(gateway, engines, ports)
    try:
        yield started
    finally:
        gateway.stop()
        for engine in started.engines.values():
            engine.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium.start() as started:
        yield started


def wait_for(page: Page, expression: str, *, timeout_s: float = 15.0, what: str = "") -> Any:
    """The expression's first truthy value; a navigation in between (its context destroyed) is waited out."""
    deadline = time.monotonic() + timeout_s
    value: Any = None
    while True:
        try:
            value = page.evaluate(expression)
        except CdpError:
            value = None
        if value:
            return value
        assert (
            time.monotonic() < deadline
        ), f"{what or expression} not true within {timeout_s} s (last: {value!r})"
        time.sleep(0.05)  # the page polls the gateway every 2 s: nothing to be told of in between


def until(predicate: Callable[[], T], *, timeout_s: float = 20.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what} not true within {timeout_s} s"
        time.sleep(0.05)
    return value


def log_in(page: Page, key: str) -> None:
    page.evaluate(
        f"document.querySelector('#key').value = {json.dumps(key)}; document.querySelector('form').submit(); 1"
    )


@pytest.fixture(scope="module")
def logged_in(browser: Chromium, fleet: Fleet) -> Page:
    """A tab through the login form: without a key the page asks for one, a wrong one is refused."""
    page = browser.open(f"{fleet.gateway.url}/ui")
    wait_for(page, "location.pathname === '/ui/login' && document.querySelector('#key') !== null")
    log_in(page, "sk-not-this-one")
    wait_for(page, "document.querySelector('.refused') !== null", what="the refusal")
    assert page.evaluate("location.pathname") == "/ui/login"
    assert "refused" in page.evaluate("document.querySelector('.refused').textContent")
    log_in(page, KEY)
    wait_for(
        page, "location.pathname === '/ui' && Number(document.body.dataset.polls || 0) >= 1", what="the page"
    )
    return page


def test_login_asks_for_a_key_refuses_a_wrong_one_and_lets_the_right_one_in(logged_in: Page) -> None:
    assert logged_in.evaluate("document.querySelector('#logout').hidden") is False
    # the one problem the browser saw: the 401 the wrong key got
    problems = logged_in.problems()
    assert all("401" in p.text for p in problems), problems
    cookie = logged_in.call("Network.getCookies", {"urls": [logged_in.evaluate("location.href")]})
    [session] = cookie["cookies"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/ui"
    assert KEY not in session["value"]
    assert logged_in.evaluate("document.cookie") == ""  # HttpOnly: the page's script cannot read it


def test_the_page_shows_every_backend_and_follows_a_kill_and_a_return(
    browser: Chromium, fleet: Fleet, logged_in: Page
) -> None:
    page = browser.open(f"{fleet.gateway.url}/ui")  # the session cookie from the login above
    wait_for(page, "Number(document.body.dataset.polls || 0) >= 1")
    states = wait_for(
        page,
        f"(s => s.desktop === 'healthy' && s.nuc === 'healthy' && s.laptop === 'failed' && s)({BACKENDS})",
    )
    assert set(states) == {"desktop", "nuc", "laptop"}
    laptop = page.evaluate("document.querySelector('[data-backend=laptop]').textContent")
    assert "qwen2.5-3b" in laptop and "failed" in laptop

    fleet.engines["nuc"].kill()
    wait_for(page, f"['failed', 'open'].includes({BACKENDS}.nuc)", what="nuc shown down")
    assert page.evaluate(BACKENDS)["desktop"] == "healthy"

    fleet.restart("nuc")
    wait_for(page, f"['healthy', 'half-open'].includes({BACKENDS}.nuc)", what="nuc shown back")

    def ask() -> bool:  # a request or two reaches nuc (round-robin) and closes its half-open breaker
        body = {"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        http_request(
            "POST", f"{fleet.gateway.url}/v1/chat/completions", body, {"Authorization": f"Bearer {KEY}"}
        )
        return bool(page.evaluate(f"{BACKENDS}.nuc === 'healthy'"))

    until(ask, what="nuc healthy again")
    assert not page.problems(), page.problems()


def _traffic(url: str) -> None:
    """Streams (TTFT and TPOT), plain answers, and requests no backend can take (errors)."""
    headers = {"Authorization": f"Bearer {KEY}"}
    for index in range(12):
        body = {"model": "llama-3.1-8b", "messages": [{"role": "user", "content": f"hello {index}"}]}
        http_request("POST", f"{url}/v1/chat/completions", {**body, "stream": index % 2 == 0}, headers)
    body = {"model": "qwen2.5-3b", "messages": [{"role": "user", "content": "anyone?"}]}
    status, _, _ = http_request("POST", f"{url}/v1/chat/completions", body, headers)
    assert status == 503


def test_models_show_rates_latencies_and_the_last_errors(
    browser: Chromium, fleet: Fleet, logged_in: Page
) -> None:
    page = browser.open(f"{fleet.gateway.url}/ui")
    wait_for(page, "Number(document.body.dataset.polls || 0) >= 1")
    _traffic(fleet.gateway.url)
    polls = page.evaluate("Number(document.body.dataset.polls)")
    wait_for(page, f"Number(document.body.dataset.polls) >= {polls + 2}", what="two more polls")
    row = page.evaluate(
        "[...document.querySelector('tr[data-model=\"llama-3.1-8b\"]').cells].map(c => c.textContent)"
    )
    assert row[0] == "llama-3.1-8b" and "desktop" in row[1] and "nuc" in row[1]
    assert row[2] != "–" and float(row[2]) > 0  # requests per second
    assert row[4].endswith("ms") or row[4].endswith(" s")  # TTFT P50 from the streams
    assert row[6].endswith("ms") or row[6].endswith(" s")  # TPOT P50
    errors = page.evaluate("[...document.querySelectorAll('#errors li')].map(li => li.textContent)")
    assert any("503" in e and "qwen2.5-3b" in e for e in errors), errors
    # the recorded RTX 4080 SUPER: power, memory, temperature and utilisation
    device = page.evaluate("document.querySelector('#devices [data-device]').textContent")
    assert "4080" in device and " W" in device and "GiB" in device and "°C" in device
    assert page.evaluate("document.querySelector('#t-power').textContent").endswith(" W")
    # energy and cost of the metered requests: per hour, and per 1,000 tokens, in the tariff's currency
    energy = wait_for(
        page,
        "(r => r && r.cells[9].textContent !== '–' && [...r.cells].slice(9).map(c => c.textContent))"
        "(document.querySelector('tr[data-model=\"llama-3.1-8b\"]'))",
        what="the model's energy and cost",
    )
    assert energy[0].endswith("Wh") and energy[1].endswith("EUR") and energy[2].endswith("EUR"), energy
    assert page.evaluate("document.querySelector('#t-energy').textContent").endswith("Wh")
    assert page.evaluate("document.querySelector('#t-cost').textContent").endswith("EUR")
    assert not page.problems(), page.problems()


VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"width": 1280, "height": 900},
    "phone": {"width": 390, "height": 844, "mobile": True},
}


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_first_paint_and_screenshots_at_desktop_and_phone_width(
    browser: Chromium, fleet: Fleet, logged_in: Page, viewport: str
) -> None:
    size = VIEWPORTS[viewport]
    page = browser.open("about:blank", **size)
    page.call("Page.bringToFront")  # a headless tab behind another paints nothing
    page.goto(f"{fleet.gateway.url}/ui")
    wait_for(page, "Number(document.body.dataset.polls || 0) >= 1")
    paints = wait_for(
        page,
        "(e => e.length >= 2 && Object.fromEntries(e.map(p => [p.name, p.startTime])))"
        "(performance.getEntriesByType('paint'))",
        what="the paint timings",
    )
    first_data = float(page.evaluate("document.body.dataset.firstDataMs"))
    print(
        f"\n{viewport}: first paint {paints.get('first-paint', float('nan')):.0f} ms, first contentful paint "
        f"{paints.get('first-contentful-paint', float('nan')):.0f} ms, first data drawn {first_data:.0f} ms"
    )
    assert paints["first-contentful-paint"] <= 1000.0, paints
    layout = page.evaluate(
        "({scroll: document.documentElement.scrollWidth, width: document.documentElement.clientWidth})"
    )
    assert layout["scroll"] <= layout["width"], layout  # the page never scrolls sideways
    png = page.screenshot(full_page=True)
    image = Image.open(io.BytesIO(png))
    assert image.width == size["width"]
    keep = os.environ.get("WAVE_UI_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / f"status-page-{viewport}.png").write_bytes(png)
    assert not page.problems(), page.problems()


@pytest.fixture(scope="module")
def open_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway without keys whose one backend lists a model name that is markup."""
    engine = support.EngineProcess("e", "--tokens", "3")
    config = tmp_path_factory.mktemp("open") / "wave.json"
    config.write_text(json.dumps({"backends": [{"name": "e", "url": engine.url, "models": [HOSTILE, "m"]}]}))
    gateway = support.GatewayProcess("--config", str(config))
    try:
        yield gateway.url
    finally:
        gateway.stop()
        engine.stop()


def test_an_open_gateway_shows_the_page_and_model_names_stay_text(
    browser: Chromium, open_gateway: str
) -> None:
    body = {"model": HOSTILE, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert http_request("POST", f"{open_gateway}/v1/chat/completions", body)[0] == 200
    page = browser.open(f"{open_gateway}/ui")
    wait_for(page, "Number(document.body.dataset.polls || 0) >= 1")
    assert page.evaluate("location.pathname") == "/ui"  # no login without keys
    chips = page.evaluate(
        "[...document.querySelectorAll('[data-backend=e] .chips li')].map(li => li.textContent)"
    )
    assert HOSTILE in chips
    assert page.evaluate("document.querySelector('td.model').textContent") in (HOSTILE, "m")
    assert page.evaluate("document.querySelectorAll('main img').length") == 0
    assert page.evaluate("window.pwned === undefined")
    assert page.evaluate("document.querySelector('#logout').hidden") is True
    assert page.evaluate("document.querySelector('#no-telemetry').textContent").startswith("no telemetry")
    assert not page.problems(), page.problems()
