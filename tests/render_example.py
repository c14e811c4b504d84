"""A small fleet shaped like the seed's home lab, with every engine kind the render knows.

Tests render it to exercise each renderer without the planner's inventory; the real input is
`from_inventory.fleet_from_inventory`. Addresses are private (RFC 1918) examples.
"""

from __future__ import annotations

from typing import Any

from wavefleet.engines import EngineKind
from wavefleet.gateway.config import BackendProfile
from wavefleet.render.spec import (
    CiSpec,
    DcgmSupport,
    EngineSpec,
    FleetSpec,
    GatewaySpec,
    GpuSpec,
    LxcSpec,
    NodeSpec,
    OsFamily,
    VaultSpec,
)

__all__ = ["example_fleet"]


def example_fleet(**overrides: Any) -> FleetSpec:
    """The example fleet; keyword arguments replace FleetSpec fields (engines=[...], …)."""
    rtx = GpuSpec(
        index=0, device="rtx-5070-ti", name="GeForce RTX 5070 Ti", memory_gib=15.92, dcgm=DcgmSupport.BASIC
    )
    gtx = GpuSpec(index=0, device="gtx-1650", name="GeForce GTX 1650", memory_gib=4, dcgm=DcgmSupport.BASIC)
    orin = GpuSpec(
        index=0, device="jetson-orin-nano-super", name="Jetson Orin Nano 8GB", dcgm=DcgmSupport.NONE
    )
    nodes = [
        NodeSpec(
            name="schlimers-server",
            address="192.168.1.10",
            os=OsFamily.UBUNTU,
            os_version="24.04",
            gpus=[rtx],
        ),
        NodeSpec(name="xps15", address="192.168.1.15", os=OsFamily.PROXMOX, docker=False, gpus=[gtx]),
        NodeSpec(
            name="xps15-lxc-101",
            address="192.168.1.21",
            os=OsFamily.DEBIAN,
            parent="xps15",
            lxc=LxcSpec(vmid=101),
            docker=False,
        ),
        NodeSpec(
            name="xps15-lxc-103",
            address="192.168.1.23",
            os=OsFamily.DEBIAN,
            parent="xps15",
            lxc=LxcSpec(vmid=103),
            docker=False,
        ),
        NodeSpec(
            name="xps15-lxc-105",
            address="192.168.1.25",
            os=OsFamily.DEBIAN,
            parent="xps15",
            lxc=LxcSpec(vmid=105),
            docker=False,
        ),
        NodeSpec(
            name="xps15-lxc-106",
            address="192.168.1.26",
            os=OsFamily.DEBIAN,
            parent="xps15",
            lxc=LxcSpec(vmid=106),
            docker=False,
        ),
        NodeSpec(
            name="xps15-lxc-107",
            address="192.168.1.27",
            os=OsFamily.DEBIAN,
            parent="xps15",
            lxc=LxcSpec(vmid=107, gpu_passthrough=True),
            gpus=[gtx],
        ),
        NodeSpec(
            name="jetson",
            address="192.168.1.30",
            os=OsFamily.JETPACK,
            os_version="6.2",
            arch="arm64",
            gpus=[orin],
        ),
    ]
    profile = BackendProfile(
        prefill_tokens_per_s=3000,
        decode_tokens_per_s=80,
        max_num_seqs=32,
        batch_slowdown=0.02,
        basis="example figures, not a sizing estimate",
    )
    engines = [
        EngineSpec(
            name="vllm-desktop",
            kind=EngineKind.VLLM,
            node="schlimers-server",
            gpu_index=0,
            device="rtx-5070-ti",
            model="llama-3.1-8b",
            weights="meta-llama/Llama-3.1-8B-Instruct",
            quant="fp8",
            quantization_flag="fp8",
            kv_cache_dtype="fp8",
            max_model_len=16384,
            max_num_seqs=32,
            gpu_memory_utilization=0.80,
            port=8000,
            profile=profile,
        ),
        EngineSpec(
            name="triton-desktop",
            kind=EngineKind.TRITON,
            node="schlimers-server",
            gpu_index=0,
            device="rtx-5070-ti",
            model="qwen2.5-0.5b",
            weights="Qwen/Qwen2.5-0.5B-Instruct",
            quant="bf16",
            max_model_len=4096,
            max_num_seqs=8,
            gpu_memory_utilization=0.10,
            port=8100,
        ),
        EngineSpec(
            name="llamacpp-desktop",
            kind=EngineKind.LLAMACPP,
            node="schlimers-server",
            device="ryzen-9-9900x",
            model="llama-3.2-3b",
            weights="llama-3.2-3b-Q4_K_M.gguf",
            quant="q4_k_m",
            max_model_len=4096,
            parallel=4,
            threads=10,
            port=8081,
        ),
        EngineSpec(
            name="llamacpp-gtx1650",
            kind=EngineKind.LLAMACPP,
            node="xps15-lxc-107",
            gpu_index=0,
            device="gtx-1650",
            model="llama-3.2-1b",
            weights="llama-3.2-1b-Q4_K_M.gguf",
            quant="q4_k_m",
            max_model_len=4096,
            parallel=4,
            n_gpu_layers=16,
            threads=6,
            port=8082,
        ),
        EngineSpec(
            name="llamacpp-jetson",
            kind=EngineKind.LLAMACPP,
            node="jetson",
            gpu_index=0,
            device="jetson-orin-nano-super",
            model="llama-3.2-3b",
            weights="llama-3.2-3b-Q4_K_M.gguf",
            quant="q4_k_m",
            max_model_len=4096,
            parallel=2,
            n_gpu_layers=28,
            port=8083,
        ),
    ]
    fields: dict[str, Any] = {
        "name": "example",
        "nodes": nodes,
        "engines": engines,
        "gateway": GatewaySpec(
            nginx_node="xps15-lxc-101",
            server_name="ai.home.arpa",
            authentik_outpost="http://192.168.1.23:9000",
        ),
        "monitoring_node": "xps15-lxc-105",
        "vault": VaultSpec(node="xps15-lxc-103", addr="https://192.168.1.23:8200"),
        "ci": CiSpec(node="xps15-lxc-106"),
        "power_price_per_kwh": 0.12,
    }
    fields.update(overrides)
    return FleetSpec(**fields)
