"""A synthetic GPU serving requests: its power, its energy counter and its engine's timings.

Pure and deterministic, for testing energy attribution where no GPU is at hand. It models what
makes per-request attribution hard on a real one (llama.cpp on an H200,
docs/measurements/2026-12-03-energy-attribution-h200.md):

- the engine works in steps (continuous batching): each step takes up to `chunk_tokens` prompt
  tokens of one request and one generated token of every request that is decoding;
- a step with prompt tokens draws `prefill_w` above idle; a step of decoding only draws
  `decode_w` and lasts `step_s` (reading the weights once, whatever the batch) plus `per_seq_s`
  for each further sequence, so batching shares the per-step cost;
- the energy counter (mJ, as NVML's) moves only every `counter_period_s`, and is read every
  `read_period_s`;
- a request may wait `Job.pickup_s` before the engine takes it up, while the GPU draws
  `pickup_w` above idle though nothing runs (on the H200, llama-server took a lone request up
  0.05-1.2 s after it arrived, the GPU some 115 W above its idle mean meanwhile).

`GpuModel.serve` returns a `ModelRun`: the counter's readings, and each request as a client and
the engine see it (start, every streamed token, end, llama.cpp-style timings). Its fields are
those `scripts/gpu/attribution_check.py` saves from a real run, so the check replays either.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["GpuModel", "Job", "ModelRun", "ServedRequest"]


@dataclass(frozen=True, kw_only=True)
class Job:
    """A request sent to the engine at `arrive` (s), which the engine takes up `pickup_s` later."""

    id: str
    arrive: float
    prompt_tokens: int
    max_tokens: int
    pickup_s: float = 0.0


@dataclass(kw_only=True)
class ServedRequest:
    """A request as a streaming client saw it, with the engine's own timings of it."""

    id: str
    start: float
    end: float
    first_token: float | None
    token_times: list[float]
    prompt_tokens: int
    completion_tokens: int
    prompt_ms: float
    prompt_per_second: float
    predicted_per_second: float


@dataclass(kw_only=True)
class ModelRun:
    """The counter's readings (t, mJ, mW) and the requests served, with the power the model drew."""

    readings: list[tuple[float, int, int | None]]
    requests: list[ServedRequest]
    power: list[tuple[float, float, float]] = field(default_factory=list)  # (begin, end, W)

    def energy_between(self, a: float, b: float) -> float:
        """The model's true energy (J) between `a` and `b`, idle included."""
        return sum(w * (min(b, e) - max(a, s)) for s, e, w in self.power if min(b, e) > max(a, s))


