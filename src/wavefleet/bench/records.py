"""One record per request: when it was due, sent, answered, and what the server counted."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RequestRecord"]


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
    stream) and prompt tokens the client's word-based estimate.
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

    @property
    def ok(self) -> bool:
        return not self.error

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
