"""What every metrics dialect returns, and the small HTTP helper they poll through."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.prometheus import MetricsText, parse_metrics
from wavefleet.gateway.monitor.snapshot import EngineTimings

__all__ = [
    "Dialect",
    "EngineLoad",
    "HttpProbe",
    "PollError",
    "Reply",
    "as_int",
    "base_url",
    "health_url",
    "metrics_url",
    "models_from_json",
    "parse_or_fail",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineLoad:
    """Load as one engine reports it; `None` where its dialect has no such number."""

    running: int | None = None
    waiting: int | None = None
    kv_usage: float | None = None
    slots_total: int | None = None
    models: tuple[str, ...] | None = None  # set when the health check already listed them
    kv_capacity_tokens: int | None = None
    timings: EngineTimings | None = None


class PollError(Exception):
    """A poll failed: the engine is down, loading, or answered something unreadable."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    text: str

    def json(self) -> object:
        try:
            return json.loads(self.text)
        except ValueError as exc:
            raise PollError(f"invalid JSON: {self.text[:80]!r}") from exc


class HttpProbe:
    """GETs with a short timeout and the backend's own key; every failure becomes PollError."""

    def __init__(self, session: aiohttp.ClientSession, timeout_s: float, api_key: str | None = None) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def get(self, url: str) -> Reply:
        try:
            async with self._session.get(url, timeout=self._timeout, headers=self._headers) as response:
                return Reply(response.status, await response.text())
        except TimeoutError as exc:
            raise PollError(f"GET {url}: no answer within {self._timeout.total:g} s") from exc
        except (aiohttp.ClientError, UnicodeDecodeError) as exc:
            raise PollError(f"GET {url}: {type(exc).__name__}: {exc}") from exc

    async def get_ok(self, url: str) -> Reply:
        reply = await self.get(url)
        if reply.status != 200:
            raise PollError(f"GET {url}: HTTP {reply.status} {reply.text[:120].strip()}")
        return reply


class Dialect(Protocol):
    """One engine family's health check and load gauges."""

    async def poll(self, http: HttpProbe, backend: BackendConfig) -> EngineLoad: ...


def base_url(backend: BackendConfig) -> str:
    return str(backend.url).rstrip("/")


def health_url(backend: BackendConfig) -> str:
    """The engine's health check, from the engines table."""
    return f"{base_url(backend)}{backend.kind.traits.health_path}"


def metrics_url(backend: BackendConfig) -> str:
    """`metrics_url` if configured, else the engine's metrics path: on its own metrics port when
    it has one (Triton's 8002), else beside its API."""
    if backend.metrics_url is not None:
        return str(backend.metrics_url)
    traits = backend.kind.traits
    if traits.metrics_path is None:
        raise PollError(f"a {traits.kind.value} backend exports no metrics; set metrics_url")
    if traits.metrics_port is None:
        return f"{base_url(backend)}{traits.metrics_path}"
    parts = urlsplit(base_url(backend))
    host = parts.hostname or "localhost"
    port = traits.metrics_port
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, traits.metrics_path, "", ""))


def parse_or_fail(text: str) -> MetricsText:
    try:
        return parse_metrics(text)
    except (ValueError, IndexError, KeyError) as exc:
        raise PollError(f"unreadable metrics: {exc}") from exc


def models_from_json(body: object) -> tuple[str, ...]:
    """Model ids from an OpenAI `/v1/models` body."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise PollError("/v1/models: no `data` list")
    return tuple(str(m["id"]) for m in body["data"] if isinstance(m, dict) and "id" in m)


def as_int(value: float | None) -> int | None:
    return None if value is None else round(value)
