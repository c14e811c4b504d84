"""Container images the rendered compose files pin, each with where its tag was seen.

Tags are pinned so a redeploy runs what was tested; bump them deliberately. Jetson images come
from JetPack's own stack (L4T), since the x86_64/SBSA images do not run on Jetson's iGPU.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IMAGES", "Image", "Images"]


@dataclass(frozen=True)
class Image:
    ref: str
    source: str


@dataclass(frozen=True)
class Images:
    vllm: Image
    llamacpp_cuda: Image
    llamacpp_cpu: Image
    llamacpp_jetson: Image
    triton_vllm: Image
    dcgm_exporter: Image
    node_exporter: Image
    jetson_exporter_base: Image
    jetson_stats: str  # pip requirement; must match the host's jtop service version


IMAGES = Images(
    vllm=Image(
        "vllm/vllm-openai:v0.26.0",
        "Docker Hub vllm/vllm-openai; v0.26.0 release (vllm-project/vllm releases/v0.26.0)",
    ),
    llamacpp_cuda=Image(
        "ghcr.io/ggml-org/llama.cpp:server-cuda-b10644",
        "ghcr.io/ggml-org/llama.cpp (moved from ghcr.io/ggerganov/llama.cpp); per-build tags server-cuda-bNNNN",
    ),
    llamacpp_cpu=Image("ghcr.io/ggml-org/llama.cpp:server-b10644", "ghcr.io/ggml-org/llama.cpp server-bNNNN"),
    llamacpp_jetson=Image(
        "dustynv/llama_cpp:r36.4.0",
        "dusty-nv/jetson-containers (L4T r36 = JetPack 6); check the tag matches your L4T release",
    ),
    triton_vllm=Image(
        "nvcr.io/nvidia/tritonserver:26.05-vllm-python-py3",
        "NGC tritonserver, the -vllm-python-py3 variant bundles the vLLM backend",
    ),
    dcgm_exporter=Image(
        "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-distroless",
        "NGC k8s/dcgm-exporter; from 4.5.3-4.8.2 only distroless images ship (NVIDIA/dcgm-exporter#703)",
    ),
    node_exporter=Image("quay.io/prometheus/node-exporter:v1.9.1", "prometheus/node_exporter releases"),
    jetson_exporter_base=Image("python:3.12-slim", "Docker Hub python"),
    jetson_stats="jetson-stats==7.2.2",
)
