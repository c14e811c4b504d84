"""A rollout as a record: what replaces what, where, in which steps, and every verdict so far.

It is what the controller persists after each step (store.py), what `wave rollout status` shows,
and what a restarted gateway resumes from. Phases run

    placing -> smoke -> canary (one per step) -> promoting -> draining -> done
                  \\________________\\______________ rolling-back -> rolled-back
    aborted: the operator stopped it before green took any traffic, or its parts were gone

and `green_weight` says, for any phase, which share of the model's requests green gets.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Check", "Phase", "Placement", "Rollout", "SmokeSettings", "ThinTraffic", "Verdict", "Version"]

# A step whose window ran out without its requests: roll back (nothing proved green) or judge
# the criteria on what it saw.
ThinTraffic = Literal["rollback", "judge"]


class Phase(StrEnum):
    PLACING = "placing"
    SMOKE = "smoke"
    CANARY = "canary"
    PROMOTING = "promoting"
    DRAINING = "draining"
    DONE = "done"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"
    ABORTED = "aborted"

    @property
    def terminal(self) -> bool:
        return self in (Phase.DONE, Phase.ROLLED_BACK, Phase.ABORTED)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Version(_Record):
    """One served version: the backend (a fleet agent) and the model entry it runs there."""

    backend: str
    model: str

    def __str__(self) -> str:
        return f"{self.backend}/{self.model}"


class Placement(_Record):
    """Where green goes: `beside` blue (both loaded at once) or `swap` (blue drained first)."""

    mode: Literal["beside", "swap"]
    why: str


class Check(_Record):
    """One criterion (or smoke check) and the number behind its verdict."""

    name: str
    passed: bool
    value: float | None = None
    detail: str = ""


class Verdict(_Record):
    """What one step decided, with its numbers: green's and blue's live metrics and each check."""

    step: str  # "smoke", "canary 10%", ...
    passed: bool
    at: float = Field(default_factory=time.time)
    green: dict[str, float] = Field(default_factory=dict)
    blue: dict[str, float] = Field(default_factory=dict)
    baseline: str = Field(default="", description="which of blue's requests green was compared with")
    checks: list[Check] = Field(default_factory=list)


class SmokeSettings(_Record):
    """The private checks green passes before it takes user traffic."""

    embedding: bool = Field(default=False, description="also ask for one embedding")
    expect: list[tuple[str, str]] = Field(
        default_factory=list, description="quality gate: (prompt, substring its answer must contain)"
    )
    max_tokens: int = Field(default=16, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)


class Rollout(_Record):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    model: str = Field(description="the served name clients ask for")
    blue: Version
    green: Version
    actor: str = Field(description="who started it")
    steps: list[int] = Field(description="green's share of traffic per canary step, in percent")
    bake_s: float = Field(gt=0, description="how long each step runs before its verdict")
    criteria: str = Field(description="checked on green's live metrics at each step's end")
    drain_timeout_s: float = Field(ge=0)
    retry_on_blue: bool = Field(
        default=True, description="a green failure before its first byte retries on blue"
    )
    min_requests: int = Field(
        default=10, ge=0, description="green's requests each step's window waits for (with its bake)"
    )
    max_bake_s: float = Field(
        default=600.0, gt=0, description="the longest a step's window waits for its requests"
    )
    not_enough_traffic: ThinTraffic = Field(
        default="rollback", description="what a step that got too few requests by max_bake_s does"
    )
    smoke: SmokeSettings = Field(default_factory=SmokeSettings)
    phase: Phase = Phase.PLACING
    step_index: int = 0
    placement: Placement | None = None
    verdicts: list[Verdict] = Field(default_factory=list)
    reason: str = Field(default="", description="why it ended the way it did")
    started_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    @property
    def green_weight(self) -> int:
        """Green's share of the model's requests now, in percent."""
        if self.phase is Phase.CANARY:
            return self.steps[min(self.step_index, len(self.steps) - 1)]
        if self.phase in (Phase.PROMOTING, Phase.DRAINING, Phase.DONE):
            return 100
        if self.phase in (Phase.PLACING, Phase.SMOKE) and self.swapped:
            return 100  # blue is gone: requests wait for green to load rather than fail
        return 0

    @property
    def swapped(self) -> bool:
        return self.placement is not None and self.placement.mode == "swap"

    def step_name(self) -> str:
        if self.phase is Phase.CANARY:
            return f"canary {self.green_weight}%"
        return self.phase.value
