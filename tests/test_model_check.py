"""`wave model check`: the bundled SmolLM2 GGUF, a truncated copy, a file that is no GGUF, and
synthetic GGUFs written with the gguf package (no chat template, a template that fails)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import gguf
import numpy as np
import pytest

from helpers import invoke_wave, run_wave, wave_env
from wavefleet.catalog import Catalog
from wavefleet.errors import UnknownIdError, UsageError
from wavefleet.models.bundled import bundled_model_path
from wavefleet.models.check import CheckTarget, check_model, fit_verdict, render_chat_template
from wavefleet.plan.gguf_file import read_gguf

SMOLLM2 = bundled_model_path()


def write_gguf(path: Path, *, template: str | None = None, tokenizer: bool = True) -> Path:
    """A one-layer llama GGUF with F32 weights and an 8-token vocabulary."""
    hidden, ffn, vocab = 16, 32, 8
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_context_length(2048)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    if tokenizer:
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list(["<s>", "</s>", "a", "b", "c", "d", "e", "f"])
        writer.add_bos_token_id(0)
        writer.add_eos_token_id(1)
    if template is not None:
        writer.add_chat_template(template)
    ones = np.ones(hidden, dtype=np.float32)
    writer.add_tensor("token_embd.weight", np.zeros((vocab, hidden), dtype=np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", ones)
    for name, shape in (
        ("attn_q", (hidden, hidden)),
        ("attn_k", (hidden, hidden)),
        ("attn_v", (hidden, hidden)),
        ("attn_output", (hidden, hidden)),
        ("ffn_gate", (ffn, hidden)),
        ("ffn_up", (ffn, hidden)),
        ("ffn_down", (hidden, ffn)),
    ):
        writer.add_tensor(f"blk.0.{name}.weight", np.zeros(shape, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_norm.weight", ones)
    writer.add_tensor("output_norm.weight", ones)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def verdicts(report_json: dict[str, object]) -> dict[str, bool]:
    checks = report_json["checks"]
    assert isinstance(checks, list)
    return {c["name"]: c["passed"] for c in checks}


def check_json(db: Path, *args: str) -> tuple[int, dict[str, object]]:
    done = invoke_wave("model", "check", *args, "--format", "json", env={"WAVE_DB": str(db)})
    assert done.exception is None or done.exit_code == 1, done.output
    return done.exit_code, json.loads(done.stdout)


@pytest.fixture
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state") / "wave.db"


def test_the_bundled_model_passes_every_check_on_a_placement_it_fits(db: Path) -> None:
    code, report = check_json(
        db, str(SMOLLM2), "--device", "ryzen-9-9900x", "--ctx", "8192", "--slots", "4", "--host-ram-gib", "8"
    )
    assert code == 0 and report["passed"] is True
    assert verdicts(report) == {
        "gguf": True,
        "context": True,
        "quantization": True,
        "tokenizer": True,
        "chat template": True,
        "fits placement": True,
    }
    model = report["model"]
    assert isinstance(model, dict)
    assert (model["architecture"], model["file_type"], model["context_length"]) == ("llama", "Q4_1", 8192)
    assert 130e6 < model["parameters"] < 140e6 and model["chat_template"] is True  # type: ignore[operator]
    sizing = report["sizing"]
    assert isinstance(sizing, dict) and sizing["fits"] is True and sizing["max_concurrent_sequences"] >= 4
    (row,) = sqlite3.connect(db).execute("SELECT action, outcome, details FROM events").fetchall()
    assert row[:2] == ("model.check", "ok") and json.loads(row[2])["sizing"]["fits"] is True


def test_a_placement_too_small_and_a_type_not_asked_for_fail(db: Path) -> None:
    code, report = check_json(
        db, str(SMOLLM2), "--device", "gtx-1650", "--ctx", "8192", "--slots", "64", "--quant", "Q4_K_M"
    )
    assert code == 1 and report["passed"] is False
    failed = {c["name"]: c["detail"] for c in report["checks"] if not c["passed"]}  # type: ignore[union-attr]
    assert set(failed) == {"quantization", "fits placement"}
    assert "Q4_1, not the Q4_K_M asked for" in failed["quantization"]
    assert "of 64 slots of 8,192 tokens fit" in failed["fits placement"]
    code, report = check_json(db, str(SMOLLM2), "--device", "gtx-1650", "--ctx", "32768")
    assert code == 1 and verdicts(report)["context"] is False
    outcome, details = sqlite3.connect(db).execute("SELECT outcome, details FROM events LIMIT 1").fetchone()
    assert outcome == "failed"
    recorded = json.loads(details)
    assert set(recorded["failed"]) == {"quantization", "fits placement"}
    assert recorded["verdicts"]["tokenizer"] is True and recorded["passed"] is False


def test_a_truncated_copy_fails_the_gguf_check(tmp_path: Path, db: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(SMOLLM2.read_bytes()[:49_000_000])
    code, report = check_json(db, str(cut))
    assert code == 1 and verdicts(report) == {"gguf": False}
    assert "ends early or is damaged" in report["checks"][0]["detail"]  # type: ignore[index]


def test_a_file_that_is_no_gguf_fails_and_says_what_it_is(tmp_path: Path, db: Path) -> None:
    page = tmp_path / "model.gguf"
    page.write_text("<!DOCTYPE html><html><body>Sign in to download</body></html>")
    code, report = check_json(db, str(page))
    assert code == 1 and verdicts(report) == {"gguf": False}
    assert "not a GGUF file (it starts with b'<!DO'" in report["checks"][0]["detail"]  # type: ignore[index]


def test_a_gguf_without_a_chat_template_fails_unless_no_chat_is_asked(tmp_path: Path, db: Path) -> None:
    bare = write_gguf(tmp_path / "bare.gguf")
    code, report = check_json(db, str(bare))
    assert code == 1 and verdicts(report)["chat template"] is False
    assert verdicts(report)["tokenizer"] is True and report["model"]["chat_template"] is False  # type: ignore[index]
    code, report = check_json(db, str(bare), "--no-chat")
    assert code == 0 and "chat template" not in verdicts(report)
    untokenized = write_gguf(tmp_path / "untokenized.gguf", tokenizer=False)
    code, report = check_json(db, str(untokenized), "--no-chat")
    assert code == 1 and verdicts(report)["tokenizer"] is False


def test_a_template_that_does_not_render_fails_and_one_refusing_system_turns_passes(
    tmp_path: Path, db: Path
) -> None:
    broken = write_gguf(tmp_path / "broken.gguf", template="{% for m in messages %}{{ m.content }")
    code, report = check_json(db, str(broken))
    assert code == 1 and verdicts(report)["chat template"] is False
    assert "syntax error" in next(c["detail"] for c in report["checks"] if c["name"] == "chat template")  # type: ignore[union-attr]
    # Gemma's templates raise on a system turn; llama.cpp folds it into the first user turn
    gemma_like = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    refusing = write_gguf(tmp_path / "gemma-like.gguf", template=gemma_like)
    code, report = check_json(db, str(refusing))
    assert code == 0, report
    detail = next(c["detail"] for c in report["checks"] if c["name"] == "chat template")  # type: ignore[union-attr]
    assert "without the system message" in detail


def test_the_sample_renders_with_the_models_own_template_and_tokens() -> None:
    summary = read_gguf(SMOLLM2)
    assert summary.chat_template is not None
    rendered, note = render_chat_template(summary.chat_template, bos_token="<s>", eos_token="</s>")
    assert note == ""
    assert rendered.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert rendered.endswith("<|im_start|>assistant\n")  # the generation prompt
    assert "Ünïcode" in rendered
    with pytest.raises(ValueError, match="leaves out"):
        render_chat_template("{{ messages[0]['content'] }}", bos_token="", eos_token="")


def test_a_placement_from_the_inventory(db: Path) -> None:
    code, report = check_json(db, str(SMOLLM2), "--placement", "llamacpp-gtx-1650")
    assert code == 0, report
    placement = report["placement"]
    assert isinstance(placement, dict)
    assert (placement["device"], placement["name"]) == ("gtx-1650", "llamacpp-gtx-1650")
    assert placement["context"] == 4096 and placement["slots"] >= 1
    done = invoke_wave("model", "check", str(SMOLLM2), "--placement", "llamacpp-gtx1650x", "--no-audit")
    assert isinstance(done.exception, UnknownIdError)
    assert "llamacpp-gtx1650" in str(done.exception)  # the nearest known names


def test_a_layer_split_passes_only_where_the_placement_splits() -> None:
    catalog = Catalog.load()
    # a file with 12 GiB of weights on a 4 GiB GPU: it fits only split between GPU and host RAM
    summary = read_gguf(SMOLLM2).model_copy(update={"tensor_bytes": 12 * 2**30, "parameters": 20 * 10**9})
    whole = CheckTarget(name="gtx", device="gtx-1650", context=4096, slots=1, host_ram_gib=48)
    fit, sizing = fit_verdict(summary, whole, catalog)
    assert not fit.passed and sizing.gpu_layers is not None and "layers would fit on the GPU" in fit.detail
    split = CheckTarget(
        name="gtx", device="gtx-1650", context=4096, slots=1, host_ram_gib=48, gpu_layers=sizing.gpu_layers
    )
    fit, _ = fit_verdict(summary, split, catalog)
    assert fit.passed and "layer split" in fit.detail


def test_bad_input_is_exit_2_and_failed_checks_exit_1(tmp_path: Path) -> None:
    env = wave_env(WAVE_DB=str(tmp_path / "wave.db"))
    missing = run_wave("model", "check", str(tmp_path / "none.gguf"), env=env)
    device = run_wave("model", "check", str(SMOLLM2), "--device", "rtx-9999", env=env)
    lonely = run_wave("model", "check", str(SMOLLM2), "--ctx", "4096", env=env)
    assert (missing.returncode, device.returncode, lonely.returncode) == (2, 2, 2)
    assert "no such file" in missing.stderr and "unknown hardware id 'rtx-9999'" in device.stderr
    assert "add --device" in lonely.stderr
    out = tmp_path / "report.json"
    failed = run_wave("model", "check", str(SMOLLM2), "--quant", "Q8_0", "--out", str(out), env=env)
    assert failed.returncode == 1 and "failed: quantization" in failed.stdout
    assert json.loads(out.read_text())["passed"] is False
    rows = sqlite3.connect(tmp_path / "wave.db").execute("SELECT outcome FROM events ORDER BY id").fetchall()
    # options that contradict each other stop the command before it acts: no event for them
    assert [r[0] for r in rows] == ["error", "error", "failed"]


def test_check_model_reads_without_the_cli(tmp_path: Path) -> None:
    report = check_model(SMOLLM2, chat=True)
    assert report.passed and report.sizing is None and report.placement is None
    with pytest.raises(UsageError, match="no such file"):
        check_model(tmp_path / "nothing.gguf")
