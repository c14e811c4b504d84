"""The faults a fake or simulated engine puts on the wire, named one way everywhere.

Each engine picks faults its own way and serves the subset its docstring lists: the fake servers
script one (`FakeOpenAIEngine.fault`, the `x-fake-fault` header), the reliability tests' engine
process takes `--fault` or `POST /admin/fault`, and the simulator draws one per request at the
rates of `sim.FaultConfig`.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Fault"]


class Fault(StrEnum):
    NONE = "none"
    ERROR = "error"
    HANG = "hang"
    SLOW_FIRST_BYTE = "slow-first-byte"
    STALL = "stall"
    SLOW_STREAM = "slow-stream"
    CUT = "cut"
    IN_BAND_ERROR = "in-band-error"
    GARBAGE = "garbage"

    @property
    def meaning(self) -> str:
        """What a client sees, in one line."""
        return _MEANINGS[self]


_MEANINGS = {
    Fault.NONE: "a normal answer",
    Fault.ERROR: "a 500 with an OpenAI error body, before anything is streamed",
    Fault.HANG: "the request is accepted and never answered",
    Fault.SLOW_FIRST_BYTE: "a wait before the status line, then a normal answer",
    Fault.STALL: "a stream that sends one event, then nothing",
    Fault.SLOW_STREAM: "a stream whose events come a long delay apart",
    Fault.CUT: "the connection drops before the answer ends (no [DONE])",
    Fault.IN_BAND_ERROR: 'a 200 stream that carries an {"error": ...} event mid-way, then [DONE]',
    Fault.GARBAGE: "a 200 whose body is not JSON",
}
