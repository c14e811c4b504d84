"""`SimProfile`: what one simulated engine does, as numbers; loaded from and saved to YAML.

A profile is an estimate (from the sizing engine) or a fit (from calibration against a real
engine); `basis` says which, and what it rests on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wavefleet.engines import EngineKind
from wavefleet.files import load_model, write_atomic
from wavefleet.gateway.config import BackendProfile

__all__ = ["ItlPoint", "SimProfile", "load_profile", "save_profile"]


ItlPoint = tuple[Annotated[int, Field(ge=1)], Annotated[float, Field(gt=0)]]


class SimProfile(BaseModel):
    """One engine's behaviour. Times are seconds on the modelled device (before `--speed`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    dialect: EngineKind = Field(
        description="the engine imitated on the wire (its metric names, paths and extras): a kind the "
        "simulator imitates (engines table: simulated)"
    )
    model: str = Field(description="served model name (what /v1/models lists)")
    device: str | None = Field(default=None, description="catalog hardware id")
    gpu: bool = False
    prefill_tokens_per_s: float = Field(gt=0, description="prompt tokens per second, uncached")
    itl_at_batch: list[ItlPoint] = Field(
        min_length=1, description="(running sequences, inter-token latency s), interpolated linearly"
    )
    request_overhead_s: float = Field(
        default=0.0, ge=0, description="fixed engine-side cost per request before its prefill"
    )
    max_num_seqs: int = Field(
        ge=1, description="sequences decoded at once (vLLM max-num-seqs, llama.cpp slots)"
    )
    kv_capacity_tokens: int = Field(ge=16, description="KV cache size in tokens, all sequences together")
    max_model_len: int = Field(default=4096, ge=16)
    block_size: int = Field(default=16, ge=1, description="KV / prefix-cache block size in tokens")
    prefill_chunk_tokens: int | None = Field(
        default=2048,
        ge=1,
        description="prompt tokens per scheduler step (chunked prefill); None = whole prompts in one step",
    )
    kv_admission: Literal["reserve", "preempt"] = Field(
        default="reserve",
        description="reserve: admit only when prompt+max_tokens fits; preempt: admit when the prompt "
        "fits and preempt the newest sequence (recompute) when decode runs out of KV",
    )
    prefix_cache: bool = True
    prefix_cache_tokens: int | None = Field(
        default=None, ge=0, description="prefix cache size in tokens (LRU); None = kv_capacity_tokens"
    )
    jitter_sigma: float = Field(
        default=0.05, ge=0, le=1, description="sigma of the lognormal factor (mean 1) on each step's time"
    )
    natural_length_mean: float | None = Field(
        default=None,
        gt=0,
        description="if set and the request lacks ignore_eos, stop at a geometric length with this mean",
    )
    default_max_tokens: int = Field(default=256, ge=1)
    basis: list[str] = Field(default_factory=list, description="what the numbers rest on")

    @field_validator("dialect")
    @classmethod
    def _simulated(cls, kind: EngineKind) -> EngineKind:
        if not kind.traits.simulated:
            imitated = ", ".join(k.value for k in EngineKind if k.traits.simulated)
            raise ValueError(f"the simulator does not imitate {kind.value}; it imitates {imitated}")
        return kind

    @model_validator(mode="after")
    def _curve_sorted(self) -> SimProfile:
        batches = [b for b, _ in self.itl_at_batch]
        if batches != sorted(set(batches)):
            raise ValueError("itl_at_batch must list strictly increasing batch sizes")
        return self

    @property
    def single_stream_itl_s(self) -> float:
        return self.itl_at_batch[0][1]

    def to_backend_profile(self, speed: float = 1.0) -> BackendProfile:
        """The gateway's view of this engine: rates as seen on the wire at time scale `speed`."""
        itl1 = self.itl_at(1)
        top = min(self.max_num_seqs, max(b for b, _ in self.itl_at_batch))
        slowdown = (self.itl_at(top) / itl1 - 1) / (top - 1) if top > 1 else 0.0
        scaled = f" (x{speed:g} for --speed)" if speed != 1 else ""
        return BackendProfile(
            prefill_tokens_per_s=self.prefill_tokens_per_s * speed,
            decode_tokens_per_s=speed / itl1,
            max_num_seqs=self.max_num_seqs,
            batch_slowdown=max(0.0, slowdown),
            basis=f"simulated profile {self.name}{scaled}: " + "; ".join(self.basis),
        )

    def itl_at(self, running: int) -> float:
        """Inter-token latency with `running` sequences decoding: linear between the points,
        extended along the last segment past the last point, flat below the first."""
        points = self.itl_at_batch
        if running <= points[0][0] or len(points) == 1:
            return points[0][1]
        for (b0, t0), (b1, t1) in zip(points, points[1:], strict=False):
            if running <= b1:
                return t0 + (t1 - t0) * (running - b0) / (b1 - b0)
        return _extend(points, running)


def _extend(points: list[ItlPoint], running: int) -> float:
    (b0, t0), (b1, t1) = points[-2], points[-1]
    return max(t1, t1 + (t1 - t0) * (running - b1) / (b1 - b0))


def load_profile(path: Path) -> SimProfile:
    """Load a profile YAML; errors name the file, the line and the fix."""
    return load_model(SimProfile, path)


def save_profile(profile: SimProfile, path: Path) -> None:
    """Write a profile as YAML, whole or not at all."""
    data = profile.model_dump(mode="json")
    data["itl_at_batch"] = [list(p) for p in profile.itl_at_batch]
    write_atomic(path, yaml.safe_dump(data, sort_keys=False, width=100))
