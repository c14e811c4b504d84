"""The containers each node runs: the engines the plan placed there that no agent starts, the
node's fleet agent, and the exporters it needs.

One `ServiceDef` per compose service. The compose template lays them out; the port ledger,
the Prometheus scrape config and the gateway config read the same list, so they cannot drift.

A placement serving OpenAI's API is the node's `wave agent`'s (its agent.yaml, written by
`render.agent_config`). The agent starts a llama.cpp placement itself (llama-server on the GGUF),
so that placement is no container: it would hold the model's memory a second time. The agent
fronts a vLLM placement by its published port, so vLLM stays a container; Triton (KServe v2, not
the agent's API) too. The agent itself is a container here, built on the llama.cpp image of the
node's hardware (CPU, CUDA or Jetson's L4T build), whose llama-server it runs each model with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import wavefleet
from wavefleet.agent.config import DEFAULT_PORT as AGENT_PORT
from wavefleet.engines import Api, EngineKind
from wavefleet.render.images import IMAGES
from wavefleet.render.spec import DcgmSupport, EngineSpec, FleetSpec, NodeSpec, OsFamily

__all__ = [
    "AGENT_CONFIG",
    "AGENT_DIR",
    "AGENT_JOB",
    "AGENT_PIP",
    "AGENT_SECRET_FILE",
    "DCGM_PORT",
    "JETSON_EXPORTER_PORT",
    "NODE_EXPORTER_PORT",
    "Build",
    "ScrapeTarget",
    "ServiceDef",
    "agent_base_image",
    "agent_engines",
    "agent_starts",
    "node_services",
    "triton_ports",
]

NODE_EXPORTER_PORT = 9100
DCGM_PORT = 9400
JETSON_EXPORTER_PORT = 9101
HF_CACHE = "/srv/wavefleet/hf-cache"
MODELS_DIR = "/srv/wavefleet/models"
SECRETS_ENV = "./secrets.env"  # written by fetch-secrets.sh (mode 600), never committed
AGENT_JOB = "wave-agent"
AGENT_DIR = "wave-agent"  # the agent image's build context beside compose.yaml
AGENT_CONFIG = "/etc/wavefleet/agent.yaml"  # where the agent's container reads its agent.yaml
AGENT_SECRET_FILE = "/etc/wavefleet/agent.secret"  # one fleet secret: on every agent host and the gateway's
AGENT_PIP = f"wavefleet=={wavefleet.__version__}"  # the agent's image runs the Wavefleet that rendered it


@dataclass(frozen=True)
class Build:
    context: str
    args: dict[str, str]


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    port: int
    path: str = "/metrics"


@dataclass
class ServiceDef:
    name: str
    image: str
    command: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    ports: list[tuple[int, int]] = field(default_factory=list)  # (published on the node, in container)
    host_network_ports: list[int] = field(default_factory=list)  # ports bound with network_mode: host
    environment: dict[str, str] = field(default_factory=dict)
    env_file: str | None = None
    volumes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    healthcheck: list[str] | None = None
    start_period: str = "60s"
    gpu_ids: list[str] | str | None = None  # None: no GPU; "all"; or CUDA indices as strings
    ipc: str | None = None
    shm_size: str | None = None
    network_mode: str | None = None
    pid: str | None = None
    cap_add: list[str] = field(default_factory=list)
    build: Build | None = None
    scrape: ScrapeTarget | None = None
    engine: EngineSpec | None = None

    @property
    def published_ports(self) -> list[int]:
        return [published for published, _ in self.ports] + self.host_network_ports


def agent_engines(fleet: FleetSpec, node: NodeSpec) -> list[EngineSpec]:
    """The placements `node`'s agent serves: those speaking OpenAI's API (the agent forwards that
    API alone); none on Windows, where nothing is rendered."""
    if node.os is OsFamily.WINDOWS:
        return []
    return [e for e in fleet.engines_on(node.name) if e.kind.traits.api is Api.OPENAI]


def agent_starts(engine: EngineSpec) -> bool:
    """Whether the agent starts this placement's engine itself (llama-server on its GGUF), rather
    than fronting a container by its port."""
    return engine.kind is EngineKind.LLAMACPP


def node_services(fleet: FleetSpec, node: NodeSpec) -> list[ServiceDef]:
    """Every container the node runs: engines no agent starts, then the agent, then exporters."""
    if not node.docker:
        return []
    served = agent_engines(fleet, node)
    services = [
        _engine_service(engine)
        for engine in fleet.engines_on(node.name)
        if not (engine in served and agent_starts(engine))
    ]
    if served:
        services.append(_agent_service(node, served, fleet.gateway.agent_tls_dir))
    services.append(_node_exporter())
    if any(gpu.dcgm is not DcgmSupport.NONE for gpu in node.gpus):
        services.append(_dcgm_exporter(node))
    if node.is_jetson:
        services.append(_jetson_exporter())
    return services


def triton_ports(engine: EngineSpec) -> tuple[int, int, int]:
    """HTTP, gRPC and metrics ports: the engine's port and the two after it."""
    return engine.port, engine.port + 1, engine.port + 2


