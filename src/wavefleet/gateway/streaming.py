"""Relaying OpenAI server-sent events: cut the upstream bytes into events, look at each once, pass them on.

The relay never buffers a stream: every complete event that arrived in an upstream chunk is
written to the client in one write as soon as that chunk is read (events that arrive together
leave together). It never synthesises a first chunk, keeps `data: [DONE]`, drops `:` ping
lines, reads `usage` to count tokens (and drops the usage chunk when the gateway asked for it
on the client's behalf), and notices in-band `{"error": ...}` events, which pass through.
"""

from __future__ import annotations

import re
from typing import Any

from wavefleet.wire import DONE, sse_event

_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')

__all__ = ["SseSplitter", "StreamState", "error_event", "parse_usage", "usage_in"]

TAIL_BYTES = 2048
_DONE = (DONE, b"data:[DONE]\n\n")
_ERROR_PREFIXES = (b'data: {"error"', b'data:{"error"')
_NULL_USAGE = (b'"usage":null', b'"usage": null')
_FINISHED = (b'"finish_reason":"', b'"finish_reason": "')  # a string: null means "not yet"


class SseSplitter:
    """Cuts a byte stream at the last complete SSE event (text ending in a blank line), keeping the tail."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        """The complete events now available (ending in a blank line), or b""."""
        data = self._tail + chunk if self._tail else chunk
        if b"\r" in data:  # CRLF framing (sse-starlette and others); a lone CR at the end waits
            data = data.replace(b"\r\n", b"\n")
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self._tail = data
            return b""
        self._tail = data[cut + 2 :]
        return data[: cut + 2]

    def flush(self) -> bytes:
        """What is left when the upstream ends: a last event without its blank line."""
        tail, self._tail = self._tail.strip(b"\r\n"), b""
        return tail + b"\n\n" if tail else b""


def parse_usage(usage: Any) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) from an OpenAI `usage` object, if it is one."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return prompt, completion


def usage_in(data: bytes, start: int = 0) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) of the first `"usage": {...}` object at or after `start`,
    read without parsing the JSON around it (usage objects hold flat integers first)."""
    at = data.find(b'"usage"', start)
    while at >= 0:
        brace = data.find(b"{", at + 7, at + 12)
        if brace >= 0:
            prompt = _PROMPT_TOKENS.search(data, brace)
            completion = _COMPLETION_TOKENS.search(data, brace)
            if prompt is None:
                return None
            return int(prompt.group(1)), int(completion.group(1)) if completion else 0
        at = data.find(b'"usage"', at + 7)
    return None


def error_event(error: dict[str, object]) -> bytes:
    """An in-band error event, as OpenAI's clients expect it after a 200."""
    return sse_event(error)


class StreamState:
    """What one relayed stream has shown so far, and the filter that decides what the client sees."""

    __slots__ = (
        "chunks",
        "done",
        "error",
        "events",
        "finished",
        "first_event_at",
        "gaps",
        "last_event_at",
        "strip_usage",
        "usage",
    )

    def __init__(self, strip_usage: bool) -> None:
        self.strip_usage = strip_usage  # the gateway injected include_usage: the client never asked
        self.done = False  # saw data: [DONE]
        self.finished = False  # saw a choice with a finish_reason: the answer is complete
        self.events = 0  # events passed to the client (an estimate of the tokens streamed)
        self.error: bytes | None = None  # the first in-band error event
        self.usage: tuple[int, int] | None = None
        self.chunks = 0  # writes that carried data events (not only pings, [DONE] or a stripped usage chunk)
        self.first_event_at: float | None = None
        self.last_event_at = 0.0
        self.gaps: list[float] = []  # time between consecutive data-carrying chunks (vLLM bench's ITL)

    def filter(self, events: bytes, now: float) -> bytes:
        """The bytes to write for `events` (complete events from `SseSplitter`), recording what they carry.

        A chunk of plain content events passes through as it came. Pings, errors and usage end a
        stream or fill its quiet gaps, so they are looked for at the start of a chunk and in its
        last `TAIL_BYTES` (every byte of the chunks real engines send, one event or a few each);
        each substring scan costs about 0.3-0.7 ns a byte, which matters for large chunks.
        Gaps are timed per chunk, as `vllm bench serve` times its ITL: events that arrive
        together reach the client together.
        """
        if not events:
            return b""
        tail = events[-TAIL_BYTES:] if len(events) > TAIL_BYTES else events
        if events[0] == 58 or b"\n\n:" in tail or b'{"error"' in tail:
            out = self._filter_events(events)
        elif b'"usage":' in tail and (b'"usage":{' in tail or b'"usage": {' in tail):
            out = self._filter_usage(events)
        else:
            out = events
        if not out:
            return b""
        if not self.finished and any(marker in tail for marker in _FINISHED):
            self.finished = True
        self.events += out.count(b"\n\n")
        if out.endswith(_DONE):  # [DONE] only ever comes last
            self.done = True
            if out.startswith(_DONE):
                return out  # nothing but [DONE]
        if self.first_event_at is None:
            self.first_event_at = now
        else:
            self.gaps.append(now - self.last_event_at)
        self.last_event_at = now
        self.chunks += 1
        return out

    def _filter_usage(self, events: bytes) -> bytes:
        """Read the last usage event's numbers; cut that event out if the client never asked for it."""
        floor = max(0, len(events) - TAIL_BYTES)  # filter() saw it in the tail
        at = events.rfind(b'"usage":{', floor)
        if at < 0:
            at = events.rfind(b'"usage": {', floor)
        boundary = events.rfind(b"\n\n", 0, at)
        start = boundary + 2 if boundary >= 0 else 0
        end = events.find(b"\n\n", at) + 2
        if self._read_usage(events[start : end - 2]):
            return events[:start] + events[end:]
        return events

    def _filter_events(self, events: bytes) -> bytes:
        out: list[bytes] = []
        for event in events.split(b"\n\n"):
            if not event:
                continue
            if event[0] == 58:  # ':' a comment (ping) line; keep any data lines after it
                event = b"\n".join(line for line in event.split(b"\n") if line and line[0] != 58)
                if not event:
                    continue
            if event.startswith(_ERROR_PREFIXES):
                if self.error is None:
                    self.error = event
            elif (
                b'"usage"' in event
                and not any(null in event for null in _NULL_USAGE)
                and self._read_usage(event)
            ):
                continue
            out.append(event)
        if not out:
            return b""
        out.append(b"")
        return b"\n\n".join(out)

    def _read_usage(self, event: bytes) -> bool:
        """Record the usage an event carries; True when the event should be dropped (a usage-only
        chunk the client did not ask for). Read with a regex: usage objects are flat integers."""
        usage = usage_in(event)
        if usage is None:
            return False
        self.usage = usage
        return self.strip_usage and (b'"choices":[]' in event or b'"choices": []' in event)
