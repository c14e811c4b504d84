"""Fault injection: each request draws at most one fault (`wavefleet.wire.Fault`), from a seeded RNG.

The simulator serves four: ERROR, HANG, CUT (after a random number of tokens; a non-streamed
answer gets no response at all) and IN_BAND_ERROR (streams; a non-streamed answer gets ERROR).
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wavefleet.wire import Fault

__all__ = ["FaultConfig", "FaultInjector"]


class FaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(default=0.0, ge=0, le=1)
    hang_rate: float = Field(default=0.0, ge=0, le=1)
    cut_rate: float = Field(default=0.0, ge=0, le=1)
    inband_error_rate: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _at_most_one(self) -> FaultConfig:
        if sum(self.rates().values()) > 1:
            raise ValueError("fault rates add up to more than 1")
        return self

    def rates(self) -> dict[Fault, float]:
        """The share of requests that draw each fault."""
        return {
            Fault.ERROR: self.error_rate,
            Fault.HANG: self.hang_rate,
            Fault.CUT: self.cut_rate,
            Fault.IN_BAND_ERROR: self.inband_error_rate,
        }


class FaultInjector:
    def __init__(self, config: FaultConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng

    def draw(self) -> Fault:
        """The fault for the next request (NONE most of the time)."""
        u = self._rng.random()
        for fault, rate in self.config.rates().items():
            if u < rate:
                return fault
            u -= rate
        return Fault.NONE

    def cut_after(self, tokens: int) -> int:
        """How many tokens to send before a cut or in-band error (at least 1 when possible)."""
        return self._rng.randint(1, tokens - 1) if tokens > 1 else 0
