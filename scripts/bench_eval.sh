#!/usr/bin/env bash
# pbllm-eval against transformers on the same model, text and windows: the
# perplexity (they must agree) and tokens per second of each.
#   scripts/bench_eval.sh [MODEL_DIR] [MAX_WINDOWS]   (default: SmolLM2-135M, 20)
#   DEVICE=cuda scripts/bench_eval.sh MODEL_DIR        (fp16 on the GPU, both sides)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M}
WINDOWS=${2:-20}
scripts/setup.sh
[[ -d "$MODEL" ]] || scripts/get-smollm2.sh "$MODEL"
THREADS=$(nproc)
DEVICE=${DEVICE:-cpu}
python3 scripts/bench_eval.py "$MODEL" --max-windows "$WINDOWS" --threads "$THREADS" --device "$DEVICE"
"${BUILD_DIR:-build}"/tools/pbllm-eval "$MODEL" --datasets wikitext2 --max-windows "$WINDOWS" --threads "$THREADS" \
  --device "$DEVICE" \
  --log-level warn --json "${BUILD_DIR:-build}/bench_eval.json"
python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['wikitext2']; print(f\"pbllm: {r['windows']*2048/r['seconds']:.1f} tokens/s\")" \
  "${BUILD_DIR:-build}/bench_eval.json"
