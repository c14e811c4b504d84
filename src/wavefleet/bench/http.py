"""A lean HTTP/1.1 keep-alive client on asyncio protocols, for the benchmark's hot path.

Why not aiohttp: a load generator must not be the bottleneck, and on a 2-core machine aiohttp's
client (with uvloop and an unlimited connector) tops out well below the 4,000 short requests/s
the bench must sustain (docs/measurements/2026-11-27-bench-client-ceiling.md has the side-by-side
figures). This client does only what a benchmark needs: POST a JSON body on a kept-alive
connection, read a Content-Length, chunked or until-close body, split Server-Sent Events as bytes
arrive, and time each event at the moment its bytes were received. Events that arrive in one read
share one timestamp, as they would with any client.

It parses a chunk's JSON only when it must (the usage trailer, errors, or when the workload
needs the answer text for the next turn); whether a chunk has non-empty `choices` is read off
the bytes.

Every request is written once. A load generator must not add load its user did not ask for, and
a server that received a request may act on it whatever happens to the connection afterwards,
so a timeout or a connection lost after writing fails the request. The one case that is
provably safe is handled before writing: a pooled connection the server has closed while it
sat idle (its end-of-file, reset or stray bytes are waiting in the socket) is not written to;
the request goes out on another connection instead.
"""

from __future__ import annotations

import asyncio
import json
import re
import select
import ssl
from time import perf_counter
from typing import Any, cast
from urllib.parse import urlsplit

from wavefleet.bench.records import Failure, RequestRecord
from wavefleet.errors import UsageError

__all__ = ["ConnectionPool", "Endpoint", "Exchange", "HttpClientError"]

_EMPTY_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*\]')
# A chunk that carries text: a non-empty "content" (chat delta) or "text" (completions) string.
_TEXT = re.compile(rb'"(?:content|text)"\s*:\s*"[^"]')
_MAX_HEAD = 64 * 1024
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE = range(7)


class HttpClientError(Exception):
    """The connection failed, timed out, or the server broke HTTP/1.1 framing."""

    def __init__(self, message: str, failure: Failure) -> None:
        super().__init__(message)
        self.failure = failure


