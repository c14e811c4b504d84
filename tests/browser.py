"""A real headless Chromium for tests, driven over the DevTools protocol (CDP) with aiohttp.

    with Chromium.start() as browser:
        page = browser.open(url, width=1280, height=800)
        box = page.evaluate("document.querySelector('#summary').getBoundingClientRect().toJSON()")
        png = page.screenshot()
        assert not page.problems()          # console errors, uncaught exceptions, failed loads

Chromium runs with its own profile in a temporary directory and with every background service
off (`FLAGS`): on a closed network the background fetches of a default profile retry without end.
`chromium_path()` is None where no Chromium is installed (`./dev test` installs Debian's).

The client is synchronous: each call runs the websocket on this object's own event loop until its
answer arrives, and the events read meanwhile (console messages, exceptions, log entries) are kept
on the page they belong to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["FLAGS", "Chromium", "ConsoleEntry", "Page", "chromium_path"]

FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: the sandbox needs user namespaces it may not have
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",  # containers often give /dev/shm 64 MB, too little for a renderer
    "--mute-audio",
    "--hide-scrollbars",  # screenshots without a scrollbar's width taken from the page
)
START_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 20.0


def chromium_path() -> str | None:
    """The Chromium (or Chrome) binary on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


@dataclass(frozen=True)
class ConsoleEntry:
    """One thing the page reported: a console call, an uncaught exception or a browser log entry."""

    source: str  # "console", "exception" or "log"
    level: str  # console: log/info/warning/error …; exception: error; log: verbose/info/warning/error
    text: str


class CdpError(RuntimeError):
    """A DevTools command the browser answered with an error, or an exception the page threw."""


@dataclass
class _Connection:
    loop: asyncio.AbstractEventLoop
    http: aiohttp.ClientSession
    socket: aiohttp.ClientWebSocketResponse
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    pages: dict[str, Page] = field(default_factory=dict)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        return self.loop.run_until_complete(
            asyncio.wait_for(self._call(method, params or {}, session), CALL_TIMEOUT_S)
        )

    def wait_event(self, session: str, method: str, timeout_s: float) -> dict[str, Any]:
        return self.loop.run_until_complete(asyncio.wait_for(self._event(session, method), timeout_s))

    async def _call(self, method: str, params: dict[str, Any], session: str | None) -> Any:
        call_id = next(self.ids)
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.socket.send_str(json.dumps(message))
        while True:
            reply = await self._receive()
            if reply.get("id") == call_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    async def _event(self, session: str, method: str) -> dict[str, Any]:
        while True:
            message = await self._receive()
            if message.get("sessionId") == session and message.get("method") == method:
                params: dict[str, Any] = message.get("params", {})
                return params

    async def _receive(self) -> dict[str, Any]:
        frame = await self.socket.receive()
        if frame.type is not aiohttp.WSMsgType.TEXT:
            raise CdpError(f"the DevTools connection ended ({frame.type.name})")
        message: dict[str, Any] = json.loads(frame.data)
        page = self.pages.get(message.get("sessionId", ""))
        if page is not None and "method" in message:
            page.record(message["method"], message.get("params", {}))
        return message


class Page:
    """One tab at a fixed viewport: navigate, evaluate JavaScript, take screenshots, read problems."""

    def __init__(self, connection: _Connection, session: str, target: str) -> None:
        self._connection, self._session, self._target = connection, session, target
        self.entries: list[ConsoleEntry] = []

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Any DevTools command on this page (https://chromedevtools.github.io/devtools-protocol/)."""
        return self._connection.call(method, params, self._session)

    def goto(self, url: str, timeout_s: float = 20.0) -> None:
        """Load `url` and wait for its load event."""
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CdpError(f"loading {url}: {result['errorText']}")
        self._connection.wait_event(self._session, "Page.loadEventFired", timeout_s)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON-like Python."""
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CdpError(
                f"{expression!r} threw: {details.get('exception', {}).get('description', details)}"
            )
        return result["result"].get("value")

    def screenshot(self, *, full_page: bool = False) -> bytes:
        """A PNG of the viewport, or of the whole page."""
        # A headless tab behind another draws no frames, and a capture would wait for one.
        self.call("Page.bringToFront")
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.evaluate(
                "({w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight})"
            )
            params |= {
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["w"], "height": size["h"], "scale": 1},
            }
        return base64.b64decode(self.call("Page.captureScreenshot", params)["data"])

    def problems(self) -> list[ConsoleEntry]:
        """Console errors and warnings, uncaught exceptions and browser log warnings or errors so far."""
        self.evaluate("0")  # read what arrived since the last call
        return [e for e in self.entries if e.level in ("error", "warning", "assert")]

    def close(self) -> None:
        """Close the tab."""
        self._connection.call("Target.closeTarget", {"targetId": self._target})
        self._connection.pages.pop(self._session, None)

    def record(self, method: str, params: dict[str, Any]) -> None:
        """Keep a console call, exception or log entry the browser sent for this page."""
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.entries.append(ConsoleEntry("console", params.get("type", "log"), text))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.entries.append(ConsoleEntry("exception", "error", text))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.entries.append(ConsoleEntry("log", entry.get("level", "info"), entry.get("text", "")))


class Chromium:
    """A headless Chromium process and one DevTools connection to it; close() ends both."""

    def __init__(self, process: subprocess.Popen[bytes], profile: Path, connection: _Connection) -> None:
        self._process, self._profile, self._connection = process, profile, connection

    @classmethod
    @contextlib.contextmanager
    def start(cls, binary: str | None = None) -> Iterator[Chromium]:
        """Start Chromium with a fresh profile, connect to it, and close both on exit."""
        binary = binary or chromium_path()
        if binary is None:
            raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")
        profile = Path(tempfile.mkdtemp(prefix="wave-chromium-"))
        process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        loop = asyncio.new_event_loop()
        browser: Chromium | None = None
        try:
            url = _devtools_url(process, profile)
            browser = cls(process, profile, loop.run_until_complete(_connect(loop, url)))
            yield browser
        finally:
            if browser is not None:
                browser._close()
            _end(process)
            loop.close()
            shutil.rmtree(profile, ignore_errors=True)

    def open(self, url: str, *, width: int = 1280, height: int = 800, mobile: bool = False) -> Page:
        """A new tab of `width` x `height` CSS pixels (`mobile`: phone emulation) showing `url`."""
        target = self._connection.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._connection.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self._connection, session, target)
        self._connection.pages[session] = page
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            page.call(method)
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        page.goto(url)
        return page

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.call("Browser.close")
        self._connection.loop.run_until_complete(self._connection.socket.close())
        self._connection.loop.run_until_complete(self._connection.http.close())


def _devtools_url(process: subprocess.Popen[bytes], profile: Path) -> str:
    """The browser's websocket URL, from the DevToolsActivePort file Chromium writes on start."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode} before listening")
        lines = port_file.read_text().split() if port_file.exists() else []
        if len(lines) == 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.05)  # no event to wait on: Chromium only writes the file
    raise TimeoutError(f"chromium wrote no {port_file} within {START_TIMEOUT_S:g} s")


async def _connect(loop: asyncio.AbstractEventLoop, url: str) -> _Connection:
    http = aiohttp.ClientSession()
    socket = await http.ws_connect(url, max_msg_size=0)  # screenshots exceed the 4 MB default
    return _Connection(loop=loop, http=http, socket=socket)


def _end(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
