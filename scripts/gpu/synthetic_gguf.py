#!/usr/bin/env python3
"""Write a Llama-architecture GGUF with random F16 weights and a given shape.

Speed on a GPU or CPU depends on the tensors' shapes and types, not on the weights' values, so a
model with the exact shapes of, say, Llama 3.1 8B measures decode and prefill speed as the real
one would, without downloading it (the device machines reach no model hub). The tokenizer comes
from a JSON dump of a real GGUF's `tokenizer.*` fields, padded with unused tokens up to `--vocab`.

    python synthetic_gguf.py --out llama-3.1-8b-f16.gguf --tokenizer tokenizer.json \
        --layers 32 --hidden 4096 --heads 32 --kv-heads 8 --ffn 14336 --vocab 128256
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gguf
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    for name in ("layers", "hidden", "heads", "kv-heads", "ffn", "vocab"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--context", type=int, default=131072)
    parser.add_argument("--rope-base", type=float, default=500000.0)
    parser.add_argument("--seed", type=int, default=0, help="random weights; another seed, another model")
    parser.add_argument(
        "--zero-layers",
        type=int,
        default=0,
        help="extra layers after --layers whose attention output and FFN down projection are zero: "
        "they add their cost but leave the function unchanged (a speculative target that agrees with "
        "the model of --layers)",
    )
    args = parser.parse_args()

    head_dim = args.hidden // args.heads
    writer = gguf.GGUFWriter(str(args.out), "llama")
    writer.add_name("synthetic")
    writer.add_context_length(args.context)
    writer.add_embedding_length(args.hidden)
    writer.add_block_count(args.layers + args.zero_layers)
    writer.add_feed_forward_length(args.ffn)
    writer.add_head_count(args.heads)
    writer.add_head_count_kv(args.kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(args.rope_base)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(args.vocab)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    add_tokenizer(writer, json.loads(args.tokenizer.read_text()), args.vocab)

    rng = np.random.default_rng(args.seed)
    # One random pool, sliced per tensor: values only need to be plausible, not independent.
    pool = (rng.standard_normal(64 * 1024 * 1024, dtype=np.float32) * 0.02).astype(np.float16)

    def matrix(rows: int, cols: int) -> np.ndarray:
        count = rows * cols
        reps = -(-count // pool.size)
        return np.tile(pool, reps)[:count].reshape(rows, cols)

    ones = np.ones(args.hidden, dtype=np.float32)
    kv = args.kv_heads * head_dim
    writer.add_tensor("token_embd.weight", matrix(args.vocab, args.hidden))
    for i in range(args.layers + args.zero_layers):
        zero = i >= args.layers
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.attn_q.weight", matrix(args.hidden, args.hidden))
        writer.add_tensor(f"blk.{i}.attn_k.weight", matrix(kv, args.hidden))
        writer.add_tensor(f"blk.{i}.attn_v.weight", matrix(kv, args.hidden))
        out = matrix(args.hidden, args.hidden)
        writer.add_tensor(f"blk.{i}.attn_output.weight", np.zeros_like(out) if zero else out)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", matrix(args.ffn, args.hidden))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", matrix(args.ffn, args.hidden))
        down = matrix(args.hidden, args.ffn)
        writer.add_tensor(f"blk.{i}.ffn_down.weight", np.zeros_like(down) if zero else down)
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", matrix(args.vocab, args.hidden))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()


def add_tokenizer(writer: gguf.GGUFWriter, fields: dict[str, list[object]], vocab: int) -> None:
    tokens = list(fields["tokenizer.ggml.tokens"][1])  # type: ignore[arg-type]
    types = list(fields["tokenizer.ggml.token_type"][1])  # type: ignore[arg-type]
    pad = vocab - len(tokens)
    if pad < 0:
        raise SystemExit(f"--vocab {vocab} is smaller than the tokenizer's {len(tokens)} tokens")
    tokens += [f"<|unused_{i}|>" for i in range(pad)]
    types += [int(gguf.TokenType.UNUSED)] * pad
    writer.add_tokenizer_model(str(fields["tokenizer.ggml.model"][1]))
    writer.add_tokenizer_pre(str(fields["tokenizer.ggml.pre"][1]))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(list(fields["tokenizer.ggml.merges"][1]))  # type: ignore[arg-type]
    writer.add_bos_token_id(int(fields["tokenizer.ggml.bos_token_id"][1]))  # type: ignore[call-overload]
    writer.add_eos_token_id(int(fields["tokenizer.ggml.eos_token_id"][1]))  # type: ignore[call-overload]
    writer.add_add_bos_token(False)


if __name__ == "__main__":
    main()
