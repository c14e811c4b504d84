#!/usr/bin/env bash
# On a GPU machine: does the gateway cost anything in front of a fast GPU engine?
# (docs/measurements/2026-11-27-gateway-on-gpu.md) Builds llama-server with CUDA, serves a synthetic
# Llama-3.1-8B-shaped F16 GGUF with 64 slots, and runs `wave bench` against the engine directly and
# through `wave serve`, interleaved, at several concurrencies. Results (bench.json per run and
# gateway_on_gpu.json with the medians) land under $OUT.
# Needs .device/ (and .whl/ without network) from scripts/gpu/prepare.sh.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"
need_device_files
python_packages
llama_source
CMAKE_EXTRA="-DGGML_CUDA_FA=${GGML_CUDA_FA:-ON}" cuda_build llama-server &
BUILD=$!
synthetic_gguf "$W/m-f16.gguf" --layers 32 --hidden 4096 --heads 32 --kv-heads 8 --ffn 14336 --vocab 128256
wait "$BUILD" || { echo "the llama-server build failed: $OUT/build.log" >&2; exit 1; }
KEY=$(python3 -c 'import secrets; print("sk-gpu-bench-" + secrets.token_urlsafe(32))')
"$W/build/bin/llama-server" -m "$W/m-f16.gguf" -ngl 99 -np 64 -c 65536 --metrics --host 127.0.0.1 --port 8000 \
  --alias llama-3.1-8b-synthetic > "$OUT/llama-server.log" 2>&1 &
ENGINE=$!
python3 -m wavefleet serve --port 8100 --backend gpu=http://127.0.0.1:8000,kind=llamacpp --api-key "$KEY" \
  > "$OUT/gateway.log" 2>&1 &
GATEWAY=$!
trap 'kill $ENGINE $GATEWAY 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf http://127.0.0.1:8000/health >/dev/null && break; sleep 1; done
for _ in $(seq 30); do curl -sf http://127.0.0.1:8100/health >/dev/null && break; sleep 1; done
nvidia-smi --query-gpu=name,memory.used --format=csv
for round in 1 2; do
  for c in 1 16 64; do
    n=$(( c == 1 ? 12 : c * 4 ))
    for target in direct gateway; do
      url=http://127.0.0.1:8000/v1; [ "$target" = gateway ] && url=http://127.0.0.1:8100/v1
      python3 -m wavefleet bench --url "$url" --api-key "$KEY" --model llama-3.1-8b-synthetic \
        --concurrency "$c" --num-requests "$n" --input-len 256 --output-len 128 --ignore-eos --no-progress \
        --out "$W/runs/$target-c$c-r$round" > "$W/runs-$target-c$c-r$round.txt" 2>&1 || true
      echo "$target c=$c round=$round: $(tail -n 3 "$W/runs-$target-c$c-r$round.txt" | tr '\n' ' ' | cut -c1-200)"
    done
  done
done
python3 - "$W/runs" "$OUT/gateway_on_gpu.json" <<'PY'
import json, sys, pathlib, statistics
runs = pathlib.Path(sys.argv[1]); rows = {}
for path in sorted(runs.glob("*/bench.json")):
    target, conc, _ = path.parent.name.split("-")
    data = json.loads(path.read_text())
    summary = data["levels"][0]["summary"]
    rows.setdefault((target, conc), []).append({
        "output_throughput": summary["output_throughput"], "completed": summary["completed"],
        "failed": summary["failed"], "median_ttft_ms": summary["stats"]["ttft"]["median"],
        "median_tpot_ms": summary["stats"]["tpot"]["median"]})
out = {}
for (target, conc), levels in sorted(rows.items()):
    def med(key):
        vals = [l.get(key) for l in levels if isinstance(l.get(key), (int, float))]
        return statistics.median(vals) if vals else None
    out[f"{target}.{conc}"] = {k: med(k) for k in ("output_throughput", "median_ttft_ms", "median_tpot_ms", "completed", "failed")}
    print(target, conc, out[f"{target}.{conc}"])
pathlib.Path(sys.argv[2]).write_text(json.dumps(out, indent=2))
PY
cp "$W"/runs-*.txt "$OUT/" 2>/dev/null || true
