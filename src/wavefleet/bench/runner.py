"""Drive one load level against one target: closed loop (N workers) or open loop (arrivals).

    run_load(target, workload, LoadSpec(concurrency=16, num_requests=500)) -> RunResult
    run_load(target, workload, LoadSpec(rate=10, burstiness=0.5, duration_s=60)) -> RunResult

Every request streams (`stream: true`, `stream_options.include_usage`) so TTFT and chunk times
can be measured; `max_tokens` comes from the workload; `ignore_eos` asks the engine to produce
exactly `max_tokens` (vLLM `ignore_eos`; `min_tokens` for vLLM and llama-cpp-python; llama.cpp's
llama-server takes `ignore_eos` too).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, Literal

from wavefleet.bench.arrivals import arrival_offsets
from wavefleet.bench.http import ConnectionPool, Endpoint, Exchange
from wavefleet.bench.metrics import Window
from wavefleet.bench.records import RequestRecord
from wavefleet.bench.workload import BenchWorkload, Session, Turn
from wavefleet.errors import UsageError

__all__ = ["LoadSpec", "Progress", "ProgressInfo", "RunResult", "Target", "run_load", "run_load_async"]


@dataclass(frozen=True, kw_only=True)
class ProgressInfo:
    """Where a level stands, four times a second."""

    done: int  # requests that ended, answered or failed
    sent: int  # requests the load plan has issued so far
    in_flight: int  # requests written and not yet ended (issued ones may wait for a slot)
    planned: int | None  # the level's request count, if it has one
    elapsed_s: float
    planned_s: float | None  # the level's --duration, if it has one
    sending: bool  # False once no more requests will be sent: the rest is the drain


Progress = Callable[[ProgressInfo], None]


@dataclass(frozen=True)
class Target:
    """An OpenAI-compatible endpoint and the request fields every request carries."""

    base_url: str  # e.g. http://127.0.0.1:8080/v1
    model: str
    api_key: str | None = None
    endpoint: Literal["chat", "completions"] = "chat"
    ignore_eos: bool = False
    extra_body: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 600.0

    @property
    def url(self) -> str:
        path = "/chat/completions" if self.endpoint == "chat" else "/completions"
        return self.base_url.rstrip("/") + path

    def body(self, turn: Turn) -> bytes:
        request: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.endpoint == "chat":
            request["messages"] = list(turn.messages)
        else:
            request["prompt"] = "\n\n".join(m["content"] for m in turn.messages)
        if turn.max_tokens is not None:
            request["max_tokens"] = turn.max_tokens
            if self.ignore_eos:
                request["ignore_eos"] = True
                request["min_tokens"] = turn.max_tokens
        request.update(self.extra_body)
        return json.dumps(request, separators=(",", ":")).encode()


@dataclass(frozen=True)
class LoadSpec:
    """One load level: closed loop at `concurrency`, or open loop at `rate` requests/s."""

    concurrency: int | None = None
    rate: float | None = None
    burstiness: float = 1.0
    ramp_up_s: float = 0.0
    max_concurrency: int | None = None
    num_requests: int | None = None
    duration_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate is None):
            raise UsageError(
                "a load level needs exactly one of concurrency (closed loop) or rate (open loop)"
            )
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise UsageError(f"rate must be a positive number of requests/s, not {self.rate}")
        if self.num_requests is None and self.duration_s is None:
            raise UsageError("a load level needs a request count or a duration")
        if self.burstiness <= 0:
            raise UsageError(f"burstiness must be positive, not {self.burstiness}")

    @property
    def label(self) -> str:
        if self.concurrency is not None:
            return f"concurrency={self.concurrency}"
        cap = f",max={self.max_concurrency}" if self.max_concurrency else ""
        return f"rate={self.rate:g}/s{cap}"

    @property
    def level(self) -> float:
        """The number the plots put on the x axis."""
        return float(self.concurrency if self.concurrency is not None else self.rate or 0.0)


@dataclass
class RunResult:
    """The records of one load level and the benchmark duration they are measured over."""

    load: LoadSpec
    records: list[RequestRecord] = field(repr=False)
    duration_s: float
    connections_opened: int
    t0: float  # perf_counter() at the start; record times are on the same clock
    started_at: str  # wall-clock start, ISO 8601 UTC
    window: Window | None = None  # the stretch that held the offered load (metrics.Window)


class _Sessions:
    """Hands out the next request: a ready follow-up turn first, else a new session's first."""

    def __init__(self, workload: BenchWorkload) -> None:
        self.source: Iterator[Session] = workload.sessions()
        self.ready: deque[tuple[Session, Turn]] = deque()
        self.exhausted = False
        self.in_flight = 0
        self.changed = asyncio.Event()

    def take(self) -> tuple[Session, Turn] | None:
        if self.ready:
            return self.ready.popleft()
        while not self.exhausted:
            session = next(self.source, None)
            if session is None:
                self.exhausted = True
                break
            turn = session.next_turn(None)
            if turn is not None:
                return session, turn
        return None

    async def wait_take(self) -> tuple[Session, Turn] | None:
        """Wait for a request while follow-up turns may still come; None when none will."""
        while True:
            item = self.take()
            if item is not None or self.in_flight == 0:
                return item
            self.changed.clear()
            await self.changed.wait()

    def finished(self, session: Session, answer: str | None) -> None:
        turn = session.next_turn(answer)
        if turn is not None:
            self.ready.append((session, turn))
        self.changed.set()


