"""The containers each node runs: engines the plan placed there plus the exporters it needs.

One `ServiceDef` per compose service. The compose template lays them out; the port ledger,
the Prometheus scrape config and the gateway config read the same list, so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wavefleet.engines import EngineKind
from wavefleet.render.images import IMAGES
from wavefleet.render.spec import DcgmSupport, EngineSpec, FleetSpec, NodeSpec

__all__ = [
    "DCGM_PORT",
    "JETSON_EXPORTER_PORT",
    "NODE_EXPORTER_PORT",
    "Build",
    "ScrapeTarget",
    "ServiceDef",
    "node_services",
    "triton_ports",
]

NODE_EXPORTER_PORT = 9100
DCGM_PORT = 9400
JETSON_EXPORTER_PORT = 9101
HF_CACHE = "/srv/wavefleet/hf-cache"
MODELS_DIR = "/srv/wavefleet/models"
SECRETS_ENV = "./secrets.env"  # written by fetch-secrets.sh (mode 600), never committed


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


def node_services(fleet: FleetSpec, node: NodeSpec) -> list[ServiceDef]:
    """Every container the node runs, engines first."""
    if not node.docker:
        return []
    services = [_engine_service(engine, node) for engine in fleet.engines_on(node.name)]
    services.append(_node_exporter())
    if any(gpu.dcgm is not DcgmSupport.NONE for gpu in node.gpus):
        services.append(_dcgm_exporter(node))
    if node.is_jetson:
        services.append(_jetson_exporter())
    return services


def triton_ports(engine: EngineSpec) -> tuple[int, int, int]:
    """HTTP, gRPC and metrics ports: the engine's port and the two after it."""
    return engine.port, engine.port + 1, engine.port + 2


def _engine_service(engine: EngineSpec, node: NodeSpec) -> ServiceDef:
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
    if engine.kind is EngineKind.LLAMACPP:
        return _llamacpp_service(engine, node, labels, gpu_ids)
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


def _llamacpp_service(
    engine: EngineSpec, node: NodeSpec, labels: dict[str, str], gpu_ids: list[str] | None
) -> ServiceDef:
    if node.is_jetson:
        image, entrypoint = IMAGES.llamacpp_jetson.ref, ["llama-server"]
    elif gpu_ids is not None:
        image, entrypoint = IMAGES.llamacpp_cuda.ref, None
    else:
        image, entrypoint = IMAGES.llamacpp_cpu.ref, None
    args = [
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
        "--model",
        f"/models/{engine.weights}",
        "--alias",
        engine.model,
        "--ctx-size",
        str(engine.ctx_size),
        "--parallel",
        str(engine.parallel),
        "--n-gpu-layers",
        str(engine.n_gpu_layers if engine.n_gpu_layers is not None and gpu_ids is not None else 0),
        "--metrics",
    ]
    if engine.threads:
        args += ["--threads", str(engine.threads)]
    if engine.kv_cache_dtype and engine.kv_cache_dtype not in ("auto", "f16"):
        args += ["--cache-type-k", engine.kv_cache_dtype, "--cache-type-v", engine.kv_cache_dtype]
    return ServiceDef(
        name=engine.name,
        image=image,
        entrypoint=entrypoint,
        command=args,
        ports=[(engine.port, 8080)],
        volumes=[f"{MODELS_DIR}:/models:ro"],
        labels=labels,
        healthcheck=["CMD", "curl", "-fsS", "http://localhost:8080/health"],
        start_period="300s",
        gpu_ids=gpu_ids,
        scrape=ScrapeTarget("llamacpp", engine.port),
        engine=engine,
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
