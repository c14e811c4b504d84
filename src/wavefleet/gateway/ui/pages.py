"""The status page's routes, behind the gateway's own authenticator.

    GET  /ui               the page (HTML; its script polls /ui/status.json every 2 s)
    GET  /ui/status.json   what the page shows (StatusBoard.status)
    GET  /ui/login         a form that takes an API key;  POST /ui/login checks it
    POST /ui/logout        forgets the browser's session
    GET  /ui/static/{file} the page's CSS and JavaScript

A caller gets in with the API's `Authorization: Bearer <key>`, or with the session cookie the
login form sets: a random token (HttpOnly, SameSite=Strict, Path=/ui, Secure over TLS) that
maps, in this process's memory, to the key it was given for. The key is checked again on every
request, so a revoked or expired key ends its sessions at once; the key itself never goes back
to the browser. A gateway without keys serves the page to everyone, as it serves the API.

Refused logins are limited per client address (`FailedLogins`): a bucket of
`FAILED_LOGINS_PER_MINUTE` that refills evenly over the minute, as the API's per-key
requests-per-minute limit does. Once it is empty, every login from that address, whatever key
it sends, gets 429 with Retry-After until the bucket refills, so guessing keys through the form
goes no faster than that. A right key costs nothing.

Every answer forbids framing and inline scripts (Content-Security-Policy): the page's script
writes what it receives with `textContent` only, so a model name cannot become markup.
"""

from __future__ import annotations

import html
import math
import secrets
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from importlib import resources

from aiohttp import web

from wavefleet.errors import AuthenticationError, GatewayError
from wavefleet.gateway.responses import error_response, json_response
from wavefleet.gateway.security.authn import Authenticator
from wavefleet.gateway.ui.board import StatusBoard

__all__ = [
    "COOKIE",
    "FAILED_LOGINS_PER_MINUTE",
    "MAX_LOGIN_ADDRESSES",
    "SESSION_TTL_S",
    "FailedLogins",
    "Sessions",
    "StatusPages",
]

COOKIE = "wave_ui"
SESSION_TTL_S = 12 * 3600.0
MAX_SESSIONS = 1024  # oldest go first: a flood of logins cannot grow the table
FAILED_LOGINS_PER_MINUTE = 10
MAX_LOGIN_ADDRESSES = 4096  # addresses with refused logins remembered; the longest quiet go first
_KEY_CHARS = 4096  # a key (or an OIDC token) longer than this is refused without checking
_STATIC = {"ui.css": "text/css", "ui.js": "text/javascript", "icon.svg": "image/svg+xml"}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send `Origin: null` on the form
    "Cache-Control": "no-store",
}


def _asset(name: str) -> str:
    return resources.files("wavefleet.gateway.ui").joinpath("static", name).read_text(encoding="utf-8")


