"""The simulated engine: one asyncio scheduler loop stepping like continuous batching.

Each step the scheduler
  1. admits waiting sequences in FIFO order while a slot is free (`max_num_seqs`) and the KV
     cache has room (reserve mode: prompt + max_tokens; preempt mode: the prompt, and the newest
     sequence is preempted and recomputed later when decode runs out of KV);
  2. takes up to `prefill_chunk_tokens` uncached prompt tokens from the sequences still in prefill
     (chunked prefill; None = whole prompts), oldest first;
  3. decodes one token for every sequence past prefill.
The step lasts  overhead of newly started requests + prefill tokens / prefill rate
              + itl_at(decoding sequences)   [if any decode],
each part times a lognormal jitter factor (mean 1), divided by `speed`. So prefill of new requests stalls
the running batch's decode for that step, chunked prefill bounds the stall, and inter-token
latency grows with the batch along the profile's curve. A sequence whose prefill completes in a
step emits its first token at the step's end (the prefill samples it), as real engines do.

Steps are paced against an absolute deadline, so scheduling overhead does not accumulate.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from wavefleet.sim.prefix_cache import PrefixCache
from wavefleet.sim.profile import SimProfile
from wavefleet.sim.stats import EngineStats

__all__ = ["RequestRejected", "SimEngine", "SimSequence"]

# How far behind its schedule the loop may fall before it stops trying to catch up (wall s).
_MAX_LAG_S = 0.02


class RequestRejected(ValueError):
    """The request can never run on this engine (too long for the context or the KV cache)."""


@dataclass(eq=False)
class SimSequence:
    """One request inside the engine. `events` yields the generated count per token, None at end."""

    id: int
    prompt: list[int]
    max_tokens: int
    target_tokens: int
    arrival: float
    events: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)
    cached_tokens: int = 0
    to_prefill: int = 0
    generated: int = 0
    slot: int = -1
    reserved_tokens: int = 0
    overhead_pending: bool = True
    prefilled_once: bool = False
    admitted_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    finish_reason: str | None = None
    cancelled: bool = False

    @property
    def context_tokens(self) -> int:
        return len(self.prompt) + self.generated

    async def tokens(self) -> AsyncIterator[int]:
        """The generated count after each new token, until the sequence finishes."""
        while True:
            item = await self.events.get()
            if item is None:
                return
            yield item


class SimEngine:
    """A continuous-batching engine that spends modelled time instead of compute."""

    def __init__(self, profile: SimProfile, *, speed: float = 1.0, seed: int = 0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.profile = profile
        self.speed = speed
        self.stats = EngineStats()
        self.waiting: deque[SimSequence] = deque()
        self.running: list[SimSequence] = []
        self._rng = random.Random(seed)
        cache_tokens = profile.prefix_cache_tokens
        self._cache = (
            PrefixCache(
                profile.kv_capacity_tokens if cache_tokens is None else cache_tokens, profile.block_size
            )
            if profile.prefix_cache
            else None
        )
        self._free_slots = list(range(profile.max_num_seqs))
        self._next_id = 0
        self._wake: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name=f"sim-engine-{self.profile.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for seq in [*self.running, *self.waiting]:
            seq.events.put_nowait(None)
        self.running.clear()
        self.waiting.clear()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds; it is checked after every change of the engine's state."""
        while not predicate():
            assert self._changed is not None, "start the engine first"
            await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    @property
    def healthy(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- requests --------------------------------------------------------------------------------

    def submit(self, prompt: list[int], max_tokens: int, *, ignore_eos: bool = False) -> SimSequence:
        """Queue a request; raises RequestRejected if it could never run here."""
        profile = self.profile
        total = len(prompt) + max_tokens
        if total > profile.max_model_len:
            raise RequestRejected(
                f"This model's maximum context length is {profile.max_model_len} tokens. However, you "
                f"requested {total} tokens ({len(prompt)} in the messages, {max_tokens} in the completion)."
            )
        if total > profile.kv_capacity_tokens:
            raise RequestRejected(
                f"prompt + max_tokens = {total} tokens exceeds the KV cache ({profile.kv_capacity_tokens} tokens)"
            )
        if not prompt:
            raise RequestRejected("the prompt is empty")
        target = max_tokens
        if not ignore_eos and profile.natural_length_mean is not None and max_tokens > 1:
            p = 1.0 / max(1.0, profile.natural_length_mean)
            natural = 1 + int(math.log(1.0 - self._rng.random()) / math.log(1.0 - p)) if p < 1 else 1
            target = min(max_tokens, natural)
        self._next_id += 1
        seq = SimSequence(
            id=self._next_id,
            prompt=prompt,
            max_tokens=max_tokens,
            target_tokens=target,
            arrival=asyncio.get_running_loop().time(),
        )
        self.waiting.append(seq)
        if self._wake is not None:
            self._wake.set()
        self._notify()
        return seq

    def cancel(self, seq: SimSequence) -> None:
        """Abort a sequence (its client went away); frees its slot and KV now."""
        if seq.finish_reason is not None or seq.cancelled:
            return
        seq.cancelled = True
        seq.finish_reason = "abort"
        if seq in self.waiting:
            self.waiting.remove(seq)
        if seq in self.running:
            self._release(seq)
        self.stats.finished["abort"] += 1
        seq.events.put_nowait(None)
        if self._wake is not None:
            self._wake.set()
        self._notify()

    # -- state the dialects export ---------------------------------------------------------------

    @property
    def kv_used_tokens(self) -> int:
        """KV cache in use, in whole blocks' worth of tokens."""
        block = self.profile.block_size
        return sum(math.ceil(s.context_tokens / block) * block for s in self.running)

    @property
    def kv_usage(self) -> float:
        return min(1.0, self.kv_used_tokens / self.profile.kv_capacity_tokens)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    # -- the scheduler ---------------------------------------------------------------------------

    def _committed_tokens(self) -> int:
        if self.profile.kv_admission == "reserve":
            return sum(s.reserved_tokens for s in self.running)
        return self.kv_used_tokens

    def _admit(self, now: float) -> None:
        profile = self.profile
        while self.waiting and len(self.running) < profile.max_num_seqs:
            seq = self.waiting[0]
            if profile.kv_admission == "reserve":
                need = len(seq.prompt) + seq.max_tokens
            else:
                need = math.ceil((seq.context_tokens + 1) / profile.block_size) * profile.block_size
            if self._committed_tokens() + need > profile.kv_capacity_tokens:
                return  # FIFO: the head waits for room, and everyone behind it waits too
            self.waiting.popleft()
            cached = self._cache.lookup(seq.prompt) if self._cache is not None else 0
            if not seq.prefilled_once:
                self.stats.prefix_queries += len(seq.prompt)
                self.stats.prefix_hits += cached
            seq.cached_tokens = cached
            seq.to_prefill = len(seq.prompt) - cached + seq.generated
            seq.reserved_tokens = need
            seq.slot = self._free_slots.pop(0)
            if seq.admitted_at is None:
                seq.admitted_at = now
            self.running.append(seq)

    def _preempt_for_decode(self) -> None:
        """Preempt mode: while the next decode token of every sequence would not fit, send the
        newest sequence back to the head of the queue; it recomputes its prompt and output."""
        block = self.profile.block_size
        while len(self.running) > 1:
            grown = sum(math.ceil((s.context_tokens + 1) / block) * block for s in self.running)
            if grown <= self.profile.kv_capacity_tokens:
                return
            victim = self.running[-1]
            self._release(victim)
            victim.overhead_pending = False
            self.waiting.appendleft(victim)
            self.stats.preemptions += 1

    def _release(self, seq: SimSequence) -> None:
        self.running.remove(seq)
        self._free_slots.append(seq.slot)
        self._free_slots.sort()
        seq.reserved_tokens = 0

    def _jitter(self, duration: float | None = None) -> float:
        """A lognormal factor with mean 1. Decode steps get sigma = jitter_sigma; work lasting
        `duration` gets sigma * sqrt(itl / duration) (at most jitter_sigma), as the noise of many
        token-sized pieces of work averages out over a long prefill."""
        sigma = self.profile.jitter_sigma
        if duration is not None and duration > 0:
            sigma *= math.sqrt(min(1.0, self.profile.itl_at(1) / duration))
        return self._rng.lognormvariate(-sigma * sigma / 2, sigma) if sigma > 0 else 1.0

    async def _loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        profile = self.profile
        deadline = loop.time()
        while True:
            now = loop.time()
            self._admit(now)
            self._notify()
            if not self.running:
                self._wake.clear()
                await self._wake.wait()
                deadline = loop.time()
                continue
            if profile.kv_admission == "preempt":
                self._preempt_for_decode()
            decoding = [s for s in self.running if s.to_prefill == 0]
            budget = profile.prefill_chunk_tokens or math.inf
            prefill_tokens, overhead, completing = 0, 0.0, []
            for seq in self.running:
                if seq.to_prefill == 0 or prefill_tokens >= budget:
                    continue
                take = int(min(seq.to_prefill, budget - prefill_tokens))
                if seq.overhead_pending:
                    overhead += profile.request_overhead_s
                    seq.overhead_pending = False
                seq.to_prefill -= take
                prefill_tokens += take
                if seq.to_prefill == 0:
                    completing.append(seq)
            prefill_model = overhead + prefill_tokens / profile.prefill_tokens_per_s
            prefill_wall = prefill_model * self._jitter(prefill_model) / self.speed
            decode_wall = profile.itl_at(len(decoding)) * self._jitter() / self.speed if decoding else 0.0
            deadline = max(deadline, loop.time() - _MAX_LAG_S) + prefill_wall + decode_wall
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            now = loop.time()
            self.stats.prompt_seconds += prefill_wall
            if decoding:
                self.stats.decode_seconds += decode_wall
                self.stats.decode_steps += 1
                self.stats.busy_slots_per_decode_sum += len(decoding)
            for seq in completing:
                if seq.cancelled:
                    continue
                if not seq.prefilled_once:
                    seq.prefilled_once = True
                    self.stats.prompt_tokens += len(seq.prompt)
                    if self._cache is not None:
                        self._cache.insert(seq.prompt)
                self._emit(seq, now)
            for seq in decoding:
                if not seq.cancelled and seq.finish_reason is None and seq in self.running:
                    self._emit(seq, now)
            self._notify()

    def _emit(self, seq: SimSequence, now: float) -> None:
        seq.generated += 1
        stats = self.stats
        stats.generation_tokens += 1
        if seq.first_token_at is None:
            seq.first_token_at = now
            stats.ttft.observe(now - seq.arrival)
        elif seq.last_token_at is not None:
            stats.itl.observe(now - seq.last_token_at)
        seq.last_token_at = now
        seq.events.put_nowait(seq.generated)
        if seq.generated >= seq.target_tokens:
            self._finish(seq, now)

    def _finish(self, seq: SimSequence, now: float) -> None:
        seq.finish_reason = "length" if seq.generated >= seq.max_tokens else "stop"
        self._release(seq)
        stats = self.stats
        stats.finished[seq.finish_reason] += 1
        first = seq.first_token_at if seq.first_token_at is not None else now
        admitted = seq.admitted_at if seq.admitted_at is not None else seq.arrival
        stats.e2e.observe(now - seq.arrival)
        stats.queue_time.observe(admitted - seq.arrival)
        stats.prefill_time.observe(first - admitted)
        stats.decode_time.observe(now - first)
        if seq.generated > 1:
            stats.tpot.observe((now - first) / (seq.generated - 1))
        stats.prompt_len.observe(len(seq.prompt))
        stats.output_len.observe(seq.generated)
        stats.queue_us += (admitted - seq.arrival) * 1e6
        stats.request_us += (now - seq.arrival) * 1e6
        seq.events.put_nowait(None)
