"""Checking a GGUF file before it is served: readable, the type asked for, a tokenizer, a chat
template that renders, and a size that fits its placement.

    report = check_model(path, catalog=catalog, placement=CheckTarget(name="--device ryzen-9-9900x",
                         device="ryzen-9-9900x", context=8192, slots=4, host_ram_gib=64))
    report.passed, [c for c in report.checks if not c.passed]

The metadata comes from `plan.gguf_file.read_gguf` (the `gguf` package's reader); the fit from
the sizing engine (`plan.sizing.size_model`) with the file's own tensor bytes, as `wave size
--gguf` computes it, for llama.cpp with `slots` sequences of `context` tokens each (llama-server's
`--parallel` and context per slot).

The chat template is rendered as Hugging Face's transformers and llama-cpp-python render it: a
Jinja2 sandbox with `trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`,
`strftime_now`, and `tojson` keeping non-ASCII text. llama-server's own engine (minja) follows
the same language; a template that fails here fails there too, or falls back to another format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from wavefleet.catalog import Catalog
from wavefleet.errors import UsageError
from wavefleet.plan.gguf_file import GgufSummary, file_quantization, model_arch, read_gguf
from wavefleet.plan.sizing import SizingInput, SizingResult, size_model

__all__ = [
    "SAMPLE_CONVERSATION",
    "Check",
    "CheckReport",
    "CheckTarget",
    "check_model",
    "fit_verdict",
    "placement_from_inventory",
    "render_chat_template",
]

# llama.cpp's engine reserves this share of a GPU for itself in the plan (render uses the same).
LLAMA_CPP_MEMORY_SHARE = 0.95

SAMPLE_CONVERSATION: list[dict[str, str]] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy? Answer in one word, Ünïcode included."},
]


@dataclass(frozen=True, kw_only=True)
class CheckTarget:
    """Where the model is to run: a catalog device, llama.cpp's context per slot and its slots."""

    name: str  # how the person named it: an engine of the inventory, or "--device ID"
    device: str  # catalog hardware id
    context: int | None  # tokens per slot (llama-server: --ctx-size / --parallel); None: the model's own
    slots: int  # sequences at once (llama-server --parallel)
    host_ram_gib: float | None = None  # RAM the engine may use: needed on a CPU and for a layer split
    gpu_layers: int | None = None  # layers on the GPU when the plan splits the model

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "device": self.device,
            "context": self.context,
            "slots": self.slots,
            "host_ram_gib": self.host_ram_gib,
            "gpu_layers": self.gpu_layers,
        }


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True, kw_only=True)
class CheckReport:
    """Every check's verdict, the file's metadata and the sizing numbers behind the fit."""

    path: Path
    checks: list[Check]
    model: dict[str, object] = field(default_factory=dict)
    placement: CheckTarget | None = None
    sizing: SizingResult | None = None

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def as_dict(self) -> dict[str, object]:
        sizing = self.sizing
        return {
            "file": str(self.path),
            "passed": self.passed,
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks],
            "model": self.model,
            "placement": self.placement.as_dict() if self.placement else None,
            "sizing": None
            if sizing is None
            else {
                "fits": sizing.fits,
                "weights_gib": round(sizing.weights_gib, 3),
                "kv_gib_per_sequence": round(sizing.kv_gib_per_sequence, 4),
                "overhead_gib": round(sizing.overhead_gib, 3),
                "budget_gib": round(sizing.budget_gib, 3),
                "max_concurrent_sequences": sizing.max_concurrent_sequences,
                "gpu_layers": sizing.gpu_layers,
                "total_layers": sizing.total_layers,
                "decode_tokens_per_s_upper_bound": round(sizing.decode_tokens_per_s_upper_bound, 1),
                "warnings": sizing.warnings,
            },
        }


