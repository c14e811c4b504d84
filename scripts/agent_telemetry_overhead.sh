#!/usr/bin/env bash
# Does the agent's telemetry (its host's device collectors and each request metered) slow the
# engine? `wave agent` with the bundled model pinned, `telemetry:` on and off in alternating
# rounds (on, off, off, on, ...), each round a fresh agent and `wave bench` at CONCURRENCY streams;
# prints each round's aggregate output tokens/s and the agent's own CPU seconds, and the medians
# side by side.
#   bash scripts/agent_telemetry_overhead.sh                    # ROUNDS=6 CONCURRENCY=4 TOKENS=128
# Results under OUT (default out/agent-telemetry-overhead/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out/agent-telemetry-overhead}
ROUNDS=${ROUNDS:-6}
CONCURRENCY=${CONCURRENCY:-4}
TOKENS=${TOKENS:-128}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src WAVE_AGENT_SECRET=sk-agent-overhead-0123456789abcdef
PORT=$("$PY" -c 'from wavefleet.agent.process import free_port; print(free_port())')
agent_config() {  # on|off
  cat <<YAML
host: 127.0.0.1
port: $PORT
secret: {env: WAVE_AGENT_SECRET}
devices: {cpu: {budget: 4GiB}}
models:
  - {name: smollm2, gguf: "bundled:smollm2", context: 2048, slots: $CONCURRENCY, device: cpu, pinned: true}
YAML
  [ "$1" = on ] && echo "telemetry: {cpu_tdp: ${CPU_TDP:-45}}"  # no RAPL in most VMs: the TDP estimate
  return 0
}
: > "$OUT/rounds.txt"
for round in $(seq "$ROUNDS"); do
  # on, off, off, on, on, off, ...: each setting as often first as second
  case $((round % 4)) in 1 | 0) mode=on ;; *) mode=off ;; esac
  agent_config "$mode" > "$OUT/agent-$mode.yaml"
  "$PY" -m wavefleet agent --config "$OUT/agent-$mode.yaml" > "$OUT/agent-$round-$mode.log" 2>&1 &
  agent=$!
  "$PY" -m wavefleet bench --url "http://127.0.0.1:$PORT/v1" --api-key "$WAVE_AGENT_SECRET" --model smollm2 \
    --concurrency "$CONCURRENCY" --num-requests $((CONCURRENCY * 4)) --input-len 64 --output-len "$TOKENS" \
    --ignore-eos --no-progress --wait 120 --out "$OUT/bench-$round-$mode" > "$OUT/bench-$round-$mode.txt" 2>&1
  # what the agent metered (nothing with telemetry off): the proof that the "on" rounds did the work
  curl -sf -H "Authorization: Bearer $WAVE_AGENT_SECRET" "http://127.0.0.1:$PORT/metrics" |
    grep -E '^wave_request_energy_joules_total|^wave_cpu_estimated|^node_rapl|^DCGM_FI_DEV_POWER' > "$OUT/metrics-$round-$mode.txt" || true
  # the agent's own CPU seconds (its Python: proxy, collectors, meter), not its engine's
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$agent/stat")
  kill "$agent"; wait "$agent" 2>/dev/null || true
  "$PY" - "$OUT/bench-$round-$mode/bench.json" "$round" "$mode" "$cpu" >> "$OUT/rounds.txt" <<'PY'
import json, sys
level = json.load(open(sys.argv[1]))["levels"][0]["summary"]
print(sys.argv[2], sys.argv[3], round(level["output_throughput"], 2), level["failed"], sys.argv[4])
PY
  tail -n 1 "$OUT/rounds.txt"
done
"$PY" - "$OUT/rounds.txt" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
by = {m: [float(r[2]) for r in rows if r[1] == m] for m in ("on", "off")}
on, off = statistics.median(by["on"]), statistics.median(by["off"])
print(f"telemetry on  {by['on']}  median {on:.2f} tokens/s")
print(f"telemetry off {by['off']}  median {off:.2f} tokens/s")
print(f"on / off {on / off:.4f}")
cpu = {m: statistics.median(float(r[4]) for r in rows if r[1] == m) for m in ("on", "off")}
print(f"the agent's own CPU per round: on {cpu['on']:.2f} s, off {cpu['off']:.2f} s")
PY