@dataclass(frozen=True, kw_only=True)
class GpuModel:
    """An H200-like GPU serving an 8B F16 model with llama.cpp (the defaults); see the module doc."""

    idle_w: float = 135.0
    prefill_w: float = 550.0
    decode_w: float = 420.0
    prefill_tokens_per_s: float = 20_000.0
    step_s: float = 1 / 190
    per_seq_s: float = 0.0004
    chunk_tokens: int = 2048
    counter_period_s: float = 0.1
    counter_phase_s: float = 0.037
    read_period_s: float = 0.01
    pickup_w: float = 0.0

    def serve(self, jobs: list[Job], *, until: float) -> ModelRun:
        """Serve `jobs` from time 0 to `until` (s); every job must be done by then."""
        power: list[tuple[float, float, float]] = []
        t = 0.0
        progress = {j.id: _Progress(prompt_left=j.prompt_tokens) for j in jobs}
        done: dict[str, ServedRequest] = {}
        while len(done) < len(jobs):
            active = [
                j
                for j in sorted(jobs, key=lambda j: j.arrive)
                if j.arrive + j.pickup_s <= t and j.id not in done
            ]
            if not active:
                nxt = min(
                    x for j in jobs if j.id not in done for x in (j.arrive, j.arrive + j.pickup_s) if x > t
                )
                waiting = any(j.arrive <= t < j.arrive + j.pickup_s for j in jobs)
                power.append((t, nxt, self.idle_w + (self.pickup_w if waiting else 0.0)))
                t = nxt
                continue
            prefilling = [j for j in active if progress[j.id].prompt_left > 0]
            decoding = [j for j in active if progress[j.id].prompt_left == 0]
            chunk = 0
            if prefilling:
                p = progress[prefilling[0].id]
                chunk = min(self.chunk_tokens, p.prompt_left)
                p.prefill_begin = t if p.prefill_begin is None else p.prefill_begin
                dt = chunk / self.prefill_tokens_per_s + self.per_seq_s * len(decoding)
                watts = self.prefill_w
            else:
                dt = self.step_s + self.per_seq_s * (len(decoding) - 1)
                watts = self.decode_w
            power.append((t, t + dt, self.idle_w + watts))
            t += dt
            if prefilling:
                p = progress[prefilling[0].id]
                p.prompt_left -= chunk
                if p.prompt_left == 0:
                    p.prefill_end = t
                    decoding.append(prefilling[0])  # its last chunk samples its first token
            for j in decoding:
                progress[j.id].times.append(t)
                if len(progress[j.id].times) == j.max_tokens:
                    done[j.id] = self._served(j, progress[j.id])
        if t < until:
            power.append((t, until, self.idle_w))
        return ModelRun(
            readings=self._readings(power, until), requests=[done[j.id] for j in jobs], power=power
        )

    def check_run(
        self,
        *,
        repeats: int = 3,
        long: tuple[int, int] = (12_000, 16),
        short: tuple[int, int] = (21, 768),
        gap_s: float = 2.0,
        pickups: tuple[float, ...] = (),
    ) -> dict[str, Any]:
        """The run `scripts/gpu/attribution_check.py` makes on a GPU, served by this model: per
        repeat a long-prompt request alone, a short one alone, then both (the short one first,
        as a client's two threads race), with `gap_s` of idle around each; (prompt, generated)
        tokens given by `long` and `short`; the engine takes up the requests alone `pickups[r %
        len(pickups)]` after they arrive in repeat r. The same JSON fields as the check records."""
        jobs: list[tuple[Job, str, int]] = []
        t = 4.0  # idle before the first request: the idle draw
        for r in range(repeats):
            pickup = pickups[r % len(pickups)] if pickups else 0.0
            for kind, (prompt, made) in (("long-alone", long), ("short-alone", short)):
                job = Job(id=f"{kind}-{r}", arrive=t, prompt_tokens=prompt, max_tokens=made, pickup_s=pickup)
                jobs.append((job, kind, r))
                t += pickup + self._alone_s(prompt, made) + gap_s
            jobs.append(
                (
                    Job(id=f"short-together-{r}", arrive=t, prompt_tokens=short[0], max_tokens=short[1]),
                    "short-together",
                    r,
                )
            )
            jobs.append(
                (
                    Job(id=f"long-together-{r}", arrive=t + 0.001, prompt_tokens=long[0], max_tokens=long[1]),
                    "long-together",
                    r,
                )
            )
            t += self._alone_s(*long) + self._alone_s(*short) + gap_s
        run = self.serve([j for j, _, _ in jobs], until=t)
        kinds = {j.id: (kind, r) for j, kind, r in jobs}
        return {
            "gpu": "synthetic (wavefleet.telemetry.gpu_model)",
            "model": asdict(self),
            "readings": [list(x) for x in run.readings],
            "requests": [
                asdict(q) | {"kind": kinds[q.id][0], "repeat": kinds[q.id][1]} for q in run.requests
            ],
            "power": [list(x) for x in run.power],
            "truth_j": {
                q.id: run.energy_between(q.start, q.end) - self.idle_w * (q.end - q.start)
                for q in run.requests
            },
        }

    def _alone_s(self, prompt: int, made: int) -> float:
        """About how long a request takes alone (an upper bound, for spacing a run)."""
        return prompt / self.prefill_tokens_per_s + made * self.step_s + 0.05

    def _served(self, job: Job, p: _Progress) -> ServedRequest:
        assert p.prefill_begin is not None and p.prefill_end is not None
        prompt_s = p.prefill_end - p.prefill_begin
        predicted_s = p.times[-1] - p.times[0]
        return ServedRequest(
            id=job.id,
            start=job.arrive,
            end=p.times[-1],
            first_token=p.times[0],
            token_times=list(p.times),
            prompt_tokens=job.prompt_tokens,
            completion_tokens=len(p.times),
            prompt_ms=prompt_s * 1000,
            prompt_per_second=job.prompt_tokens / prompt_s,
            predicted_per_second=(len(p.times) - 1) / predicted_s if predicted_s > 0 else 0.0,
        )

    def _readings(
        self, power: list[tuple[float, float, float]], until: float
    ) -> list[tuple[float, int, int | None]]:
        """What a reader polling the counter every `read_period_s` sees: the energy at the
        counter's last update (it moves every `counter_period_s`), and the power then."""
        cumulative = [0.0]
        for s, e, w in power:
            cumulative.append(cumulative[-1] + w * (e - s))
        starts = [s for s, _, _ in power]

        def energy_at(t: float) -> float:
            i = max(0, min(len(power) - 1, _index(starts, t)))
            s, e, w = power[i]
            return cumulative[i] + w * (min(t, e) - s)

        out: list[tuple[float, int, int | None]] = []
        n = int(math.floor(until / self.read_period_s))
        for k in range(n + 1):
            t = k * self.read_period_s
            updated = math.floor((t - self.counter_phase_s) / self.counter_period_s) * self.counter_period_s
            updated = max(0.0, updated + self.counter_phase_s)
            watts = power[max(0, min(len(power) - 1, _index(starts, t)))][2]
            out.append((t, int(energy_at(updated) * 1000), int(watts * 1000)))
        return out


@dataclass(kw_only=True)
class _Progress:
    prompt_left: int
    prefill_begin: float | None = None
    prefill_end: float | None = None
    times: list[float] = field(default_factory=list)


def _index(starts: list[float], t: float) -> int:
    """Index of the last interval starting at or before `t`."""
    return bisect.bisect_right(starts, t) - 1