def check_model(
    path: Path,
    *,
    catalog: Catalog | None = None,
    placement: CheckTarget | None = None,
    expect_type: str | None = None,
    chat: bool = True,
) -> CheckReport:
    """Every check on the file at `path`. A file that cannot be read as GGUF gives one failed
    check; a path that is no file raises UsageError (bad input)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file; give the path of a .gguf model file")
    try:
        summary = read_gguf(path)
    except UsageError as exc:
        return CheckReport(path=path, checks=[Check("gguf", False, str(exc).removeprefix(f"{path}: "))])
    size = path.stat().st_size
    checks = [
        Check(
            "gguf",
            True,
            f"{summary.architecture}, {summary.parameters / 1e9:.3g}e9 parameters, {len(summary.tensor_types)} "
            f"tensor types, {size:,} bytes",
        ),
        _context_check(summary, placement),
        _type_check(summary, expect_type),
        _tokenizer_check(summary),
    ]
    if chat:
        checks.append(_chat_template_check(summary))
    sizing = None
    if placement is not None:
        fit, sizing = fit_verdict(summary, placement, catalog or Catalog.load())
        checks.append(fit)
    return CheckReport(
        path=path, checks=checks, model=_metadata(summary, size), placement=placement, sizing=sizing
    )


def _metadata(summary: GgufSummary, size: int) -> dict[str, object]:
    return {
        "name": summary.name,
        "architecture": summary.architecture,
        "parameters": summary.parameters,
        "context_length": summary.context_length,
        "file_type": summary.file_type,
        "layers": summary.block_count,
        "file_bytes": size,
        "tensor_bytes": summary.tensor_bytes,
        "bits_per_weight": round(summary.tensor_bytes * 8 / max(summary.parameters, 1), 3),
        "tokenizer": summary.tokenizer_model,
        "tokens": summary.token_count,
        "chat_template": summary.chat_template is not None,
    }


def _context_check(summary: GgufSummary, placement: CheckTarget | None) -> Check:
    trained = summary.context_length
    if placement is None or placement.context is None:
        return Check("context", trained > 0, f"{trained:,} tokens (the model's own)")
    if placement.context > trained:
        return Check(
            "context",
            False,
            f"the placement asks {placement.context:,} tokens per slot; the model takes {trained:,}: "
            "lower --ctx (llama.cpp would stretch RoPE past what the model learned)",
        )
    return Check("context", True, f"{placement.context:,} of the model's {trained:,} tokens per slot")


def _normal_type(name: str) -> str:
    return name.upper().removeprefix("MOSTLY_")


def _type_check(summary: GgufSummary, expect_type: str | None) -> Check:
    found = summary.file_type
    bits = summary.tensor_bytes * 8 / max(summary.parameters, 1)
    detail = f"{found} ({bits:.2f} bits per weight over all tensors)"
    if expect_type is None:
        return Check(
            "quantization",
            found != "unknown",
            detail + ("" if found != "unknown" else ": no general.file_type"),
        )
    aliases = {"Q4_K": "Q4_K_M", "Q3_K": "Q3_K_M", "Q5_K": "Q5_K_M"}
    wanted = _normal_type(expect_type)
    wanted = aliases.get(wanted, wanted)
    if _normal_type(found) != wanted:
        return Check("quantization", False, f"{found}, not the {wanted} asked for (--quant)")
    return Check("quantization", True, detail + ", as asked")


def _tokenizer_check(summary: GgufSummary) -> Check:
    if summary.tokenizer_model is None or summary.token_count == 0:
        return Check(
            "tokenizer",
            False,
            "no tokenizer in the file (tokenizer.ggml.model and .tokens): llama.cpp cannot load it; "
            "convert the model again with llama.cpp's convert_hf_to_gguf.py",
        )
    special = ", ".join(
        f"{name} {token!r}"
        for name, token in (("bos", summary.bos_token), ("eos", summary.eos_token))
        if token
    )
    return Check(
        "tokenizer",
        True,
        f"{summary.tokenizer_model}, {summary.token_count:,} tokens" + (f"; {special}" if special else ""),
    )


def _chat_template_check(summary: GgufSummary) -> Check:
    template = summary.chat_template
    if not template:
        return Check(
            "chat template",
            False,
            "no tokenizer.chat_template: llama-server would format chats in a generic format the model "
            "was not trained on; use a GGUF converted with its template (or --no-chat for a model "
            "that serves completions or embeddings only)",
        )
    try:
        rendered, note = render_chat_template(
            template, bos_token=summary.bos_token or "", eos_token=summary.eos_token or ""
        )
    except ValueError as exc:
        return Check("chat template", False, f"present but does not render a sample conversation: {exc}")
    return Check(
        "chat template",
        True,
        f"present ({len(template):,} characters); renders a 4-message conversation to {len(rendered):,} characters"
        + note,
    )


def render_chat_template(template: str, *, bos_token: str, eos_token: str) -> tuple[str, str]:
    """The sample conversation rendered with `template`, and a note on how; ValueError when it does
    not render (a syntax error, an exception the template raises, a message left out)."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTags(jinja2.ext.Extension):
        """`{% generation %}…{% endgeneration %}` (transformers' assistant masks) render their body."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> Any:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    def tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False, **kwargs: Any) -> str:
        return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, **kwargs)

    def strftime_now(pattern: str) -> str:
        return datetime.now().strftime(pattern)

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTags, jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = tojson
    try:
        compiled = environment.from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"syntax error on line {exc.lineno}: {exc.message}") from exc
    note = ""
    attempts = [SAMPLE_CONVERSATION, SAMPLE_CONVERSATION[1:]]
    error: Exception | None = None
    for messages in attempts:
        try:
            rendered = compiled.render(
                messages=messages,
                add_generation_prompt=True,
                bos_token=bos_token,
                eos_token=eos_token,
                raise_exception=raise_exception,
                strftime_now=strftime_now,
                tools=None,
                documents=None,
            )
        except (jinja2.TemplateError, TypeError, KeyError, IndexError, AttributeError) as exc:
            error = error or exc  # the first failure (with a system message) says the most
            continue
        if messages is not SAMPLE_CONVERSATION:
            note = " (without the system message, which the template refuses: llama.cpp folds it into the first user turn)"
        missing = [m["content"] for m in messages if m["content"] not in rendered]
        if missing:
            raise ValueError(f"the rendered prompt leaves out {missing[0]!r}")
        return rendered, note
    raise ValueError(f"{type(error).__name__}: {error}")


def fit_verdict(summary: GgufSummary, placement: CheckTarget, catalog: Catalog) -> tuple[Check, SizingResult]:
    """Whether the file fits `placement` by the sizing engine's estimate: whole with every slot,
    or as the layer split the placement plans; with the sizing result behind the verdict."""
    device = catalog.get_hardware(placement.device)
    model, quant = model_arch(summary), file_quantization(summary)
    context, slots = min(placement.context or summary.context_length, summary.context_length), placement.slots
    result = size_model(
        SizingInput(
            model=model,
            device=device,
            quant=quant,
            context=context,
            memory_utilization=LLAMA_CPP_MEMORY_SHARE,
            max_num_seqs=placement.slots,
            engine="llama.cpp",
            host_ram_gib=placement.host_ram_gib,
            weights_bytes=summary.tensor_bytes,
        )
    )
    memory = (
        f"weights {result.weights_gib:.2f} GiB + KV {result.kv_gib_per_sequence * slots:.2f} GiB "
        f"({slots} x {context:,} tokens) + overhead {result.overhead_gib:.2f} GiB, budget {result.budget_gib:.2f} GiB"
    )
    where = f"{placement.name} ({device.id})"
    if result.fits and result.max_concurrent_sequences >= slots:
        return Check("fits placement", True, f"fits {where}: {memory} (estimate)"), result
    if result.fits:
        return (
            Check(
                "fits placement",
                False,
                f"only {result.max_concurrent_sequences} of {slots} slots of {context:,} tokens fit {where}: "
                f"{memory}; lower --ctx or --slots, or pick a smaller quantization",
            ),
            result,
        )
    if result.gpu_layers is not None:
        planned = placement.gpu_layers
        if planned is not None and planned < summary.block_count and planned <= result.gpu_layers:
            return (
                Check(
                    "fits placement",
                    True,
                    f"layer split on {where} as placed: {planned} of {summary.block_count} layers on the GPU "
                    f"({result.gpu_layers} fit), the rest in host RAM (estimate)",
                ),
                result,
            )
        return (
            Check(
                "fits placement",
                False,
                f"does not fit whole on {where}: {memory}; {result.gpu_layers} of {summary.block_count} layers "
                "would fit on the GPU (a layer split: --gpu-layers N), or pick a smaller quantization or context",
            ),
            result,
        )
    reasons = "; ".join(result.warnings) or memory
    return Check("fits placement", False, f"does not fit {where}: {reasons}"), result


def placement_from_inventory(name: str, inventory_path: Path, catalog: Catalog) -> CheckTarget:
    """The placement of the llama.cpp engine `name` as `wave render` places it from the inventory:
    one of the plan's placements (`llamacpp-<device>`) or one of the inventory's deployments."""
    from wavefleet.engines import EngineKind
    from wavefleet.errors import UnknownIdError
    from wavefleet.plan.inventory import load_inventory
    from wavefleet.render.from_inventory import EngineSource, fleet_from_inventory

    inventory = load_inventory(inventory_path, catalog)
    known: dict[str, CheckTarget] = {}
    for source in (EngineSource.DEPLOYMENTS, EngineSource.PLAN):
        for engine in fleet_from_inventory(inventory, catalog, source=source).fleet.engines:
            if engine.kind is EngineKind.LLAMACPP:
                known.setdefault(
                    engine.name,
                    CheckTarget(
                        name=engine.name,
                        device=engine.device,
                        context=engine.max_model_len,
                        slots=engine.parallel,
                        host_ram_gib=engine.host_ram_gib,
                        gpu_layers=engine.n_gpu_layers,
                    ),
                )
    if name not in known:
        raise UnknownIdError(
            "llama.cpp placement", name, known, listed_by=f"wave render --inventory {inventory_path}"
        )
    return known[name]
