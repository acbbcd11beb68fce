#!/usr/bin/env bash
# pbllm-qat against PB-LLM's QAT module in python torch on the same model and
# batch shape (2 windows of SEQLEN, gradient accumulation 4): training tokens
# per second of each, the first step left out (warmup).
#   scripts/bench_qat.sh [MODEL_DIR] [SEQLEN] [STEPS]    (default: SmolLM2-135M, 512, 4)
#   REFERENCE=PB_LLM_CHECKOUT scripts/bench_qat.sh ...    (the reference's own module)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M}
SEQLEN=${2:-512}
STEPS=${3:-4}
scripts/setup.sh
[[ -d "$MODEL" ]] || scripts/get-smollm2.sh "$MODEL"
THREADS=${THREADS:-$(nproc)}
for flush in "" --flush-denormal; do
  python3 scripts/bench_qat.py "$MODEL" --seqlen "$SEQLEN" --steps "$STEPS" --threads "$THREADS" $flush \
    ${REFERENCE:+--reference "$REFERENCE"}
done
JSON="${BUILD_DIR:-build}/bench_qat.json"
"${BUILD_DIR:-build}"/tools/pbllm-qat "$MODEL" ptb --train_steps "$STEPS" --seqlen "$SEQLEN" --threads "$THREADS" \
  --log-level warn --json "$JSON" --checkpoint_every 0
python3 -c "
import json, sys
steps = json.load(open(sys.argv[1]))['steps'][1:] or json.load(open(sys.argv[1]))['steps']
tokens = sum(s['tokens_per_second'] * s['seconds'] for s in steps)
print(f'pbllm-qat: {tokens / sum(s[\"seconds\"] for s in steps):.0f} tokens/s')" "$JSON"
