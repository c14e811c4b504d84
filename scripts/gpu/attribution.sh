#!/usr/bin/env bash
# On a GPU machine: check per-request energy attribution against NVML's energy counter.
#   engine: llama-server, CUDA, a synthetic Llama-3.1-8B-shaped F16 GGUF (scripts/gpu/synthetic_gguf.py),
#           2 slots (-np 2), so a long-prompt request and a short one run at once
#   driver: scripts/gpu/attribution_check.py (long alone, short alone, both together; x3), which
#           reads the counter every 10 ms, evaluates the attribution schemes side by side (spread,
#           streamed, pooled: the gateway's) and writes $OUT/attribution.json with the raw readings
#           and timings (replay: python3 scripts/gpu/attribution_check.py --replay FILE --out DIR)
#   bash scripts/gpu/attribution.sh build   # CUDA build of llama-server (the build folder stays)
#   bash scripts/gpu/attribution.sh run     # GGUF, engine, the check
# Needs .device/llama.cpp.tar.gz and .device/tokenizer.json (docs/gpu-validation.md) and the
# machine's python3 with pynvml (nothing else: the check imports only wavefleet.telemetry's pure parts).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"
need_device_files
STEP=${1:-all}
PORT=${PORT:-8090}

if [ "$STEP" != run ]; then
  cuda_build llama-server
  echo "built: $(ls -la "$W/build/bin/llama-server")"
fi
[ "$STEP" = build ] && exit 0

llama_source
synthetic_gguf "$W/m-f16.gguf" --layers 32 --hidden 4096 --heads 32 --kv-heads 8 --ffn 14336 --vocab 128256
nvidia-smi --query-gpu=name,memory.total,power.limit,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"

"$W/build/bin/llama-server" -m "$W/m-f16.gguf" -ngl 99 -np 2 -c 65536 -t 4 --host 127.0.0.1 --port "$PORT" \
  --metrics > "$OUT/engine.log" 2>&1 &
ENGINE=$!
trap 'kill $ENGINE 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 1; done
curl -sf "http://127.0.0.1:$PORT/health" > /dev/null || { tail -20 "$OUT/engine.log"; exit 1; }

PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 python3 scripts/gpu/attribution_check.py \
  --url "http://127.0.0.1:$PORT" --out "$OUT" "${@:2}" | tee "$OUT/attribution.txt"
