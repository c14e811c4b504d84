#!/usr/bin/env bash
# On a GPU machine, step 2 of 2 of the sizing check (docs/measurements/2026-11-27-llamacpp-speed-h200.md):
# decode and prefill speed of the synthetic Llama-3.1-8B GGUFs with llama.cpp's CUDA build, single
# stream (llama-bench) and batched (llama-batched-bench), as JSON/text under $OUT.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"
need_device_files
B=$W/build/bin
[ -x "$B/llama-batched-bench" ] || { echo "run scripts/gpu/build_and_prepare.sh first" >&2; exit 2; }
# A machine that keeps the build folder but not large files gets the models made again here.
if [ ! -f "$W/m-Q4_K_M.gguf" ] || [ ! -f "$W/m-Q8_0.gguf" ]; then
  llama_source
  python_packages
  synthetic_gguf "$W/m-f16.gguf" --layers 32 --hidden 4096 --heads 32 --kv-heads 8 --ffn 14336 --vocab 128256
  "$B/llama-quantize" "$W/m-f16.gguf" "$W/m-Q4_K_M.gguf" Q4_K_M 16 > "$OUT/quantize.log" 2>&1
  "$B/llama-quantize" "$W/m-f16.gguf" "$W/m-Q8_0.gguf" Q8_0 16 >> "$OUT/quantize.log" 2>&1
fi
"$B/llama-bench" -m "$W/m-Q4_K_M.gguf,$W/m-Q8_0.gguf,$W/m-f16.gguf" -ngl 99 -p 512 -n 128 -r 2 -o json > "$OUT/llama-bench.json" 2> "$OUT/llama-bench.err"
"$B/llama-bench" -m "$W/m-Q4_K_M.gguf" -ngl 99 -p 0 -n 128 -d 0,4096,16384 -r 3 -o json > "$OUT/llama-bench-depth.json" 2>> "$OUT/llama-bench.err" || true
"$B/llama-batched-bench" -m "$W/m-Q4_K_M.gguf" -ngl 99 -c 70000 -b 2048 -ub 512 -npp 512 -ntg 128 \
  -npl 1,2,4,8,16,32,64,128 --output-format jsonl > "$OUT/batched-q4km.jsonl" 2> "$OUT/batched.err" || true
"$B/llama-batched-bench" -m "$W/m-Q8_0.gguf" -ngl 99 -c 70000 -b 2048 -ub 512 -npp 512 -ntg 128 \
  -npl 1,8,32,128 --output-format jsonl > "$OUT/batched-q8.jsonl" 2>> "$OUT/batched.err" || true
python3 - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for row in json.loads((out / "llama-bench.json").read_text()):
    print(row["model_type"], row["model_size"], "pp" if row["n_prompt"] else "tg", row["n_prompt"] or row["n_gen"], round(row["avg_ts"], 1), "tok/s")
for name in ("batched-q4km.jsonl", "batched-q8.jsonl"):
    for line in (out / name).read_text().splitlines():
        if line.startswith("{"):
            r = json.loads(line); print(name, "pl", r.get("pl"), "S_TG", round(r.get("speed_tg", 0), 1), "S_PP", round(r.get("speed_pp", 0), 1))
PY
