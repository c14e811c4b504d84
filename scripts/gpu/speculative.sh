#!/usr/bin/env bash
# On a GPU machine: llama.cpp speculative decoding (--model-draft), the draft on the GPU and the
# draft on the CPU, against the same target without a draft. Prints and writes (under $OUT):
#   speculative.json   {"runs": [{"draft_on", "speedup", "acceptance", "tokens_per_s", ...}], ...}
#   *.log              each llama-speculative / llama-cli run
# Copy speculative.json to docs/measurements/speculative.json: `wave plan` then cites it for the
# seed's "2.5x from a CPU draft" claim.
#
# Weights: a GPU machine may reach no model hub, so the pair is synthetic (scripts/gpu/synthetic_gguf.py,
# SmolLM2's tokenizer from .device/tokenizer.json):
#   draft   Llama-3.2-1B-shaped (16 layers, 2048 hidden), random weights
#   target  the draft's 16 layers plus 112 layers whose attention output and FFN down projection
#           are zero, so the target computes the draft's function at about 8B parameters of cost
#           (acceptance close to the best case: the draft and target agree up to quantization),
#   indep   a draft of the same shape with other random weights (acceptance close to zero).
# Both drafts are run on the GPU (-ngld 99) and on the CPU (-ngld 0); the speed-up is the run's
# decode speed over the target's alone. Real pairs (e.g. SmolLM2-135M as the draft of a larger
# SmolLM2) can replace them: TARGET=/path/target.gguf DRAFT=/path/draft.gguf bash ... run.
#   bash scripts/gpu/speculative.sh build   # CUDA build of llama-speculative and llama-cli (kept)
#   bash scripts/gpu/speculative.sh run     # models, runs, speculative.json
# Needs .device/ (and .whl/ without network) from scripts/gpu/prepare.sh.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"
need_device_files
STEP=${1:-all}
B=$W/build/bin
N_PREDICT=${N_PREDICT:-256}
DRAFT_MAX=${DRAFT_MAX:-4}
THREADS=${THREADS:-$(nproc)}
PROMPT=${PROMPT:-"Write a short story about a lighthouse keeper who finds a message in a bottle."}

if [ "$STEP" != run ]; then
  cuda_build llama-speculative llama-cli llama-quantize
  echo "built: $(ls "$B"/llama-speculative "$B"/llama-cli)"
fi
[ "$STEP" = build ] && exit 0
llama_source
python_packages

gguf() {  # out layers extra-zero-layers seed
  synthetic_gguf "$1" --layers "$2" --zero-layers "$3" --seed "$4" --hidden 2048 --heads 32 --kv-heads 8 \
    --ffn 8192 --vocab 49152
}
if [ -z "${TARGET:-}" ]; then
  gguf "$W/spec-draft-f16.gguf" 16 0 1 & gguf "$W/spec-target-f16.gguf" 16 112 1 & gguf "$W/spec-indep-f16.gguf" 16 0 2 &
  wait
  for m in draft target indep; do
    [ -f "$W/spec-$m.gguf" ] || "$B/llama-quantize" "$W/spec-$m-f16.gguf" "$W/spec-$m.gguf" Q4_K_M "$THREADS" >> "$OUT/quantize.log" 2>&1
  done
  TARGET=$W/spec-target.gguf; DRAFT=$W/spec-draft.gguf; INDEP=$W/spec-indep.gguf
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/nvidia-smi.csv"
lscpu | grep -E "Model name|^CPU\(s\)" | tee "$OUT/cpu.txt"

common=(-p "$PROMPT" -n "$N_PREDICT" --temp 0 --seed 1 -c 4096 -t "$THREADS" -ngl 99)
# The target alone: its decode speed is the baseline.
"$B/llama-cli" -m "$TARGET" "${common[@]}" -no-cnv > "$OUT/target-alone.log" 2>&1 || true
run() {  # name draft-file draft-gpu-layers
  "$B/llama-speculative" -m "$TARGET" -md "$2" -ngld "$3" --draft-max "$DRAFT_MAX" --draft-min 1 \
    --draft-p-min 0 "${common[@]}" > "$OUT/$1.log" 2>&1 || true
}
run draft-gpu "$DRAFT" 99
run draft-cpu "$DRAFT" 0
[ -n "${INDEP:-}" ] && { run indep-gpu "$INDEP" 99; run indep-cpu "$INDEP" 0; }

python3 - "$OUT" "$DRAFT_MAX" <<'PY'
import json, pathlib, re, sys
out, draft_max = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def eval_speed(text):
    # llama-cli / llama-speculative print "decoded N tokens in S seconds, speed: X t/s" or an eval line
    m = re.search(r"decoded\s+(\d+)\s+tokens in\s+([\d.]+) seconds, speed:\s+([\d.]+) t/s", text)
    if m: return float(m.group(3))
    m = re.search(r"eval time =\s+[\d.]+ ms /\s+\d+ runs\s+\(\s*[\d.]+ ms per token,\s+([\d.]+) tokens per second\)", text)
    return float(m.group(1)) if m else None
base = eval_speed((out / "target-alone.log").read_text(errors="replace"))
runs = []
for log in sorted(out.glob("*-?pu.log")):
    text = log.read_text(errors="replace")
    speed = eval_speed(text)
    accept = re.search(r"accept\s*=\s*([\d.]+)%", text)
    drafted = re.search(r"n_drafted\s*=\s*(\d+)", text)
    accepted = re.search(r"n_accept\s*=\s*(\d+)", text)
    name = log.stem
    runs.append({
        "name": name, "draft_on": name.split("-")[-1], "pair": "agreeing" if name.startswith("draft") else "independent",
        "tokens_per_s": speed, "baseline_tokens_per_s": base,
        "speedup": round(speed / base, 3) if speed and base else 0.0,
        "acceptance": round(float(accept.group(1)) / 100, 4) if accept else 0.0,
        "n_drafted": int(drafted.group(1)) if drafted else None, "n_accept": int(accepted.group(1)) if accepted else None,
        "draft_max": draft_max,
    })
result = {"tool": "llama.cpp llama-speculative --model-draft", "baseline": "llama-cli, target alone, same prompt and -n",
          "gpu": (out / "nvidia-smi.csv").read_text().strip(), "cpu": (out / "cpu.txt").read_text().strip(), "runs": runs}
(out / "speculative.json").write_text(json.dumps(result, indent=2) + "\n")
print(f"target alone: {base} tokens/s")
for r in runs:
    print(f"{r['name']:10s} draft on {r['draft_on']}: {r['tokens_per_s']} tokens/s, speed-up {r['speedup']}x, acceptance {r['acceptance']:.0%}")
PY