def _engine_service(engine: EngineSpec) -> ServiceDef:
    labels = {
        "io.wavefleet.engine": engine.name,
        "io.wavefleet.model": engine.model,
        "io.wavefleet.device": engine.device,
    }
    gpu_ids = None if engine.gpu_index is None else [str(engine.gpu_index)]
    if engine.kind is EngineKind.VLLM:
        return ServiceDef(
            name=engine.name,
            image=IMAGES.vllm.ref,
            command=_vllm_args(engine),
            ports=[(engine.port, 8000)],
            env_file=SECRETS_ENV,
            volumes=[f"{HF_CACHE}:/root/.cache/huggingface"],
            labels=labels,
            # vLLM's image has python3; /health answers 200 once the engine is up.
            healthcheck=[
                "CMD",
                "python3",
                "-c",
                "import urllib.request; urllib.request.urlopen('http://localhost:8000/health', timeout=4)",
            ],
            start_period="900s",  # first start downloads the weights and builds CUDA graphs
            gpu_ids=gpu_ids,
            ipc="host",  # PyTorch shares tensors between processes through /dev/shm
            scrape=ScrapeTarget("vllm", engine.port),
            engine=engine,
        )
    http, grpc, metrics = triton_ports(engine)
    return ServiceDef(
        name=engine.name,
        image=IMAGES.triton_vllm.ref,
        command=["tritonserver", "--model-repository=/models", "--metrics-port=8002"],
        ports=[(http, 8000), (grpc, 8001), (metrics, 8002)],
        env_file=SECRETS_ENV,
        volumes=["./triton/model_repository:/models:ro", f"{HF_CACHE}:/root/.cache/huggingface"],
        labels=labels,
        healthcheck=["CMD", "curl", "-fsS", "http://localhost:8000/v2/health/ready"],
        start_period="900s",
        gpu_ids=gpu_ids,
        shm_size="1g",  # Triton's python backend passes tensors through shared memory
        scrape=ScrapeTarget("triton", metrics),
        engine=engine,
    )


def _vllm_args(engine: EngineSpec) -> list[str]:
    args = [
        "--model",
        engine.weights,
        "--served-model-name",
        engine.model,
        "--max-model-len",
        str(engine.max_model_len),
        "--max-num-seqs",
        str(engine.max_num_seqs),
    ]
    if engine.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", f"{engine.gpu_memory_utilization:g}"]
    if engine.kv_cache_dtype:
        args += ["--kv-cache-dtype", engine.kv_cache_dtype]
    if engine.quantization_flag:
        args += ["--quantization", engine.quantization_flag]
    return args


def agent_base_image(node: NodeSpec, engines: list[EngineSpec]) -> str:
    """The llama.cpp image whose llama-server the node's agent runs: Jetson's L4T build, the CUDA
    build when a placement the agent starts is on a GPU, else the CPU build."""
    if node.is_jetson:
        return IMAGES.llamacpp_jetson.ref
    if any(agent_starts(e) and e.gpu_index is not None for e in engines):
        return IMAGES.llamacpp_cuda.ref
    return IMAGES.llamacpp_cpu.ref


