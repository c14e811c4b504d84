#!/usr/bin/env bash
# On a GPU machine: routing policies in front of two real engines of very different speed.
#   gpu: llama-server, CUDA, synthetic Llama-3.2-3B-shaped F16 GGUF, 16 slots
#   cpu: llama-server on the CPU alone (CUDA_VISIBLE_DEVICES=""), synthetic Llama-3.2-1B-shaped
#        F16 GGUF, 8 threads, 4 slots
# behind `wave serve` as the group chat: [llama-3.2-3b, llama-3.2-1b], no profiles (the wave
# policy starts from its assumed CPU/GPU profiles and learns). `wave bench` sweeps Poisson rates
# with the SLO TTFT <= 1 s and TPOT <= 100 ms, prompts 30-1170 words, answers 2-62 tokens,
# prompt caching off, fresh prompts per rate (seeds SEED0+1, SEED0+2, ...), for each policy with a
# fresh gateway. Results land under $OUT.
#   bash scripts/gpu/wave_on_gpu.sh build   # CUDA build of llama-server (the build folder stays)
#   bash scripts/gpu/wave_on_gpu.sh run     # GGUFs, engines, the sweep
# Needs .device/ (and .whl/ without network) from scripts/gpu/prepare.sh.
# Measured: docs/measurements/2026-11-27-routing-gpu-and-cpu-engines.md.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"
need_device_files
python_packages
export PYTHONUNBUFFERED=1
STEP=${1:-all}
RATES=${RATES:-2,6,10,14,18}
POLICIES=${POLICIES:-least-loaded round-robin size-classes wave}
DURATION=${DURATION:-20}

if [ "$STEP" != run ]; then
  cuda_build llama-server
  echo "built: $(ls -la "$W/build/bin/llama-server")"
fi
[ "$STEP" = build ] && exit 0

gguf() {  # name layers hidden heads kv-heads ffn
  synthetic_gguf "$W/$1.gguf" --layers "$2" --hidden "$3" --heads "$4" --kv-heads "$5" --ffn "$6" --vocab 128256
}
llama_source
gguf m3b 28 3072 24 8 8192 &
gguf m1b 16 2048 32 8 8192 &
wait
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
lscpu | grep -E "Model name|^CPU\(s\)" | tee "$OUT/cpu.txt"

"$W/build/bin/llama-server" -m "$W/m3b.gguf" -ngl 99 -np 16 -c 32768 -t 2 --metrics --host 127.0.0.1 \
  --port 8001 --alias llama-3.2-3b > "$OUT/engine-gpu.log" 2>&1 &
PIDS=$!
CUDA_VISIBLE_DEVICES="" "$W/build/bin/llama-server" -m "$W/m1b.gguf" -ngl 0 -np 4 -c 8192 -t 8 -tb 8 \
  --metrics --host 127.0.0.1 --port 8002 --alias llama-3.2-1b > "$OUT/engine-cpu.log" 2>&1 &
PIDS="$PIDS $!"
trap 'kill $PIDS 2>/dev/null || true' EXIT
for port in 8001 8002; do
  for _ in $(seq 180); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
done

for policy in $POLICIES; do
  cat > "$W/wave-$policy.yaml" <<YAML
host: 127.0.0.1
port: 8100
policy: $policy
backends:
  - {name: gpu, url: "http://127.0.0.1:8001", kind: llamacpp, models: [llama-3.2-3b], gpu: true}
  - {name: cpu, url: "http://127.0.0.1:8002", kind: llamacpp, models: [llama-3.2-1b], gpu: false}
groups:
  chat: [llama-3.2-3b, llama-3.2-1b]
size_classes:
  - {max_prompt_tokens: 128, backends: [cpu]}
  - {backends: [gpu]}
YAML
  python3 -m wavefleet serve --config "$W/wave-$policy.yaml" > "$OUT/gateway-$policy.log" 2>&1 &
  GATEWAY=$!
  for _ in $(seq 30); do curl -sf http://127.0.0.1:8100/health > /dev/null && break; sleep 0.5; done
  # one bench per rate, each with its own seed: fresh prompts at every level (one seed for all
  # levels repeats the prompts, and wave's prefix index then takes them for cached)
  seed=${SEED0:-0}; : > "$OUT/bench-$policy.txt"
  for rate in ${RATES//,/ }; do
    seed=$((seed + 1))
    python3 -m wavefleet bench --url http://127.0.0.1:8100/v1 --model chat --rate "$rate" \
      --duration "$DURATION" --input-len 600 --length-dist uniform:0.95 --output-len 32 --ignore-eos \
      --extra-body '{"cache_prompt": false}' --goodput 'ttft:1000 tpot:100' --seed "$seed" \
      --no-progress --out "$OUT/$policy-$rate" >> "$OUT/bench-$policy.txt" 2>&1 || true
  done
  curl -s http://127.0.0.1:8100/metrics | grep '^wave_routing_decisions_total' > "$OUT/decisions-$policy.txt" || true
  kill "$GATEWAY" 2>/dev/null || true; wait "$GATEWAY" 2>/dev/null || true
  echo "== $policy"; grep -E "rate|goodput" "$OUT/bench-$policy.txt" | head -20 || true
done
