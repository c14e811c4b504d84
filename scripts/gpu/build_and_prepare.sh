#!/usr/bin/env bash
# On a GPU machine, step 1 of 2 of the sizing check (docs/measurements/2026-11-27-llamacpp-speed-h200.md):
# a CUDA build of llama-bench, llama-batched-bench and llama-quantize, an NVML readout, and synthetic
# Llama-3.1-8B-shaped GGUFs (F16, Q8_0, Q4_K_M). Step 2 is measure_llamacpp.sh.
# Needs .device/ (and .whl/ without network) from scripts/gpu/prepare.sh.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"
need_device_files
python_packages
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
llama_source
# the build and the F16 file (CPU-bound Python) run side by side
cuda_build llama-bench llama-batched-bench llama-quantize &
BUILD=$!
synthetic_gguf "$W/m-f16.gguf" --layers 32 --hidden 4096 --heads 32 --kv-heads 8 --ffn 14336 --vocab 128256
wait "$BUILD" || { echo "the llama.cpp build failed: $OUT/build.log" >&2; exit 1; }
tail -3 "$OUT/build.log" || true
for q in Q8_0 Q4_K_M; do
  [ -f "$W/m-$q.gguf" ] || "$W/build/bin/llama-quantize" "$W/m-f16.gguf" "$W/m-$q.gguf" "$q" 16 > "$OUT/quantize-$q.log" 2>&1
done
ls -la "$W"/*.gguf
