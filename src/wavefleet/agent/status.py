"""What the control API answers: one host's devices and every configured model, as JSON.

The agent serialises these records and `AgentClient` (gateways, `wave agent status`) parses them
back, so both sides agree on one schema. Sizes are bytes, times seconds, `None` unknown.

    GET /agent/v1/status  ->  AgentStatus{host, devices: [DeviceStatus], models: [ModelStatus]}
    GET /agent/v1/energy/{id}  ->  RequestEnergyReport (a request a gateway sent with x-wave-energy-id)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from wavefleet.telemetry.names import EngineState

__all__ = [
    "CONTROL_PREFIX",
    "AgentStatus",
    "ColdStart",
    "DeviceStatus",
    "DrainResult",
    "MemoryStatus",
    "ENERGY_ID_HEADER",
    "ModelStatus",
    "RequestEnergyReport",
    "valid_energy_id",
]


CONTROL_PREFIX = "/agent/v1"
# a gateway names each attempt it sends an agent with this header, and asks for its energy by it
ENERGY_ID_HEADER = "x-wave-energy-id"
_ENERGY_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def valid_energy_id(text: str) -> bool:
    """1-64 letters, digits, `-`, `_` or `.`: what a gateway sends as an energy id."""
    return 0 < len(text) <= 64 and set(text) <= _ENERGY_ID_CHARS


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # newer agents may add fields


class MemoryStatus(_Record):
    device: str
    estimate: int = Field(description="the sizing engine's estimate on the model's device")
    estimate_host: int = Field(default=0, description="and in host RAM besides (a GPU model's share)")
    estimate_runtime: int = Field(
        default=0,
        description="of those, the process's own (libraries, CUDA context): not in its logged buffers",
    )
    estimate_basis: str = ""
    reserved: int = Field(default=0, description="what the agent holds for it now (0 when not loaded)")
    buffers: int | None = Field(default=None, description="what the engine logged it allocated")
    process: int | None = Field(
        default=None, description="what the process holds: NVML on a GPU, resident memory on a CPU"
    )
    error: float | None = Field(
        default=None, description="(estimate - logged buffers) / logged buffers, runtime excluded"
    )


class ColdStart(_Record):
    """The phases of the last load, in seconds."""

    memory: float = Field(description="waiting for room: budget checks, evictions, memory coming back")
    process: float = Field(description="spawn to the engine's first HTTP answer")
    load: float = Field(description="first answer to healthy: the model loading")
    first_token: float = Field(description="the max_tokens 1 probe")
    total: float


class ModelStatus(_Record):
    name: str
    kind: str
    state: EngineState
    detail: str = Field(default="", description="what it is doing or waiting for, or why it stopped")
    device: str
    pinned: bool = False
    external: bool = Field(default=False, description="an engine running on its own (url:), never started")
    gguf: str | None = Field(
        default=None, description="the GGUF file it serves (its config's `gguf`, resolved)"
    )
    context: int
    slots: int
    ttl: float = Field(description="idle seconds before an unload: -1 never, 0 when idle")
    keep_alive: float | None = Field(
        default=None, description="the last request's keep_alive, overriding ttl"
    )
    idle_unload_in: float | None = None
    inflight: int = 0
    waiting: int = Field(default=0, description="requests waiting for it to be ready")
    room: bool = Field(
        default=True,
        description="loaded, or its memory fits each device's budget beside what the models that "
        "cannot be evicted now hold (pinned, busy, loading)",
    )
    memory: MemoryStatus
    loads: int = 0
    cold_start: ColdStart | None = None
    ready_for: float | None = Field(default=None, description="seconds since it became ready")
    restarts: int = Field(default=0, description="restarts after crashes, since the agent started")
    failures_in_row: int = 0
    last_exit: str | None = None
    last_error: str = ""
    pid: int | None = None
    port: int | None = None
    log: list[str] = Field(default_factory=list, description="the engine's last output lines")


class DeviceStatus(_Record):
    name: str
    gpu: int | None = None
    total: int
    budget: int
    reserved: int = Field(description="held for the models loaded or loading here")
    free: int = Field(description="what the device really has free now")
    source: str = ""


class AgentStatus(_Record):
    host: str
    version: str
    devices: list[DeviceStatus]
    models: list[ModelStatus]

    def model(self, name: str) -> ModelStatus | None:
        return next((m for m in self.models if m.name == name), None)


class DrainResult(_Record):
    model: str
    state: EngineState
    waited: float
    cut: int = Field(description="requests still running when the drain's time ran out, ended by the stop")


class RequestEnergyReport(_Record):
    """One request's energy as the agent attributed it on its own devices (gateway/energy.py):
    above the devices' idle draw, its share of the idle draw, and the device time it held."""

    id: str
    settled: bool = Field(description="false: its windows are not all closed yet; ask again")
    measured: bool = Field(
        default=False, description="it ran on a device the agent measures (false: energy unknown)"
    )
    energy_j: float = 0.0
    idle_j: float = 0.0
    busy_s: float = Field(default=0.0, description="device time it held, its share of each moment")
    prompt_tokens: int = 0
    completion_tokens: int = 0
