#!/usr/bin/env bash
# On a GPU machine: build llama.cpp with CUDA from the vendored source, and write synthetic
# Llama-3.1-8B-shaped GGUFs (F16, Q8_0, Q4_K_M) for speed measurements. Step 1 of 2; step 2 is
# measure_llamacpp.sh. Needs .device/llama.cpp.tar.gz and .device/tokenizer.json (see docs/gpu-validation.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
W=$PWD/.gpuwork; mkdir -p "$W"; OUT=${OUT:-$W/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
python3 - <<'PY' | tee "$OUT/nvml.json"
import json, pynvml
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
mem = pynvml.nvmlDeviceGetMemoryInfo(h)
bus = pynvml.nvmlDeviceGetMemoryBusWidth(h)
clk = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM)
name = pynvml.nvmlDeviceGetName(h)
cc = pynvml.nvmlDeviceGetCudaComputeCapability(h)
print(json.dumps({"name": name if isinstance(name, str) else name.decode(), "memory_total_bytes": mem.total,
  "memory_bus_width_bits": bus, "max_memory_clock_mhz": clk, "compute_capability": f"{cc[0]}.{cc[1]}",
  "power_limit_w": pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000}))
PY
if [ ! -x "$W/build/bin/llama-batched-bench" ]; then
  [ -d "$W/llama.cpp" ] || tar xzf .device/llama.cpp.tar.gz -C "$W"
  cmake -S "$W/llama.cpp" -B "$W/build" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release > "$OUT/cmake.log" 2>&1
  ( cmake --build "$W/build" -j16 --target llama-bench llama-batched-bench llama-quantize > "$OUT/build.log" 2>&1; echo "build rc=$?" >> "$OUT/build.log" ) &
fi
if [ ! -f "$W/m-f16.gguf" ]; then
  PYTHONPATH="$W/llama.cpp/gguf-py" python3 scripts/gpu/synthetic_gguf.py --out "$W/m-f16.gguf.tmp" \
    --tokenizer .device/tokenizer.json --layers 32 --hidden 4096 --heads 32 --kv-heads 8 --ffn 14336 --vocab 128256
  mv "$W/m-f16.gguf.tmp" "$W/m-f16.gguf"
fi
wait
tail -3 "$OUT/build.log" || true
for q in Q8_0 Q4_K_M; do
  [ -f "$W/m-$q.gguf" ] || "$W/build/bin/llama-quantize" "$W/m-f16.gguf" "$W/m-$q.gguf" "$q" 16 > "$OUT/quantize-$q.log" 2>&1
done
ls -la "$W"/*.gguf
