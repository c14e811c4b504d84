#!/usr/bin/env bash
# On a GPU machine: the fleet runtime's goals on a real GPU (docs/measurements/2026-12-03-agent-gpu.md).
#   cold    scripts/agent_bench.py cold: a request for an unloaded Llama-3.1-8B-shaped F16 GGUF through
#           `wave agent` to its first token, against the same llama-server command started by hand
#   truth   (STEPS=truth) scripts/agent_bench.py truth: the sizing engine's estimate against NVML's per-process
#           memory for 8B-, 1B- and SmolLM2-135M-shaped GGUFs at several contexts and slot counts
#   batch   `wave up --model <SmolLM2-135M-shaped GGUF> --slots 16` (agent + gateway, the GPU found by
#           NVML) and the 8B-shaped file, `wave bench` at 1 and 16 concurrent streams, three rounds
# The weights are synthetic (scripts/gpu/synthetic_gguf.py with SmolLM2's tokenizer): speed and
# memory depend on the shapes, not on the values. Results land under $OUT (cold.json, truth.json,
# up-*/ and 8b-*/ bench folders, logs).
#   bash scripts/gpu/agent_on_gpu.sh build   # CUDA build of llama-server and the GGUFs (kept in .gpuwork/)
#   bash scripts/gpu/agent_on_gpu.sh run     # STEPS (default: batch:m135m cold batch:m-f16) in turn
# Needs .device/ (and .whl/ without network) from scripts/gpu/prepare.sh.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"
need_device_files
STEP=${1:-all}
REPEATS=${REPEATS:-5}
ROUNDS=${ROUNDS:-3}

python_packages
gguf() {  # name layers hidden heads kv-heads ffn vocab
  synthetic_gguf "$W/$1.gguf" --layers "$2" --hidden "$3" --heads "$4" --kv-heads "$5" --ffn "$6" --vocab "$7"
}
if [ "$STEP" != run ]; then
  llama_source
  cuda_build llama-server &
  BUILD=$!
  gguf m-f16 32 4096 32 8 14336 128256 &
  gguf m1b 16 2048 32 8 8192 128256 &
  gguf m135m 30 576 9 3 1536 49152 &
  wait "$BUILD" || { echo "the llama-server build failed: $OUT/build.log" >&2; exit 1; }
  wait
  echo "built: $(ls -la "$W/build/bin/llama-server")"
fi
[ "$STEP" = build ] && exit 0

SERVER=$W/build/bin/llama-server
[ -x "$SERVER" ] || { echo "$SERVER is missing: run 'bash $0 build' first" >&2; exit 2; }
export PATH=$W/build/bin:$PATH  # `wave up` finds llama-server on PATH
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
GPU_FLAG=(--gpu "${GPU:-0}")
[ "${GPU:-0}" = cpu ] && GPU_FLAG=()  # GPU=cpu: a dry run of this script on a machine without one

cold() {
  python3 scripts/agent_bench.py cold "${GPU_FLAG[@]}" --gguf "$W/m-f16.gguf" --llama-server "$SERVER" \
    --context 8192 --slots 4 --threads 4 --repeats "$REPEATS" --json > "$OUT/cold.json" 2> "$OUT/cold.log"
}
truth() {
  python3 scripts/agent_bench.py truth "${GPU_FLAG[@]}" --llama-server "$SERVER" --threads 4 \
    --truth "$W/m-f16.gguf:8192:4" --truth "$W/m-f16.gguf:32768:1" --truth "$W/m-f16.gguf:4096:16" \
    --truth "$W/m1b.gguf:8192:4" --truth "$W/m1b.gguf:131072:1" --truth "$W/m135m.gguf:4096:16" \
    --json > "$OUT/truth.json" 2> "$OUT/truth.log"
}
batch() {  # MODEL: wave up on its GGUF, wave bench at 1 and 16 streams, $ROUNDS rounds
  local model=$1 key up round
  key=$(python3 -c 'import secrets; print("sk-gpu-up-" + secrets.token_urlsafe(32))')
  python3 -m wavefleet up --model "$W/$model.gguf" --slots 16 --ctx 4096 --port 18080 --api-key "$key" \
    > "$OUT/up-$model.log" 2>&1 &
  up=$!
  for _ in $(seq 240); do curl -sf http://127.0.0.1:18080/health > /dev/null && break; sleep 0.5; done
  for round in $(seq "$ROUNDS"); do
    python3 -m wavefleet bench --url http://127.0.0.1:18080/v1 --api-key "$key" --concurrency 1,16 \
      --num-requests 32 --input-len 64 --output-len "${OUTPUT_LEN:-256}" --ignore-eos --no-progress --wait 120 \
      --out "$OUT/$model-$round" > "$OUT/$model-$round.txt" 2>&1 || true
  done
  kill "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
}
# the order puts what is cheapest and most wanted first, so a cut-short run still brings it back
for step in ${STEPS:-batch:m135m cold batch:m-f16}; do
  case $step in
    cold) cold ;;
    truth) truth ;;
    batch:*) batch "${step#batch:}" ;;
    *) echo "unknown step $step (cold, truth, batch:MODEL)" >&2; exit 2 ;;
  esac
done
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
if (out / "cold.json").is_file():
    cold = json.loads((out / "cold.json").read_text())["cold"]
    print("cold", json.dumps(cold["median"]), "met", cold["met"])
if (out / "truth.json").is_file():
    for row in json.loads((out / "truth.json").read_text())["truth"]["rows"]:
        print("truth", row["model"], row["context"], row["slots"], row["estimate"], row["process"],
              row["device_used_delta"], row["error_vs_process"], row["error_vs_device_delta"])
for bench in sorted(out.glob("*-[0-9]/bench.json")):
    levels = json.loads(bench.read_text()).get("levels") or []
    print(bench.parent.name, [(lv["label"], round(lv["summary"]["output_throughput"], 1), lv["summary"]["failed"])
                              for lv in levels])
PY