class _Run:
    def __init__(self, target: Target, workload: BenchWorkload, load: LoadSpec) -> None:
        self.target, self.workload, self.load = target, workload, load
        self.pool = ConnectionPool(Endpoint(target.url, target.api_key))
        self.sessions = _Sessions(workload)
        self.records: list[RequestRecord] = []
        self.issued = 0
        self.finished = 0
        self.counter = itertools.count()
        self.t0 = 0.0
        self.sending = True
        self.window_end = math.inf  # perf_counter() time the load stopped being whole

    def may_issue(self, now: float) -> bool:
        load = self.load
        if load.num_requests is not None and self.issued >= load.num_requests:
            return False
        return load.duration_s is None or now - self.t0 < load.duration_s

    async def one(self, session: Session, turn: Turn, scheduled: float) -> RequestRecord:
        record = RequestRecord(
            index=next(self.counter),
            level=self.load.label,
            scheduled=scheduled,
            estimated_prompt_tokens=turn.estimated_prompt_tokens,
            conversation=session.conversation,
            turn=sum(1 for message in turn.messages if message["role"] == "user"),
        )
        self.records.append(record)
        self.sessions.in_flight += 1
        text_field = "content" if self.target.endpoint == "chat" else "text"
        exchange = Exchange(record, self.workload.needs_answers, text_field)
        try:
            await self.pool.exchange(self.target.body(turn), exchange, self.target.timeout_s)
        finally:
            self.sessions.in_flight -= 1
            self.finished += 1
            answer = "".join(exchange.text) if record.ok else None
            self.sessions.finished(session, answer)
        return record

    async def closed_loop(self, concurrency: int) -> None:
        async def worker() -> None:
            idle_since: float | None = None  # when this worker's last request ended
            while self.may_issue(perf_counter()):
                item = await self.sessions.wait_take()
                if item is None or not self.may_issue(perf_counter()):
                    break
                self.issued += 1
                idle_since = (await self.one(*item, scheduled=perf_counter())).done
            self.sending = False
            if idle_since is not None:  # a worker that never got a request was never part of the load
                self.window_end = min(self.window_end, idle_since)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def open_loop(self, rate: float) -> None:
        load = self.load
        limit = asyncio.Semaphore(load.max_concurrency) if load.max_concurrency else None
        tasks: set[asyncio.Task[None]] = set()

        async def capped(session: Session, turn: Turn, scheduled: float) -> None:
            if limit is None:
                await self.one(session, turn, scheduled)
                return
            async with limit:
                await self.one(session, turn, scheduled)

        # The arrival window ends when the first arrival not sent was due, or at --duration.
        for offset in arrival_offsets(
            rate, burstiness=load.burstiness, ramp_up_s=load.ramp_up_s, seed=load.seed
        ):
            scheduled = self.t0 + offset
            if load.duration_s is not None and offset >= load.duration_s:
                self.window_end = self.t0 + load.duration_s
                break
            self.window_end = scheduled
            if not self.may_issue(self.t0):
                break
            await asyncio.sleep(max(0.0, scheduled - perf_counter()))
            item = self.sessions.take() or await self.sessions.wait_take()
            if item is None:
                break
            self.issued += 1
            task = asyncio.create_task(capped(*item, scheduled=scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        self.sending = False
        while tasks:
            await asyncio.gather(*list(tasks))

    def info(self) -> ProgressInfo:
        return ProgressInfo(
            done=self.finished,
            sent=self.issued,
            in_flight=self.sessions.in_flight,
            planned=self.load.num_requests,
            elapsed_s=perf_counter() - self.t0,
            planned_s=self.load.duration_s,
            sending=self.sending,
        )

    def window(self, end_of_run: float) -> Window:
        if self.load.rate is not None:
            # The arrivals span their schedule even when the last answer ended before the next
            # arrival was due.
            return Window(kind="arrivals", seconds=self.window_end - self.t0, end=self.window_end)
        end = min(self.window_end, end_of_run)
        return Window(kind="full concurrency", seconds=end - self.t0, end=end)


async def run_load_async(
    target: Target, workload: BenchWorkload, load: LoadSpec, progress: Progress | None = None
) -> RunResult:
    """Run one load level in the running event loop."""
    run = _Run(target, workload, load)
    ticker = asyncio.create_task(_tick(run, progress)) if progress else None
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    run.t0 = perf_counter()
    try:
        if load.concurrency is not None:
            await run.closed_loop(load.concurrency)
        else:
            assert load.rate is not None
            await run.open_loop(load.rate)
        end = perf_counter()
    finally:
        if ticker is not None:
            ticker.cancel()
        run.pool.close()
    if progress:
        progress(run.info())
    return RunResult(
        load, run.records, end - run.t0, run.pool.opened, run.t0, started_at, window=run.window(end)
    )


def run_load(
    target: Target, workload: BenchWorkload, load: LoadSpec, progress: Progress | None = None
) -> RunResult:
    """Run one load level in a fresh event loop (uvloop where installed)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(run_load_async(target, workload, load, progress))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _tick(run: _Run, progress: Progress) -> None:
    while True:
        await asyncio.sleep(0.25)
        progress(run.info())
