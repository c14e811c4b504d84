#!/usr/bin/env bash
# On a GPU machine: time to first token of a RAG answer (`rag/docs1k`) over a 1,000-document corpus,
# the seed's goal being <= 500 ms at P50 with an 8B-shaped model on the GPU.
#   chat:  llama-server, CUDA, synthetic Llama-3.1-8B-shaped F16 GGUF (scripts/gpu/synthetic_gguf.py)
#   embed: llama-server --embedding on the CPU, the bundled all-MiniLM-L6-v2 as `wave rag model`
#          converts it, quantized to Q8_0 by llama-quantize so that it travels (prepare_rag.sh)
#   wave serve in front of both, with a `rag:` section; `wave rag ingest` of 1,000 Markdown files
#   cut from the pydoc topics through the gateway; scripts/rag_ttft.py asks 100 questions in turn.
# Results land under $OUT: ingest.txt, ttft.json, the logs.
#
#   bash scripts/gpu/rag_on_gpu.sh           # build (if needed), GGUFs, engines, ingest, measure
#
# Needs .device/ and .whl/ (scripts/gpu/prepare.sh) and .device-rag/ (scripts/gpu/prepare_rag.sh):
# the embedding model as a Q8_0 GGUF for the engine, its package's tokenizer and configuration for
# chunking (the safetensors weights left empty: the engine reads the GGUF), and the rag extra's
# wheels, small enough to travel beside .device/ and .whl/ in one transfer. (llama-cpp-python is
# not needed here: llama-server embeds.)
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"
need_device_files
python_packages
RAG_SITE=$W/rag-site
EMBED_GGUF=$PWD/.device-rag/embed.q8_0.gguf
for file in "$EMBED_GGUF" .device-rag/package.tar; do
  [ -f "$file" ] || { echo "$file is missing: run 'bash scripts/gpu/prepare_rag.sh' and bring .device-rag/ along" >&2; exit 2; }
done
if [ ! -f "$RAG_SITE/.complete" ]; then
  mkdir -p "$RAG_SITE"
  tar xf .device-rag/package.tar -C "$RAG_SITE"
  python3 -m pip install -q --no-index --no-deps --target "$RAG_SITE" .device-rag/wheels/*.whl
  # hnswlib ships only its source: built here with this Python's setuptools, pybind11 and numpy
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$RAG_SITE" \
    .device-rag/wheels/hnswlib-*.tar.gz
  touch "$RAG_SITE/.complete"
fi
export PYTHONPATH=$PYTHONPATH:$RAG_SITE
python3 -c "import hnswlib, tokenizers, pypdf" || { echo "the rag extra did not install: see above" >&2; exit 2; }
llama_source
export PYTHONPATH=$PYTHONPATH:$W/llama.cpp/gguf-py PYTHONUNBUFFERED=1
KEY=sk-rag-gpu-0123456789
RAG=$W/rag

cuda_build llama-server
synthetic_gguf "$W/m-f16.gguf" --layers 32 --hidden 4096 --heads 32 --kv-heads 8 --ffn 14336 --vocab 128256
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
