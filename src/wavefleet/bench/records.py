"""One record per request: when it was due, sent, answered, and what the server counted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FAILURES", "Failure", "RequestRecord"]

Failure = Literal[
    "", "connect", "timeout", "disconnect", "bad_http", "http_status", "stream_error", "no_choices"
]
# Why a request failed, one word each; `error` holds the message.
FAILURES: dict[str, str] = {
    "connect": "no connection could be opened; nothing was sent",
    "timeout": "no complete answer within --timeout of sending; the request is not sent again",
    "disconnect": "the connection closed or reset before the answer ended",
    "bad_http": "the answer broke HTTP/1.1 framing",
    "http_status": "an HTTP status other than 200",
    "stream_error": "an error event in the stream, or an error answer",
    "no_choices": "the answer ended without a chunk with non-empty choices",
}


@dataclass(slots=True)
class RequestRecord:
    """Timeline of one request; times are `time.perf_counter()` seconds.

    `scheduled` is when the load plan wanted the request sent; `sent` is just before the request
    bytes were written. Latency clocks start at `scheduled`, so client queueing (a
    `--max-concurrency` cap, a busy event loop) shows up in TTFT and E2EL instead of hiding
    (vllm#54101); in closed loop a request is scheduled when its worker is free, so there
    `scheduled` is vLLM's `st`. `dispatch_lag` reports the queueing on its own. `chunk_times` holds the arrival time of every SSE event
    with non-empty `choices` (the usage trailer is not one). `prompt_tokens`/`output_tokens`
    come from the server's `usage` when `tokens_from_usage` is true; otherwise output tokens are
    the count of chunks carrying non-empty text (`text_chunks`, one token per chunk as engines
    stream) and prompt tokens the client's word-based estimate. A failed request has a one-word
    `failure` (a key of FAILURES) and a message in `error`.
    """

    index: int
    level: str
    scheduled: float
    sent: float = 0.0
    chunk_times: list[float] = field(default_factory=list)
    done: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0
    tokens_from_usage: bool = False
    text_chunks: int = 0
    estimated_prompt_tokens: int = 0
    conversation: int = 0
    turn: int = 0
    status: int = 0
    error: str = ""
    failure: Failure = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def fail(self, failure: Failure, error: str) -> None:
        """Mark the request failed; the first failure recorded is the one that counts."""
        if not self.error:
            self.failure, self.error = failure, error

    @property
    def ttft(self) -> float | None:
        """First choices chunk minus the start (vLLM's TTFT)."""
        return self.chunk_times[0] - self.scheduled if self.chunk_times else None

    @property
    def e2el(self) -> float | None:
        """Last choices chunk minus the start (vLLM's E2EL; the usage trailer is excluded)."""
        return self.chunk_times[-1] - self.scheduled if self.chunk_times else None

    @property
    def dispatch_lag(self) -> float:
        """How late the client sent the request against its plan (client queueing)."""
        return max(0.0, self.sent - self.scheduled)
