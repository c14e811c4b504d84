"""The sizing engine against what a real llama-server allocates: the bundled SmolLM2-135M Q4_1 at
several contexts and slot counts, each buffer read from llama-server's own log (`-lv 4`)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from helpers import free_port
from wavefleet.engines.llama_server import LlamaServerArgs, find_llama_server
from wavefleet.errors import EngineError
from wavefleet.models.bundled import bundled_model_path
from wavefleet.plan.gguf_file import file_quantization, model_arch, read_gguf
from wavefleet.plan.sizing import GIB, SizingInput, kv_bytes_for_tokens, size_model

from .test_sizing_arithmetic import RYZEN_9900X

MIB = 2**20
BUFFER = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB")


def logged_buffers(context: int, slots: int, tmp_path: Path) -> dict[str, float]:
    """Start llama-server for the bundled model, wait for it to listen, and return its buffers in bytes."""
    try:
        binary = find_llama_server()
    except EngineError as exc:
        pytest.skip(f"no llama-server binary: {exc}")
    args = LlamaServerArgs(
        model_path=bundled_model_path(),
        alias="m",
        port=free_port(),
        context=context,
        parallel=slots,
        threads=1,
    )
    log = tmp_path / f"llama-server-{context}-{slots}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*args.command(binary), "-lv", "4"], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "llama-server did not listen within 60 s"
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=10)
    sizes: dict[str, float] = {}
    for _, kind, mib in BUFFER.findall(log.read_text()):
        sizes[kind] = sizes.get(kind, 0.0) + float(mib) * MIB
    assert set(sizes) == {"model", "KV", "compute", "output"}, sizes
    return sizes


@pytest.mark.slow
@pytest.mark.parametrize(("context", "slots"), [(512, 2), (2048, 4), (8192, 1)])
def test_the_sizing_engine_estimates_llama_server_within_ten_percent(
    context: int, slots: int, tmp_path: Path
) -> None:
    logged = logged_buffers(context, slots, tmp_path)
    summary = read_gguf(bundled_model_path())
    model = model_arch(summary)
    result = size_model(
        SizingInput(
            model=model,
            device=RYZEN_9900X,
            quant=file_quantization(summary),
            engine="llama.cpp",
            context=context,
            max_num_seqs=slots,
            output_rows=slots,  # llama-server reserves one logit row per slot
            host_ram_gib=16,
            weights_bytes=summary.tensor_bytes,
        )
    )
    kv = kv_bytes_for_tokens(model, result.kv_bytes_per_token / model.layers, context) * slots
    assert kv == pytest.approx(logged["KV"])
    assert result.weights_gib * GIB == pytest.approx(logged["model"], rel=0.01)
    estimate = result.weights_gib * GIB + kv + result.overhead_gib * GIB
    measured = sum(logged.values())
    assert estimate == pytest.approx(measured, rel=0.10)