def _agent_service(node: NodeSpec, engines: list[EngineSpec], tls_dir: str | None) -> ServiceDef:
    gpus = sorted({e.gpu_index for e in engines if agent_starts(e) and e.gpu_index is not None})
    volumes = [
        f"{MODELS_DIR}:{MODELS_DIR}:ro",  # the GGUF paths in agent.yaml are the host's
        f"./agent.yaml:{AGENT_CONFIG}:ro",
        f"{AGENT_SECRET_FILE}:{AGENT_SECRET_FILE}:ro",
    ]
    # /metrics answers anyone while the agent serves (/health is 503 while no model is loaded);
    # with mutual TLS a probe without the gateway's certificate cannot connect, so none is set.
    probe = f"import urllib.request; urllib.request.urlopen('http://{node.address}:{AGENT_PORT}/metrics', timeout=4)"
    healthcheck = None if tls_dir is not None else ["CMD", "/opt/wavefleet/bin/python", "-c", probe]
    if tls_dir is not None:
        volumes.append(f"{tls_dir}:{tls_dir}:ro")
    return ServiceDef(
        name=AGENT_JOB,
        image="wavefleet/wave-agent:local",
        build=Build(
            f"./{AGENT_DIR}",
            {"BASE_IMAGE": agent_base_image(node, engines), "WAVEFLEET": AGENT_PIP},
        ),
        command=["agent", "--config", AGENT_CONFIG],
        # The node's address for the gateway, loopback for its llama-servers and the vLLM it fronts.
        network_mode="host",
        # NVML names GPU processes by the host's pids: the agent matches them to its engines.
        pid="host",
        host_network_ports=[AGENT_PORT],
        volumes=volumes,
        labels={"io.wavefleet.agent": node.name, "io.wavefleet.host-port": str(AGENT_PORT)},
        healthcheck=healthcheck,
        start_period="30s",
        gpu_ids=[str(i) for i in gpus] if gpus else None,
        scrape=ScrapeTarget(AGENT_JOB, AGENT_PORT),
    )


def _node_exporter() -> ServiceDef:
    return ServiceDef(
        name="node-exporter",
        image=IMAGES.node_exporter.ref,
        command=["--path.rootfs=/host"],
        network_mode="host",  # sees the node's own interfaces, not a bridge's
        pid="host",
        host_network_ports=[NODE_EXPORTER_PORT],
        volumes=["/:/host:ro,rslave"],
        labels={"io.wavefleet.exporter": "node", "io.wavefleet.host-port": str(NODE_EXPORTER_PORT)},
        scrape=ScrapeTarget("node", NODE_EXPORTER_PORT),
    )


def _dcgm_exporter(node: NodeSpec) -> ServiceDef:
    supported = [str(g.index) for g in node.gpus if g.dcgm is not DcgmSupport.NONE]
    return ServiceDef(
        name="dcgm-exporter",
        image=IMAGES.dcgm_exporter.ref,
        ports=[(DCGM_PORT, 9400)],
        cap_add=["SYS_ADMIN"],  # profiling (DCP) fields need it; harmless where only basic fields exist
        labels={"io.wavefleet.exporter": "dcgm"},
        gpu_ids=supported,
        scrape=ScrapeTarget("dcgm", DCGM_PORT),
    )


def _jetson_exporter() -> ServiceDef:
    return ServiceDef(
        name="jetson-exporter",
        image="wavefleet/jetson-exporter:local",
        build=Build("./jetson-exporter", {"JETSON_STATS": IMAGES.jetson_stats}),
        ports=[(JETSON_EXPORTER_PORT, 9101)],
        volumes=["/run/jtop.sock:/run/jtop.sock"],  # jtop's service on the host owns the sensors
        labels={"io.wavefleet.exporter": "jetson"},
        scrape=ScrapeTarget("jetson", JETSON_EXPORTER_PORT),
    )
