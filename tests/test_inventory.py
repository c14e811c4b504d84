from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from wavefleet.catalog import Access, Catalog, Hardware, Membership, ModelArch, Quantization, Service, Source
from wavefleet.errors import ConfigError
from wavefleet.plan.inventory import fleet_devices, load_inventory

SRC = [Source(ref="test fixture")]


def small_catalog() -> Catalog:
    gpu = Hardware(
        id="rtx-5070-ti",
        name="RTX 5070 Ti",
        sources=SRC,
        vendor="nvidia",
        kind="gpu",
        architecture="Blackwell",
        memory_gib=15.92,
        memory_bandwidth_gbs=896,
        compute_capability="12.0",
        tdp_w=300,
    )
    cpu = Hardware(
        id="ryzen-9-9900x",
        name="Ryzen 9 9900X",
        sources=SRC,
        vendor="amd",
        kind="cpu",
        architecture="Zen 5",
        memory_bandwidth_gbs=89.6,
        cores=12,
        tdp_w=120,
    )
    model = ModelArch(
        id="llama-3.1-8b",
        name="Llama 3.1 8B",
        sources=SRC,
        family="llama-3",
        params_b=8.03,
        layers=32,
        hidden_size=4096,
        attention_heads=32,
        kv_heads=8,
        head_dim=128,
        intermediate_size=14336,
        vocab_size=128256,
        max_context=131072,
    )
    fp8 = Quantization(
        id="fp8", name="FP8", sources=SRC, bits_per_weight=8, format="fp8", engines=["vllm"], kv_cache=True
    )
    q4 = Quantization(
        id="q4_k_m", name="Q4_K_M", sources=SRC, bits_per_weight=4.89, format="gguf", engines=["llama.cpp"]
    )
    vllm = Service(
        id="vllm",
        name="vLLM",
        sources=SRC,
        vendor="open",
        category="inference",
        purpose="serving",
        serves_goals=["llm-serving"],
        needs_gpu=True,
        platforms=["x86_64"],
        access=Access(license="Apache-2.0", unlocked_by=[Membership.NONE]),
        effort_days=1,
    )
    return Catalog(
        hardware={gpu.id: gpu, cpu.id: cpu},
        models={model.id: model},
        quantizations={fp8.id: fp8, q4.id: q4},
        services={vllm.id: vllm},
    )


GOOD = """\
name: test
power_price_per_kwh: 0.12
hosts:
  - id: desk
    name: desktop
    cpu: ryzen-9-9900x
    ram_gib: 64
    gpus:
      - device: rtx-5070-ti
        tdp_w: 250
goals:
  - {tag: llm-serving, weight: 1}
memberships: [developer-program]
deployments:
  - id: v
    service: vllm
    host: desk
    device: rtx-5070-ti
    model: llama-3.1-8b
    quant: fp8
    kv_dtype: fp8
    port: 8000
    claims: {source: seed, aggregate_tokens_per_s: [140, 170], p95_ttft_ms: 38}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(dedent(text))
    return path


def problems_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_inventory(write(tmp_path, text), small_catalog())
    return str(info.value)


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_good_inventory_loads_with_overrides_and_claim_ranges(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, GOOD), small_catalog())
    devices = {d.key: d for d in fleet_devices(inventory, small_catalog())}
    assert devices["rtx-5070-ti"].hardware.tdp_w == 250
    assert devices["rtx-5070-ti"].hardware.memory_bandwidth_gbs == 896
    assert devices["ryzen-9-9900x"].memory_gib == 64  # a CPU's memory is the host's RAM
    claims = inventory.deployments[0].claims
    assert claims is not None and claims.aggregate_tokens_per_s == (140, 170)
    assert claims.p95_ttft_ms == 38


def test_bad_device_id_names_line_and_nearest_id(tmp_path: Path) -> None:
    text = GOOD.replace("- device: rtx-5070-ti", "- device: rtx-5070ti")
    message = problems_of(tmp_path, text)
    assert f"inventory.yaml:{line_of(text, 'rtx-5070ti')}:" in message
    assert "rtx-5070ti" in message and "did you mean rtx-5070-ti" in message


def test_unknown_field_names_line_and_fix(tmp_path: Path) -> None:
    text = GOOD.replace("    ram_gib: 64", "    ram_gib: 64\n    ram_gb: 64")
    message = problems_of(tmp_path, text)
    assert f"inventory.yaml:{line_of(text, 'ram_gb:')}:" in message
    assert "ram_gb" in message and "unknown field" in message


def test_deployment_on_a_device_of_another_host_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace("    device: rtx-5070-ti\n    model", "    device: ryzen-9-9900x\n    model").replace(
        "    cpu: ryzen-9-9900x\n", ""
    )
    message = problems_of(tmp_path, text)
    assert "ryzen-9-9900x is not in host desk" in message
    assert f"inventory.yaml:{line_of(text, 'device: ryzen-9-9900x')}:" in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        GOOD.replace("host: desk", "host: desktop")
        .replace("tag: llm-serving", "tag: llm-servng")
        .replace("kv_dtype: fp8", "kv_dtype: q4_k_m")
    )
    message = problems_of(tmp_path, text)
    assert "no host 'desktop'" in message and "use one of desk" in message
    assert "unknown goal tag id 'llm-servng'" in message and "llm-serving" in message
    assert "q4_k_m is not a KV-cache dtype" in message and "use one of fp8" in message


def test_gpu_named_as_cpu_and_duplicate_ids_are_errors(tmp_path: Path) -> None:
    text = GOOD.replace("cpu: ryzen-9-9900x", "cpu: rtx-5070-ti").replace(
        "deployments:\n", "deployments:\n  - {id: v, service: vllm, host: desk}\n"
    )
    message = problems_of(tmp_path, text)
    assert "rtx-5070-ti is a GPU, not a CPU" in message
    assert "duplicate deployment id 'v'" in message


def test_out_of_range_weight_and_none_membership_are_errors(tmp_path: Path) -> None:
    text = GOOD.replace("weight: 1}", "weight: 1.5}").replace("[developer-program]", "[none]")
    message = problems_of(tmp_path, text)
    assert f"inventory.yaml:{line_of(text, 'weight: 1.5')}:" in message
    assert "`none` is implicit" in message


def test_packaged_default_inventory_is_the_example(repo_root: Path) -> None:
    from wavefleet.plan.inventory import default_inventory_path

    example = repo_root / "examples" / "home-lab.yaml"
    assert (
        default_inventory_path().read_bytes() == example.read_bytes()
    ), "copy examples/home-lab.yaml to src/wavefleet/plan/default_inventory.yaml"
