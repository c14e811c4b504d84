"""The gateway's configuration file (`wave.yaml`), read by `wave serve --config` and written by
`wave render` and `wave sim --inventory`.

    host: 127.0.0.1
    port: 8080
    policy: least-loaded
    api_keys: [{env: WAVE_API_KEY}]
    backends:
      - {name: desktop-vllm, url: "http://desktop:8000", kind: vllm, models: [llama-3.1-8b]}
      - {name: desktop-llamacpp, url: "http://desktop:8081", kind: llamacpp}
    groups:
      chat: [llama-3.1-8b, llama-3.2-3b]      # a request for `chat` may go to either, in this order
    size_classes:                            # the seed's token-count classes (policy size-classes)
      - {max_prompt_tokens: 512, backends: [desktop-llamacpp]}
      - {backends: [desktop-vllm]}
    agents:                                  # fleet agents (`wave agent`): their models, started on demand
      - {name: desk, url: "http://desk:9190", secret: {env: WAVE_AGENT_SECRET}}
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from wavefleet.agent.secret import SecretSource
from wavefleet.engines import EngineKind
from wavefleet.errors import ConfigError, ConfigProblem
from wavefleet.files import load_model
from wavefleet.gateway.security.settings import SecurityConfig
from wavefleet.rag.config import RagConfig
from wavefleet.telemetry.cost import Tariff

__all__ = [
    "AgentRef",
    "AgentTls",
    "ApiKeySource",
    "BackendConfig",
    "BackendProfile",
    "GatewayConfig",
    "PolicyName",
    "SizeClass",
    "Timeouts",
    "WaveSettings",
    "load_gateway_config",
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyName(StrEnum):
    ROUND_ROBIN = "round-robin"
    LEAST_LOADED = "least-loaded"
    SIZE_CLASSES = "size-classes"
    GPU_ONLY = "gpu-only"
    WAVE = "wave"


class BackendProfile(StrictModel):
    """What a backend is expected to do, seeded from the sizing engine (an estimate) or measured.

    The wave policy starts from these numbers and then learns from finished requests.
    """

    prefill_tokens_per_s: float = Field(gt=0)
    decode_tokens_per_s: float = Field(gt=0, description="single-stream decode speed")
    max_num_seqs: int = Field(default=1, ge=1, description="sequences it runs at once (slots)")
    batch_slowdown: float = Field(
        default=0.0, ge=0, description="fractional rise of inter-token latency per extra running sequence"
    )
    basis: str = Field(default="", description="what the numbers rest on")


class BackendConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    url: HttpUrl
    kind: EngineKind = Field(
        default=EngineKind.OPENAI, description="the engine: decides its API adapter and metrics dialect"
    )
    models: list[str] = Field(default_factory=list, description="served models; empty = read its /v1/models")
    host: str | None = None
    device: str | None = None
    api_key_env: str | None = Field(default=None, description="env var holding the engine's own key")
    triton_model: str | None = Field(default=None, description="Triton model name, if not the served name")
    metrics_url: HttpUrl | None = Field(
        default=None, description="where its Prometheus metrics are, if not the dialect's default"
    )
    profile: BackendProfile | None = None
    gpu: bool | None = Field(default=None, description="runs on a GPU (for policy gpu-only); None = guess")


class SizeClass(StrictModel):
    max_prompt_tokens: int | None = Field(default=None, ge=1, description="None = everything larger")
    backends: list[str] = Field(min_length=1)


class Timeouts(StrictModel):
    connect_s: float = Field(default=5.0, gt=0)
    first_byte_s: float = Field(default=120.0, gt=0)
    idle_s: float = Field(default=60.0, gt=0, description="longest gap between stream events")
    total_s: float = Field(default=600.0, gt=0)


class WaveSettings(StrictModel):
    """Settings of the `wave` policy (predicted-latency routing); see docs/routing.md."""

    ttft_slo_s: float = Field(default=1.0, gt=0, description="time-to-first-token target")
    tpot_slo_s: float = Field(default=0.1, gt=0, description="time-per-output-token target")
    shed: bool = Field(default=True, description="answer 429 when no backend is predicted to meet the SLO")
    headroom: float = Field(
        default=0.8, gt=0, le=1, description="a prediction meets a target when within this fraction of it"
    )
    shed_slack_s: float = Field(
        default=0.1, ge=0, description="shed only when the best predicted TTFT is over its target by more"
    )
    affinity: bool = Field(
        default=True, description="approximate prefix index: prefer where a prefix is cached"
    )
    prefix_index_blocks: int = Field(
        default=16384, ge=16, description="64-char blocks remembered per backend"
    )
    explore_rate: float = Field(
        default=0.01, ge=0, le=0.5, description="share of requests sent to another backend"
    )
    preference_penalty_s: float = Field(
        default=0.5, ge=0, description="seconds added per step down a group's order of preference"
    )
    near_tie: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="backends of one model predicted within this fraction of the best take turns",
    )
    learning_rate: float = Field(default=0.1, gt=0, le=1, description="EWMA weight of each observation")
    seed: int = 0


class EnergySettings(StrictModel):
    """Energy per request (with `wave serve --telemetry`) and what it costs; see docs/telemetry.md."""

    price_per_kwh: float | None = Field(
        default=None, ge=0, description="electricity tariff per kWh; None = no cost, energy only"
    )
    currency: str = Field(default="USD", description="currency of the tariff and amortisation (ISO 4217)")
    amortisation_per_hour: float = Field(
        default=0.0, ge=0, description="the host's hardware cost per hour, charged for device time held"
    )
    sample_interval_s: float = Field(
        default=0.2, gt=0, le=60, description="how often the devices' energy counters are read"
    )

    def tariff(self) -> Tariff | None:
        if self.price_per_kwh is None and not self.amortisation_per_hour:
            return None
        return Tariff(
            price_per_kwh=self.price_per_kwh or 0.0,
            currency=self.currency,
            amortisation_per_hour=self.amortisation_per_hour,
        )


class ApiKeySource(StrictModel):
    """A static key, given inline (`key`) or read from an environment variable (`env`)."""

    key: str | None = Field(default=None, min_length=8)
    env: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ApiKeySource:
        if (self.key is None) == (self.env is None):
            raise ValueError("give exactly one of `key` or `env`")
        return self

    def resolve(self) -> str | None:
        return self.key if self.key is not None else os.environ.get(self.env or "")


class AgentTls(StrictModel):
    """TLS to an agent: the CA its certificate is signed by (default: the system's), and this
    gateway's client certificate and key for an agent that requires one (mutual TLS)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> AgentTls:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both `cert` and `key` (the client certificate and its key), or neither")
        return self


class AgentRef(StrictModel):
    """A fleet agent (`wave agent`) the gateway routes to: one backend serving every model the
    agent has configured (it starts them on demand), reached with its shared secret."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="its backend name")
    url: HttpUrl = Field(description="the agent's address, e.g. http://desk:9190")
    secret: SecretSource | None = Field(
        default=None, description="its shared secret ({env: VAR} or {file: PATH}); none: loopback agents only"
    )
    tls: AgentTls | None = Field(default=None, description="for an https URL: CA, and client certificate")

    def backend(self) -> BackendConfig:
        """The backend the gateway routes through: OpenAI's API at the agent's address."""
        return BackendConfig(name=self.name, url=self.url, kind=EngineKind.OPENAI)


class RolloutSettings(StrictModel):
    """Where `wave rollout` keeps its state (a gateway with fleet agents only)."""

    db: Path | None = Field(
        default=None, description="default: security.db, else $WAVE_DB, else the user's wave.db"
    )


class GatewayConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    policy: PolicyName = PolicyName.LEAST_LOADED
    api_keys: list[ApiKeySource] = Field(default_factory=list)
    backends: list[BackendConfig] = Field(default_factory=list)
    agents: list[AgentRef] = Field(
        default_factory=list, description="fleet agents: each is a backend for the models it lists"
    )
    aliases: dict[str, str] = Field(default_factory=dict, description="alias -> served model name")
    groups: dict[str, list[str]] = Field(default_factory=dict, description="group -> models, preferred first")
    size_classes: list[SizeClass] = Field(default_factory=list)
    wave: WaveSettings = Field(default_factory=WaveSettings)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    poll_interval_s: float = Field(default=1.0, gt=0)
    retries: int = Field(default=2, ge=0, description="other backends tried before the first byte")
    security: SecurityConfig = Field(
        default_factory=SecurityConfig, description="stored keys, OIDC, limits, screening, audit"
    )
    rag: RagConfig | None = Field(
        default=None, description="answer `rag/NAME` from collections (docs/rag.md)"
    )
    energy: EnergySettings = Field(
        default_factory=EnergySettings, description="energy and cost per request, with telemetry on"
    )
    rollout: RolloutSettings = Field(
        default_factory=RolloutSettings, description="`wave rollout` state: blue-green model updates"
    )

    @field_validator("backends")
    @classmethod
    def _unique_names(cls, backends: list[BackendConfig]) -> list[BackendConfig]:
        names = [b.name for b in backends]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"backend names must be unique; repeated: {', '.join(duplicates)}")
        return backends

    @model_validator(mode="after")
    def _classes_name_backends(self) -> GatewayConfig:
        agents = [a.name for a in self.agents]
        clashes = sorted(
            {n for n in agents if agents.count(n) > 1} | ({b.name for b in self.backends} & set(agents))
        )
        if clashes:
            raise ValueError(
                f"agent names must be unique and differ from the backends'; repeated: {', '.join(clashes)}"
            )
        names = {b.name for b in self.backends} | set(agents)
        for size_class in self.size_classes:
            unknown = [b for b in size_class.backends if b not in names]
            if unknown:
                raise ValueError(f"size class names unknown backends {unknown}; known: {sorted(names)}")
        return self


def load_gateway_config(path: Path) -> GatewayConfig:
    """Load and validate a gateway config; errors name the file and line."""
    config = load_model(GatewayConfig, path)
    if not config.backends and not config.agents:
        raise ConfigError(
            [ConfigProblem(path, None, "backends", "no backends", "list at least one backend or agent")]
        )
    return config
