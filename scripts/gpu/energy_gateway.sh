#!/usr/bin/env bash
# On a GPU machine: energy and cost per request through `wave serve --telemetry` (docs/telemetry.md).
#   engine:  llama-server, CUDA, a synthetic Llama-3.1-8B-shaped F16 GGUF, 4 slots
#   gateway: wave serve --telemetry (real NVML) --audit-db --tariff 0.30 --currency EUR
#   load:    wave bench at concurrency 1 then 4, mixed prompt lengths
#   check:   scripts/gpu/energy_gateway_check.py: the gateway's split closes (requests + idle shares
#            + unattributed = metered, from /metrics), metered vs NVML's own counter over the run,
#            audit rows vs /metrics, and `wave audit --usage`; writes $OUT/energy_gateway.json
#   bash scripts/gpu/energy_gateway.sh build   # CUDA build of llama-server (the build folder stays)
#   bash scripts/gpu/energy_gateway.sh run     # GGUF, engine, gateway, load, check
# Needs .device/ (and .whl/ without network) from scripts/gpu/prepare.sh.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"
need_device_files
STEP=${1:-all}

if [ "$STEP" != run ]; then
  cuda_build llama-server
  echo "built: $(ls -la "$W/build/bin/llama-server")"
fi
[ "$STEP" = build ] && exit 0

python_packages
llama_source
synthetic_gguf "$W/m-f16.gguf" --layers 32 --hidden 4096 --heads 32 --kv-heads 8 --ffn 14336 --vocab 128256
nvidia-smi --query-gpu=name,memory.total,power.limit,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
KEY=$(python3 -c 'import secrets; print("sk-gpu-energy-" + secrets.token_urlsafe(32))')
rm -f "$OUT/wave.db"
"$W/build/bin/llama-server" -m "$W/m-f16.gguf" -ngl 99 -np 4 -c 32768 --metrics --host 127.0.0.1 --port 8000 \
  --alias llama-3.1-8b-synthetic > "$OUT/llama-server.log" 2>&1 &
ENGINE=$!
trap 'kill $ENGINE ${GATEWAY:-} 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf http://127.0.0.1:8000/health >/dev/null && break; sleep 1; done
curl -sf http://127.0.0.1:8000/health >/dev/null || { tail -20 "$OUT/llama-server.log"; exit 1; }
WAVE_API_KEY=$KEY python3 -m wavefleet serve --port 8100 --backend gpu=http://127.0.0.1:8000,kind=llamacpp,gpu=true \
  --telemetry --audit-db "$OUT/wave.db" --tariff 0.30 --currency EUR > "$OUT/gateway.log" 2>&1 &
GATEWAY=$!
for _ in $(seq 30); do curl -sf http://127.0.0.1:8100/health >/dev/null && break; sleep 1; done
PYTHONUNBUFFERED=1 python3 scripts/gpu/energy_gateway_check.py --gateway http://127.0.0.1:8100 --key "$KEY" \
  --db "$OUT/wave.db" --out "$OUT" "${@:2}" | tee "$OUT/energy_gateway.txt"