class Sessions:
    """Browser sessions: token -> (the Authorization header to check, when it ends)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._table: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def open(self, authorization: str) -> str:
        token = secrets.token_urlsafe(32)
        self._table[token] = (authorization, self._clock() + SESSION_TTL_S)
        while len(self._table) > MAX_SESSIONS:
            self._table.popitem(last=False)
        return token

    def authorization(self, token: str | None) -> str | None:
        """The header a live session stands for; None for an unknown or ended one."""
        found = self._table.get(token or "")
        if found is None:
            return None
        authorization, ends = found
        if self._clock() >= ends:
            del self._table[token or ""]
            return None
        return authorization

    def close(self, token: str | None) -> None:
        self._table.pop(token or "", None)


class FailedLogins:
    """Refused logins per client address: a token bucket of `per_minute`, refilled evenly over
    the minute (the API's rpm limit, counted only for refusals)."""

    def __init__(
        self, *, per_minute: int = FAILED_LOGINS_PER_MINUTE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_minute < 1:
            raise ValueError("at least one refused login per minute must be allowed")
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (level, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, address: str, now: float) -> float:
        level, at = self._buckets.get(address, (float(self.per_minute), now))
        return min(float(self.per_minute), level + (now - at) * self.per_minute / 60.0)

    def wait_s(self, address: str) -> float:
        """Seconds until `address` may try to log in again (0: now)."""
        level = self._level(address, self._clock())
        return 0.0 if level >= 1.0 else (1.0 - level) * 60.0 / self.per_minute

    def failed(self, address: str) -> None:
        """A login from `address` was refused: it takes one from the bucket."""
        now = self._clock()
        self._buckets[address] = (self._level(address, now) - 1.0, now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > MAX_LOGIN_ADDRESSES:
            self._buckets.popitem(last=False)


class StatusPages:
    def __init__(
        self, *, board: StatusBoard, authenticator: Authenticator, failed_logins: FailedLogins | None = None
    ) -> None:
        self._board = board
        self._authenticator = authenticator
        self._sessions = Sessions()
        self._failed = failed_logins or FailedLogins()
        # read once: the files ship inside the package and do not change while it runs
        self._page = _asset("index.html").encode()
        self._login = _asset("login.html")
        self._static = {name: _asset(name).encode() for name in _STATIC}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/ui", self.page),
            web.get("/ui/", self.slash),
            web.get("/ui/status.json", self.status),
            web.get("/ui/login", self.login_form),
            web.post("/ui/login", self.login),
            web.post("/ui/logout", self.logout),
            web.get("/ui/static/{name}", self.static),
        ]

    async def _allowed(self, request: web.Request) -> bool:
        """A valid bearer key, a live session whose key is still valid, or a gateway without keys."""
        if not self._authenticator.enabled:
            return True
        header = request.headers.get("Authorization")
        if header is None:
            header = self._sessions.authorization(request.cookies.get(COOKIE))
            if header is None:
                return False
        try:
            await self._authenticator.authenticate(header)
        except GatewayError:
            return False
        return True

    async def page(self, request: web.Request) -> web.StreamResponse:
        if not await self._allowed(request):
            raise web.HTTPSeeOther("/ui/login", headers=_HEADERS)
        return web.Response(body=self._page, content_type="text/html", charset="utf-8", headers=_HEADERS)

    async def slash(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect("/ui")

    async def status(self, request: web.Request) -> web.Response:
        if not await self._allowed(request):
            error = AuthenticationError("log in at /ui/login, or send `Authorization: Bearer <key>`")
            response = error_response(error)
            response.headers.update(_HEADERS)
            return response
        body = await self._board.status()
        body["auth"] = self._authenticator.enabled  # the page offers to log out only where one logs in
        response = json_response(body)
        response.headers.update(_HEADERS)
        return response

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if not self._authenticator.enabled or await self._allowed(request):
            raise web.HTTPSeeOther("/ui", headers=_HEADERS)
        return self._login_page("", 200)

    async def login(self, request: web.Request) -> web.StreamResponse:
        if not _same_origin(request):
            return self._login_page("This form only takes keys sent from this gateway's own page.", 403)
        if not self._authenticator.enabled:
            raise web.HTTPSeeOther("/ui", headers=_HEADERS)
        address = request.remote or ""
        wait = self._failed.wait_s(address)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            response = self._login_page(
                f"Too many refused logins from this address: try again in {seconds} s.", 429
            )
            response.headers["Retry-After"] = str(seconds)
            return response
        key = await _form_key(request)
        if key is None:
            return self._login_page(
                "The form could not be read: send it from this page (URL-encoded UTF-8, one `key` field).",
                400,
            )
        if not key:
            return self._login_page("Enter an API key.", 401)
        header = f"Bearer {key}"
        try:
            if len(key) > _KEY_CHARS or any(c.isspace() for c in key):
                raise AuthenticationError("not a key")
            await self._authenticator.authenticate(header)
        except GatewayError:
            self._failed.failed(address)
            return self._login_page("That key was refused.", 401)
        response = web.HTTPSeeOther("/ui", headers=_HEADERS)
        response.set_cookie(
            COOKIE,
            self._sessions.open(header),
            path="/ui",
            max_age=int(SESSION_TTL_S),
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        if not _same_origin(request):
            return self._login_page("This form only works from this gateway's own page.", 403)
        self._sessions.close(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/ui/login" if self._authenticator.enabled else "/ui", headers=_HEADERS)
        response.del_cookie(COOKIE, path="/ui")
        raise response

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = self._static.get(name)
        if body is None:
            raise web.HTTPNotFound()
        headers = {**_HEADERS, "Cache-Control": "no-cache"}
        return web.Response(body=body, content_type=_STATIC[name], charset="utf-8", headers=headers)

    def _login_page(self, message: str, status: int) -> web.Response:
        note = f'<p class="refused" role="alert">{html.escape(message)}</p>' if message else ""
        body = self._login.replace("<!--message-->", note)
        return web.Response(
            text=body, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS
        )


async def _form_key(request: web.Request) -> str | None:
    """The `key` field of a URL-encoded form ("" when absent); None for any other body: another
    encoding, bytes that are not UTF-8, or more fields than the form has."""
    if request.content_type != "application/x-www-form-urlencoded":
        return None
    try:
        fields = urllib.parse.parse_qs((await request.read()).decode(), errors="strict", max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return None
    return fields.get("key", [""])[0].strip()


def _same_origin(request: web.Request) -> bool:
    """A form post from this gateway's own page: its Origin (browsers send one on POST) names this
    host, or it has none (a client that is not a browser)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.host}"
