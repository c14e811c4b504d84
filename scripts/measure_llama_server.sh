#!/usr/bin/env bash
# Aggregate decode tokens/s at 1 and 4 concurrent streams: llama-server (built by ./dev) with 4
# slots (continuous batching, what `wave up` runs) against the same with one slot, both serving
# the bundled SmolLM2-135M-Instruct Q4_1 directly (no gateway), measured with `wave bench`.
#   scripts/measure_llama_server.sh [OUT_DIR] [ROUNDS]      (THREADS=2 by default)
# Rounds alternate the two, so a change in the machine's load hits both alike.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-/tmp/llama-server-bench}
ROUNDS=${2:-2}
THREADS=${THREADS:-2}
mkdir -p "$OUT"

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_ready() {  # wait_ready URL PID
  for _ in $(seq 1 600); do
    kill -0 "$2" 2>/dev/null || { echo "engine exited before it was ready" >&2; return 1; }
    curl -sf "$1/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "engine not ready after 120 s" >&2
  return 1
}

bench() {  # bench NAME ROUND PORT
  "$PY" -m wavefleet bench --url "http://127.0.0.1:$3/v1" --concurrency 1,4 --num-requests 16 \
    --output-len 64 --ignore-eos --no-progress --out "$OUT/$1-$2" > "$OUT/$1-$2.txt"
}

run_engine() {  # run_engine SLOTS ROUND: llama-server with that many slots
  local port pid
  port=$(free_port)
  mapfile -t argv < <("$PY" - "$port" "$THREADS" "$1" <<'PY'
import sys
from wavefleet.models.bundled import bundled_model_path
from wavefleet.engines.llama_server import LlamaServerArgs, find_llama_server
args = LlamaServerArgs(model_path=bundled_model_path(), alias="smollm2-135m-instruct", port=int(sys.argv[1]),
                       context=4096, parallel=int(sys.argv[3]), threads=int(sys.argv[2]))
print("\n".join(args.command(find_llama_server())))
PY
)
  echo "slots-$1 round $2: ${argv[*]}" | tee -a "$OUT/commands.txt"
  "${argv[@]}" > "$OUT/slots-$1-$2.log" 2>&1 &
  pid=$!
  wait_ready "http://127.0.0.1:$port" "$pid"
  bench "slots-$1" "$2" "$port"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

for round in $(seq 1 "$ROUNDS"); do
  run_engine 4 "$round"
  run_engine 1 "$round"
done

"$PY" - "$OUT" <<'PY'
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
for path in sorted(out.glob("*/bench.json")):
    engine = path.parent.name.rsplit("-", 1)[0]
    for level in json.loads(path.read_text())["levels"]:
        s = level["summary"]
        tpot = s["stats"]["tpot"]["median"]
        rows.setdefault((engine, level["label"]), []).append((s["output_throughput"], tpot))
print("| engine | load | runs | aggregate output tok/s (median of runs) | median TPOT ms |")
print("|---|---|---:|---:|---:|")
for (engine, label), values in sorted(rows.items()):
    tps = statistics.median(v[0] for v in values)
    tpot = statistics.median(v[1] for v in values)
    print(f"| {engine} | {label} | {len(values)} | {tps:.1f} | {tpot:.1f} |")
PY