class Endpoint:
    """Where requests go: host, port, TLS, and the fixed bytes of every request head."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"bad URL {url!r}: give http://host:port/v1/chat/completions or similar")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if parts.scheme == "https" else None
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        host_header = parts.netloc.rpartition("@")[2]
        auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self.head_prefix = (
            f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: wave-bench\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream, application/json\r\n{auth}"
        ).encode("latin-1")

    def request_bytes(self, body: bytes) -> bytes:
        return b"%sContent-Length: %d\r\n\r\n%s" % (self.head_prefix, len(body), body)


class Exchange:
    """One request and its response: records event times and token counts into a record."""

    __slots__ = ("_empty_text", "_sse", "_text", "body", "is_sse", "keep_text", "record", "text")

    def __init__(self, record: RequestRecord, keep_text: bool, text_field: str = "content") -> None:
        self.record = record
        self.keep_text = keep_text
        # the streamed text's key: "content" in chat deltas, "text" in completions
        self._text = b'"%s":"' % text_field.encode()
        self._empty_text = self._text + b'"'
        self.text: list[str] = []
        self.body = bytearray()
        self._sse = bytearray()
        self.is_sse = False

    def head(self, status: int, content_type: bytes) -> None:
        self.record.status = status
        self.is_sse = status == 200 and content_type.startswith(b"text/event-stream")

    def feed(self, data: bytes | bytearray, now: float) -> None:
        if not self.is_sse:
            self.body += data
            return
        buf = self._sse
        buf += data
        if b"\r" in data:
            buf = self._sse = buf.replace(b"\r\n", b"\n")
        end = buf.rfind(b"\n\n")
        if end < 0:
            return
        block = bytes(buf[:end])
        del buf[: end + 2]
        if not self._fast_block(block, now):
            for event in block.split(b"\n\n"):
                self._event(event, now)

    def _fast_block(self, block: bytes, now: float) -> bool:
        """Account for a run of plain `data: {...}` events in bulk; False when it needs care.

        Events that arrive in one read share one timestamp, so only their count matters:
        choices chunks are the `"choices"` keys minus the empty ones. Anything unusual
        (comments, multi-line events, errors, text wanted for the next turn) goes event by event.
        """
        if self.keep_text or b'"error"' in block:
            return False
        events = block.count(b"\n\n") + 1
        if block.count(b"\n") != 2 * (events - 1) or block.count(b"data: ") != events:
            return False
        if b'": ' in block or b'" :' in block:  # JSON with spaces: count by pattern
            empty = len(_EMPTY_CHOICES.findall(block))
            texts = len(_TEXT.findall(block))
        else:  # compact JSON, the common case: plain substring counts are much cheaper
            empty = block.count(b'"choices":[]')
            texts = block.count(self._text) - block.count(self._empty_text)
        self.record.chunk_times.extend([now] * (block.count(b'"choices"') - empty))
        self.record.text_chunks += texts
        usage = max(block.rfind(b'"usage":{'), block.rfind(b'"usage": {'))
        if usage >= 0:
            start = block.rfind(b"\n\n", 0, usage)
            end = block.find(b"\n\n", usage)
            event = block[start + 2 if start >= 0 else 0 : end if end >= 0 else len(block)]
            self._usage(_loads(event[6:]))
        return True

    def _event(self, block: bytes, now: float) -> None:
        if block.startswith(b"data: ") and b"\n" not in block:
            payload = block[6:]
        else:
            data = [line[5:].removeprefix(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
            if not data:
                return  # a comment (": ping") or an event without data
            payload = b"\n".join(data)
        if payload == b"[DONE]":
            return
        if b'"error"' in payload and self._error(payload):
            return
        if b'"choices"' not in payload or _EMPTY_CHOICES.search(payload):
            if b'"usage"' in payload:
                self._usage(_loads(payload))
            return
        self.record.chunk_times.append(now)
        if _TEXT.search(payload):
            self.record.text_chunks += 1
        if self.keep_text or b'"usage":{' in payload or b'"usage": {' in payload:
            chunk = _loads(payload)
            self._usage(chunk)
            if self.keep_text:
                self._collect_text(chunk, "delta")

    def _error(self, payload: bytes) -> bool:
        chunk = _loads(payload)
        error = chunk.get("error")
        if not error:
            return False
        message = error.get("message", error) if isinstance(error, dict) else error
        self.record.fail("stream_error", f"error event in the stream: {str(message)[:200]}")
        return True

    def _usage(self, chunk: dict[str, Any]) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.record.output_tokens = usage["completion_tokens"]
            self.record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.record.tokens_from_usage = True

    def _collect_text(self, chunk: dict[str, Any], key: str) -> None:
        for choice in chunk.get("choices") or ():
            part = choice.get(key) or {}
            text = part.get("content") if isinstance(part, dict) else None
            if text is None:
                text = choice.get("text")
            if isinstance(text, str):
                self.text.append(text)

    def complete(self, now: float) -> None:
        """The response ended: settle plain-JSON answers, errors and token-count fallbacks."""
        record = self.record
        if record.status != 200:
            snippet = bytes(self.body[:300]).decode("utf-8", "replace").strip()
            record.fail("http_status", f"HTTP {record.status}: {snippet}")
        elif not self.is_sse:
            # A server that ignored stream=true: the whole answer is one "chunk" at its end.
            chunk = _loads(bytes(self.body))
            if chunk.get("error"):
                record.fail("stream_error", f"error answer: {str(chunk['error'])[:200]}")
            elif chunk.get("choices"):
                record.chunk_times.append(now)
                record.text_chunks = 1
                self._usage(chunk)
                self._collect_text(chunk, "message")
            else:
                record.fail("no_choices", "answer has no choices")
        if not record.chunk_times:
            record.fail("no_choices", "the stream ended without a choices chunk")
        if not record.tokens_from_usage:
            record.output_tokens = record.text_chunks
            record.prompt_tokens = record.estimated_prompt_tokens
        record.done = now


def _loads(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection running one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.state = _HEAD
        self.remaining = 0
        self.keep_alive = True
        self.lost = False
        self.exchange: Exchange | None = None
        self.waiter: asyncio.Future[bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def send(self, data: bytes, exchange: Exchange) -> asyncio.Future[bool]:
        """Write a request; the future gives whether the connection can be reused."""
        assert self.transport is not None
        self.exchange, self.state, self.keep_alive = exchange, _HEAD, True
        self.waiter = asyncio.get_running_loop().create_future()
        exchange.record.sent = perf_counter()
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        now = perf_counter()
        if self.exchange is None:
            self.abort("data arrived with no request in flight", "bad_http")
            return
        self.buf += data
        try:
            self._parse(now)
        except (ValueError, IndexError) as exc:
            self.abort(f"bad HTTP response: {exc}", "bad_http")

    def _parse(self, now: float) -> None:
        buf = self.buf
        while self.exchange is not None:
            state = self.state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise ValueError("response head too large")
                    return
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._head(head, now)
            elif state in (_BODY, _CHUNK_DATA):
                if not buf:
                    return
                take = min(self.remaining, len(buf))
                self.exchange.feed(buf[:take] if take < len(buf) else buf, now)
                del buf[:take]
                self.remaining -= take
                if self.remaining == 0:
                    if state == _BODY:
                        self._finish(now)
                    else:
                        self.state = _CHUNK_END
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";")[0].strip(), 16)
                del buf[: end + 2]
                self.state, self.remaining = (_TRAILER, 0) if size == 0 else (_CHUNK_DATA, size)
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    return
                del buf[:2]
                self.state = _CHUNK_SIZE
            elif state == _TRAILER:
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:
                    self._finish(now)
            else:  # _UNTIL_CLOSE
                if buf:
                    self.exchange.feed(bytes(buf), now)
                    buf.clear()
                return

    def _head(self, head: bytes, now: float) -> None:
        assert self.exchange is not None
        lines = head.split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if not status_line[0].startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(status_line[1])
        length, chunked, content_type = -1, False, b""
        self.keep_alive = status_line[0] == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"content-type":
                content_type = value.lower()
            elif name == b"connection":
                self.keep_alive = value.lower() == b"keep-alive" or (
                    self.keep_alive and value.lower() != b"close"
                )
        if 100 <= status < 200:
            return  # an interim answer (100 Continue); the real head follows
        self.exchange.head(status, content_type)
        if chunked:
            self.state = _CHUNK_SIZE
        elif length >= 0:
            self.state, self.remaining = _BODY, length
            if length == 0:
                self._finish(now)
        else:
            self.state, self.keep_alive = _UNTIL_CLOSE, False

    def _finish(self, now: float) -> None:
        exchange, waiter = self.exchange, self.waiter
        self.exchange, self.waiter, self.state = None, None, _HEAD
        if exchange is not None:
            exchange.complete(now)
        if waiter is not None and not waiter.done():
            waiter.set_result(self.keep_alive)

    def abort(self, reason: str, failure: Failure) -> None:
        """Fail the exchange in flight with `reason` and drop the connection."""
        waiter = self.waiter
        self.exchange, self.waiter, self.lost = None, None, True
        if self.transport is not None:
            self.transport.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpClientError(reason, failure))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.exchange is not None and self.state == _UNTIL_CLOSE:
            self._finish(perf_counter())
        elif self.waiter is not None:
            self.abort(
                f"connection closed before the response ended{f': {exc}' if exc else ''}", "disconnect"
            )

    def idle_and_open(self) -> bool:
        """Whether a pooled connection can take a request: open, and nothing waiting to be read.

        An idle kept-alive connection has nothing to say. Bytes waiting in its socket that the
        event loop has not read yet are the server's end-of-file or reset (it closed the
        connection) or something stray; either way a request written to it could be lost, so
        the connection is not used. The check asks the kernel without reading anything.
        """
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            return False
        sock = transport.get_extra_info("socket")
        if sock is None:
            return True
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0)


class ConnectionPool:
    """Kept-alive connections to one endpoint, opened on demand and never capped.

    The load plan (workers or a --max-concurrency semaphore) limits what is in flight; a pool
    limit would queue requests invisibly, as aiohttp's default limit=100 did (gpustack #2324).
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.idle: list[Connection] = []
        self.opened = 0

    async def exchange(self, body: bytes, exchange: Exchange, timeout_s: float) -> None:
        """Send one request, once, and read its answer; failures land in the record.

        `timeout_s` runs from the moment the request is written to the end of the answer.
        """
        record = exchange.record
        try:
            connection = await self._acquire()
        except (TimeoutError, OSError) as exc:
            record.sent = record.done = perf_counter()
            record.fail("connect", f"cannot connect to {self.endpoint.host}:{self.endpoint.port}: {exc}")
            return
        waiter = connection.send(self.endpoint.request_bytes(body), exchange)
        timer = asyncio.get_running_loop().call_later(
            timeout_s, connection.abort, f"no complete answer within {timeout_s:g} s", "timeout"
        )
        try:
            reusable = await waiter
        except HttpClientError as exc:
            record.fail(exc.failure, str(exc))
            record.done = perf_counter()
            return
        finally:
            timer.cancel()
        if reusable and not connection.lost:
            self.idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()

    async def _acquire(self) -> Connection:
        """A pooled connection that can take a request, else a new one."""
        while self.idle:
            connection = self.idle.pop()
            if connection.idle_and_open():
                return connection
            if connection.transport is not None:
                connection.transport.abort()
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(Connection, self.endpoint.host, self.endpoint.port, ssl=self.endpoint.ssl),
            timeout=30,
        )
        self.opened += 1
        return connection

    def close(self) -> None:
        for connection in self.idle:
            if connection.transport is not None:
                connection.transport.close()
        self.idle.clear()
