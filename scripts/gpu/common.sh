# Sourced by the GPU scripts: the work folder and what every script needs from a clone.
# shellcheck shell=bash
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
W=$PWD/.gpuwork
OUT=${OUT:-$W/out}
mkdir -p "$W" "$OUT"

need_device_files() {  # the llama.cpp source and the tokenizer dump that prepare.sh writes
  local file
  for file in .device/llama.cpp.tar.gz .device/tokenizer.json; do
    if [ ! -f "$file" ]; then
      echo "$file is missing: run 'bash scripts/gpu/prepare.sh' in this clone on a machine with network" \
        "access, then bring .device/ (and .whl/ for an offline GPU machine) along (docs/gpu-validation.md)" >&2
      exit 2
    fi
  done
}

llama_source() {  # unpack llama.cpp into $W/llama.cpp once
  need_device_files
  [ -d "$W/llama.cpp" ] || tar xzf .device/llama.cpp.tar.gz -C "$W"
}

python_packages() {  # wavefleet's dependencies for this python3: offline from .whl/ if there, else the index
  if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$W/site" .whl/*.whl
  else
    python3 -m pip install -q --no-compile --upgrade --target "$W/site" .
  fi
  export PYTHONPATH=$PWD/src:$W/site
}

synthetic_gguf() {  # OUT-FILE then synthetic_gguf.py's shape flags; SmolLM2's tokenizer padded to --vocab
  local out=$1
  shift
  [ -f "$out" ] && return 0
  PYTHONPATH="$W/llama.cpp/gguf-py:$W/site" python3 scripts/gpu/synthetic_gguf.py --out "$out.tmp" \
    --tokenizer .device/tokenizer.json "$@"
  mv "$out.tmp" "$out"
}

cuda_build() {  # TARGET... : a CUDA build (sm_90 unless CUDA_ARCH says otherwise) of these llama.cpp tools
  local missing=0 target
  for target in "$@"; do [ -x "$W/build/bin/$target" ] || missing=1; done
  [ "$missing" = 0 ] && return 0
  llama_source
  # CMAKE_EXTRA holds zero or more -D flags: split on purpose
  # shellcheck disable=SC2086
  cmake -S "$W/llama.cpp" -B "$W/build" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release ${CMAKE_EXTRA:-} > "$OUT/cmake.log" 2>&1
  cmake --build "$W/build" -j"$(nproc)" --target "$@" > "$OUT/build.log" 2>&1
}
