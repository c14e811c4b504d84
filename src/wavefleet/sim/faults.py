"""Fault injection: each request draws at most one fault, from a seeded RNG.

error     500 with an OpenAI error body, before anything is streamed
hang      the request is accepted and never answered (the client's timeout must fire)
cut       the connection is closed mid-stream, after a random number of tokens
inband    a 200 stream that carries an `{"error": ...}` event mid-stream, then [DONE]
"""

from __future__ import annotations

import random
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Fault", "FaultConfig", "FaultInjector"]


class Fault(StrEnum):
    NONE = "none"
    ERROR = "error"
    HANG = "hang"
    CUT = "cut"
    INBAND = "inband"


class FaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(default=0.0, ge=0, le=1)
    hang_rate: float = Field(default=0.0, ge=0, le=1)
    cut_rate: float = Field(default=0.0, ge=0, le=1)
    inband_error_rate: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _at_most_one(self) -> FaultConfig:
        if self.error_rate + self.hang_rate + self.cut_rate + self.inband_error_rate > 1:
            raise ValueError("fault rates add up to more than 1")
        return self


class FaultInjector:
    def __init__(self, config: FaultConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng

    def draw(self) -> Fault:
        """The fault for the next request (NONE most of the time)."""
        c = self.config
        u = self._rng.random()
        for fault, rate in (
            (Fault.ERROR, c.error_rate),
            (Fault.HANG, c.hang_rate),
            (Fault.CUT, c.cut_rate),
            (Fault.INBAND, c.inband_error_rate),
        ):
            if u < rate:
                return fault
            u -= rate
        return Fault.NONE

    def cut_after(self, tokens: int) -> int:
        """How many tokens to send before a cut or in-band error (at least 1 when possible)."""
        return self._rng.randint(1, tokens - 1) if tokens > 1 else 0
