"""`wave model quantize`: llama.cpp's own llama-quantize (built into the llama_cpp package) on the
bundled SmolLM2 GGUF; the output appears whole or not at all."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import Result

from helpers import invoke_wave, run_wave, wave_env
from wavefleet.errors import MissingExtraError, ModelError, UnknownIdError, UsageError
from wavefleet.models.bundled import bundled_model_path
from wavefleet.models.quantize import INSTALL_FIX, allowed_types, find_llama_quantize
from wavefleet.plan.gguf_file import read_gguf

SMOLLM2 = bundled_model_path()


@pytest.fixture(scope="module")
def tool() -> Path:
    try:
        return find_llama_quantize().path
    except MissingExtraError:
        pytest.skip(f"llama-quantize is not built here; {INSTALL_FIX}")


@pytest.fixture
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state") / "wave.db"


def quantize(db: Path, *args: str) -> Result:
    return invoke_wave("model", "quantize", *args, env={"WAVE_DB": str(db)})


def test_quantizes_the_bundled_model_into_a_gguf_of_the_type_asked(
    tool: Path, tmp_path: Path, db: Path
) -> None:
    out = tmp_path / "smollm2-Q4_0.gguf"
    # SmolLM2 ships as Q4_1: a quantized source needs --allow-requantize
    done = invoke_wave(
        "model",
        "quantize",
        str(SMOLLM2),
        str(out),
        "--type",
        "q4_0",
        "--allow-requantize",
        "--threads",
        "2",
        env={"WAVE_DB": str(db)},
    )
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == str(out)
    summary = read_gguf(out)
    assert summary.file_type == "Q4_0" and summary.chat_template == read_gguf(SMOLLM2).chat_template
    assert "272 of 272 tensors (100%)" in done.stderr  # the tool's own count, as progress
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left
    assert out.stat().st_mode & 0o777 != 0o600  # the umask's mode, not a temporary file's
    (row,) = sqlite3.connect(db).execute("SELECT action, subject, outcome, details FROM events").fetchall()
    assert row[:3] == ("model.quantize", str(out), "ok")
    details = json.loads(row[3])
    assert details["file_type"] == "Q4_0" and details["tensors"] == 272 and details["tool"] == str(tool)
    assert details["tool_version"] != "unknown" and details["source"] == str(SMOLLM2)


def test_a_failed_run_leaves_the_target_as_it_was(tool: Path, tmp_path: Path, db: Path) -> None:
    out = tmp_path / "smollm2.gguf"
    out.write_bytes(b"GGUF the model served today")
    refused = quantize(db, str(SMOLLM2), str(out), "--type", "Q4_0")
    assert isinstance(refused.exception, UsageError) and "--force" in str(refused.exception)
    # forced, but the source is quantized already and --allow-requantize is not given:
    # llama-quantize fails after writing part of its output, which must not reach the target
    failed = quantize(db, str(SMOLLM2), str(out), "--type", "Q4_0", "--force")
    error = failed.exception
    assert isinstance(error, ModelError)
    assert "requantizing from type q4_1 is disabled" in str(error) and "--allow-requantize" in str(error)
    assert out.read_bytes() == b"GGUF the model served today"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    outcomes = [r[0] for r in sqlite3.connect(db).execute("SELECT outcome FROM events ORDER BY id")]
    assert outcomes == ["error", "error"]


def test_a_type_the_tool_does_not_list_is_named_with_the_nearest(
    tool: Path, tmp_path: Path, db: Path
) -> None:
    from wavefleet.models.quantize import QuantizeTool

    listed = allowed_types(QuantizeTool(path=tool))
    assert {"Q4_K_M", "Q8_0", "F16", "COPY"} <= set(listed)
    done = quantize(db, str(SMOLLM2), str(tmp_path / "x.gguf"), "--type", "Q4_K_X")
    assert isinstance(done.exception, UnknownIdError) and "Q4_K_M" in str(done.exception)
    not_gguf = tmp_path / "model.safetensors"
    not_gguf.write_bytes(b'{"__metadata__": {}}')
    done = quantize(db, str(not_gguf), str(tmp_path / "x.gguf"))
    assert isinstance(done.exception, UsageError) and "convert_hf_to_gguf.py" in str(done.exception)


def test_without_llama_quantize_the_error_names_what_to_install(tmp_path: Path) -> None:
    env = wave_env(WAVE_DB=str(tmp_path / "wave.db"), PATH="/nonexistent")
    given = tmp_path / "none"
    missing = run_wave(
        "model", "quantize", str(SMOLLM2), str(tmp_path / "x.gguf"), "--llama-quantize", str(given), env=env
    )
    assert missing.returncode == 2 and "no such file" in " ".join(missing.stderr.split())
    # a llama_cpp package built without the tools: first on the path, with no bin/ folder
    bare = tmp_path / "bare"
    (bare / "llama_cpp").mkdir(parents=True)
    (bare / "llama_cpp" / "__init__.py").write_text("")
    env["PYTHONPATH"] = f"{bare}:{env['PYTHONPATH']}"
    done = run_wave("model", "quantize", str(SMOLLM2), str(tmp_path / "x.gguf"), env=env)
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, said
    assert "llama-quantize is not installed" in said and "-DLLAMA_BUILD_TOOLS=ON" in said
    assert not (tmp_path / "x.gguf").exists()
