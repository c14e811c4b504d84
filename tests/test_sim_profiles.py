"""Built-in profiles come from the sizing engine and say what they rest on; faster devices give
faster profiles; profiles resolve by name, by calibrated name and by file."""

from __future__ import annotations

from pathlib import Path

import pytest

from wavefleet.catalog import Catalog
from wavefleet.engines import EngineKind
from wavefleet.errors import UnknownIdError
from wavefleet.sim.profile import save_profile
from wavefleet.sim.profiles import (
    BUILTIN_SPECS,
    ProfileSpec,
    builtin_profile_names,
    calibrated_profile_paths,
    profile_from_spec,
    resolve_profile,
)


@pytest.mark.parametrize("spec", BUILTIN_SPECS, ids=lambda s: s.name)
def test_builtin_profiles_rest_on_the_sizing_estimate(spec: ProfileSpec, catalog: Catalog) -> None:
    profile = profile_from_spec(spec, catalog)
    assert profile.name == spec.name and profile.device == spec.device and profile.model == spec.model
    assert profile.dialect is spec.dialect
    assert profile.basis[0].startswith(f"sizing estimate: {spec.model} {spec.quant} on {spec.device}")
    assert len(profile.basis) > 3  # the sizing engine's own basis lines follow
    assert profile.prefill_tokens_per_s > 0 and profile.max_num_seqs == spec.max_num_seqs
    itls = [t for _, t in profile.itl_at_batch]
    assert itls == sorted(itls)  # more sequences never decode faster per stream
    if spec.dialect is EngineKind.LLAMACPP:
        assert profile.kv_admission == "reserve"
        assert profile.max_model_len <= spec.context // spec.max_num_seqs
    else:
        assert profile.kv_admission == "preempt"
    assert profile.gpu == (catalog.get_hardware(spec.device).kind.value != "cpu")


def spec_on(device: str, *, engine: str = "llama.cpp", host: str | None = None) -> ProfileSpec:
    return ProfileSpec(
        f"t-{device}", device, "llama-3.2-1b", "q4_k_m", engine, 4096, 4, host=host, host_ram_gib=32
    )


def test_faster_device_gives_faster_profile(catalog: Catalog) -> None:
    ryzen = profile_from_spec(spec_on("ryzen-9-9900x"), catalog)
    laptop = profile_from_spec(spec_on("core-i9-9980hk"), catalog)
    gpu = profile_from_spec(spec_on("rtx-5070-ti", host="ryzen-9-9900x"), catalog)
    # DDR5-5600 dual channel beats the laptop's DDR4-2666; the GPU's GDDR7 beats both
    assert ryzen.itl_at(1) < laptop.itl_at(1)
    assert gpu.itl_at(1) < ryzen.itl_at(1)
    assert gpu.prefill_tokens_per_s > ryzen.prefill_tokens_per_s


def test_backend_profile_scales_with_speed(catalog: Catalog) -> None:
    profile = profile_from_spec(BUILTIN_SPECS[0], catalog)
    base, fast = profile.to_backend_profile(), profile.to_backend_profile(speed=10)
    assert fast.decode_tokens_per_s == pytest.approx(10 * base.decode_tokens_per_s)
    assert fast.prefill_tokens_per_s == pytest.approx(10 * base.prefill_tokens_per_s)
    assert base.max_num_seqs == profile.max_num_seqs
    assert "x10 for --speed" in fast.basis and profile.name in base.basis


def test_resolve_by_name_file_and_calibrated(catalog: Catalog, tmp_path: Path) -> None:
    by_name = resolve_profile("ryzen9900x-llamacpp", catalog)
    assert by_name.device == "ryzen-9-9900x"
    save_profile(by_name.model_copy(update={"name": "saved"}), tmp_path / "saved.yaml")
    assert resolve_profile(str(tmp_path / "saved.yaml"), catalog).name == "saved"
    for name in calibrated_profile_paths():
        assert resolve_profile(name, catalog).name == name
        assert name in builtin_profile_names()
    with pytest.raises(UnknownIdError) as caught:
        resolve_profile("ryzen9900x-llama", catalog)
    assert "ryzen9900x-llamacpp" in caught.value.suggestions
