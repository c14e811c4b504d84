"""`wave size`: how a model fits on a device, and how fast it can go (estimates with their basis)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from wavefleet.catalog import Catalog, Quantization
from wavefleet.errors import UnknownIdError, UsageError
from wavefleet.plan.sizing import TYPICAL_CONTEXT, SizingInput, SizingResult, size_model

__all__ = ["size"]

# The plan's quantization for llama.cpp (wavefleet.plan.placement.LLAMA_CPP_QUANTS).
DEFAULT_QUANT = "q4_k_m"

EPILOG = """\b
Examples:
  wave size --model llama-3.1-8b --device rtx-5070-ti --quant fp8 --kv-dtype fp8 \\
            --ctx 16384 --memory-utilization 0.85 --max-num-seqs 128
  wave size --model llama-3.1-8b --device rtx-5070-ti --quant q4_k_m --engine llama.cpp
  wave size --model llama-3.1-8b --device ryzen-9-9900x --host-ram-gib 64 -i my-fleet.yaml
  wave size --gguf ./SmolLM2-135M-Instruct.Q4_1.gguf --device ryzen-9-9900x --host-ram-gib 64
  wave size ... --format json        # every field of the result, for scripts

\b
Every number is an estimate from first principles (weights, KV cache, bandwidth, FLOPs);
the basis lines under the table say what each one rests on. Speeds are quoted at the typical
request's context (the inventory's workload.typical_context, else 4,096 tokens) and at the longest
a request may be (--ctx, else the model's maximum or the longest that fits). Without --quant the
model runs as GGUF Q4_K_M under llama.cpp, as the plan places it. `wave catalog list` shows ids.
"""


@click.command(epilog=EPILOG)
@click.option("--model", "model_id", help="Catalog model id (or use --gguf).")
@click.option(
    "--quant",
    "quant_id",
    help=f"Catalog quantization id of the weights (or use --gguf). Default with llama.cpp: {DEFAULT_QUANT}.",
)
@click.option(
    "--gguf",
    "gguf_path",
    type=click.Path(path_type=Path),
    help="A local .gguf file: read its architecture and real tensor bytes instead of --model/--quant.",
)
@click.option("--device", "device_id", required=True, help="Catalog hardware id the model runs on.")
@click.option("--kv-dtype", "kv_id", help="Quantization id of the KV cache (fp8, q8_0 …); default fp16/bf16.")
@click.option(
    "--ctx",
    "context",
    type=click.IntRange(min=1),
    help="Tokens per sequence; default: model max or what fits.",
)
@click.option(
    "--memory-utilization",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.9,
    show_default=True,
    help="Share of TOTAL device memory the engine may use (vLLM's --gpu-memory-utilization).",
)
@click.option("--max-num-seqs", type=click.IntRange(min=1), help="Engine cap on concurrent sequences.")
@click.option(
    "--engine", help="vllm, llama.cpp, sglang, tensorrt-llm …; default llama.cpp for GGUF, else vllm."
)
@click.option(
    "--host-ram-gib",
    type=click.FloatRange(0, min_open=True),
    help="Host RAM: needed for CPUs and layer splits.",
)
@click.option("--host", "host_id", help="Catalog id of the CPU beside the GPU, for layer-split speed.")
@click.option(
    "--inventory",
    "-i",
    "inventory_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="WAVE_INVENTORY",
    show_envvar=True,
    help=f"Inventory YAML whose workload.typical_context the headline speed is quoted at (default {TYPICAL_CONTEXT:,}).",
)
@click.option(
    "--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def size(
    model_id: str | None,
    quant_id: str | None,
    gguf_path: Path | None,
    device_id: str,
    kv_id: str | None,
    context: int | None,
    memory_utilization: float,
    max_num_seqs: int | None,
    engine: str | None,
    host_ram_gib: float | None,
    host_id: str | None,
    inventory_path: Path | None,
    output_format: str,
) -> None:
    """Size a model on a device: memory fit, KV cache, context, concurrency, speed (estimates)."""
    catalog = Catalog.load()
    device = catalog.get_hardware(device_id)
    kv_dtype = catalog.get_quantization(kv_id) if kv_id else None
    host = catalog.get_hardware(host_id) if host_id else None
    extra_basis: list[str] = []
    weights_bytes: int | None = None
    if gguf_path is not None:
        if model_id or quant_id:
            raise UsageError("give either --gguf or --model with --quant, not both")
        from wavefleet.plan.gguf_file import file_quantization, model_arch, read_gguf

        summary = read_gguf(gguf_path)
        model, quant = model_arch(summary), file_quantization(summary)
        weights_bytes = summary.tensor_bytes
        extra_basis.append(
            f"GGUF {summary.path}: {summary.architecture}, {summary.file_type}, {summary.parameters:,} parameters "
            f"in {summary.tensor_bytes:,} tensor bytes ({quant.bits_per_weight:.2f} bits per weight on average)"
        )
        if summary.higher_precision_tensors:
            extra_basis.append(
                "GGUF keeps these at a wider type than the rest: "
                + ", ".join(summary.higher_precision_tensors[:8])
            )
    else:
        if not model_id:
            raise UsageError("give --model (a catalog id), or --gguf PATH")
        if not quant_id and engine not in (None, "llama.cpp"):
            raise UsageError(f"give --quant for {engine} (a catalog quantization id, e.g. fp8)")
        model, quant = catalog.get_model(model_id), catalog.get_quantization(quant_id or DEFAULT_QUANT)
        if not quant_id:
            extra_basis.append(
                f"quantization: {quant.name} under llama.cpp, as the plan places it (--quant changes it)"
            )
    typical, typical_source = _typical_context(catalog, inventory_path)
    engine = engine or _default_engine(quant)
    if engine not in catalog.services:
        raise UnknownIdError("engine", engine, set(catalog.services))
    result = size_model(
        SizingInput(
            model=model,
            device=device,
            quant=quant,
            kv_dtype=kv_dtype,
            context=context,
            memory_utilization=memory_utilization,
            max_num_seqs=max_num_seqs,
            engine=engine,
            host_ram_gib=host_ram_gib,
            host=host,
            weights_bytes=weights_bytes,
            typical_context=typical,
        )
    )
    result = result.model_copy(update={"estimate_basis": extra_basis + result.estimate_basis})
    if output_format == "json":
        click.echo(
            json.dumps(
                {"model": model.id, "device": device.id, "quant": quant.id, **result.model_dump()}, indent=2
            )
        )
        return
    console = Console()
    console.print(f"{model.name} · {quant.name} · {device.name} · {engine}", highlight=False, markup=False)
    _print_headline(console, result, typical_source, _longest_label(result, context, model.max_context))
    _print_table(console, result)


def _typical_context(catalog: Catalog, inventory_path: Path | None) -> tuple[int, str]:
    """The typical request's context and where it comes from."""
    if inventory_path is None:
        return TYPICAL_CONTEXT, "the default typical context"
    from wavefleet.plan.inventory import load_inventory

    inventory = load_inventory(inventory_path, catalog)
    return inventory.workload.typical_context, f"the typical context of {inventory_path}"


def _longest_label(result: SizingResult, asked: int | None, model_max: int) -> str:
    if asked is not None:
        return "the context asked for (--ctx)"
    if result.context >= model_max:
        return "the model's full context"
    return "the longest that fits"


def _default_engine(quant: Quantization) -> str:
    return "llama.cpp" if quant.format == "gguf" else "vllm"


def _print_headline(console: Console, result: SizingResult, typical_source: str, longest: str) -> None:
    """The speeds a person reads first: a typical request, then the longest one, each with its context."""
    typical, context = result.typical_context, result.context
    lines = [
        f"Typical request, {typical:,} tokens ({typical_source}): up to "
        f"{result.decode_tokens_per_s_at_typical:.1f} tokens/s, one stream"
    ]
    if context > typical:
        lines.append(
            f"Longest request, {context:,} tokens ({longest}): up to "
            f"{result.decode_tokens_per_s_upper_bound:.1f} tokens/s, one stream"
        )
    for line in lines:
        console.print(line, highlight=False, markup=False)


def _print_table(console: Console, result: SizingResult) -> None:
    table = Table(show_header=True)
    table.add_column("estimate")
    table.add_column("value", justify="right")
    fit = "yes" if result.fits else ("split" if result.gpu_layers is not None else "no")
    rows = [
        ("fits whole on the device", fit),
        ("weights", f"{result.weights_gib:.2f} GiB"),
        ("engine overhead", f"{result.overhead_gib:.2f} GiB"),
        ("memory budget", f"{result.budget_gib:.2f} GiB"),
        ("left for KV cache", f"{result.kv_budget_gib:.2f} GiB"),
        ("KV per token", f"{result.kv_bytes_per_token:,} bytes"),
        ("KV per sequence", f"{result.kv_gib_per_sequence:.3f} GiB at {result.context:,} tokens"),
        ("longest single sequence", f"{result.max_context:,} tokens"),
        ("concurrent sequences", f"{result.max_concurrent_sequences} of {result.context:,} tokens each"),
        *_speed_rows(result),
    ]
    if result.gpu_layers is not None:
        rows.insert(1, ("layers on the GPU", f"{result.gpu_layers} of {result.total_layers}"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print("[bold]Basis[/] (every figure above is an estimate):", highlight=False)
    for line in result.estimate_basis:
        console.print(f"  • {line}", highlight=False, markup=False)
    for line in result.warnings:
        console.print(f"[yellow]warning:[/] {line}", highlight=False)


def _speed_rows(result: SizingResult) -> list[tuple[str, str]]:
    """Speeds at the typical context, then at the sized one when it is longer; each names its context."""
    typical, context = result.typical_context, result.context
    label = "typical" if context > typical else "typical and longest"
    rows = [
        (
            f"decode at {typical:,} tokens, one stream ({label}; upper bound)",
            f"{result.decode_tokens_per_s_at_typical:.1f} tokens/s",
        ),
        (
            f"prefill at {typical:,} tokens ({label}; estimate)",
            _prefill(result.prefill_tokens_per_s_at_typical),
        ),
    ]
    if context > typical:
        rows += [
            (
                f"decode at {context:,} tokens, one stream (longest; upper bound)",
                f"{result.decode_tokens_per_s_upper_bound:.1f} tokens/s",
            ),
            (f"prefill at {context:,} tokens (longest; estimate)", _prefill(result.prefill_tokens_per_s)),
        ]
    if result.gpu_layers is None:
        rows.append(
            (
                f"decode at {context:,} tokens, {result.max_concurrent_sequences} streams together (estimate)",
                f"{result.batched_decode_tokens_per_s:.0f} tokens/s",
            )
        )
    return rows


def _prefill(tokens_per_s: float) -> str:
    return f"{tokens_per_s:,.0f} tokens/s" if tokens_per_s else "unknown"
