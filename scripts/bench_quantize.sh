#!/usr/bin/env bash
# pbllm-quantize against the reference's run.py (hahnyuan/PB-LLM, transformers 4.35.2 in a venv of its
# own) on random float32 LLaMAs, one after the other: the issue-13 layer job (one LLaMA-7B-shaped layer,
# nsamples 4), then time and peak RSS against width (hidden 512 -> 4096, 2 layers) and against nsamples
# (4 -> 64), plotted with pbllm's FLOP floor. About 20 minutes on 2 cores.
#   REFERENCE=PB_LLM_CHECKOUT scripts/bench_quantize.sh [WORK_DIR]       (default WORK_DIR: build/bench_quantize)
#   WIDTHS=512,1024 NSAMPLES=4,8 LAYER_JOB=0 REFERENCE=... scripts/bench_quantize.sh   (a shorter sweep)
#   OPT_CHECK=1 REFERENCE=... scripts/bench_quantize.sh   (instead: --inverse-factor's OPT check, ~5 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${REFERENCE:?set REFERENCE to a hahnyuan/PB-LLM checkout (its gptq_pb/run.py is the peer)}"
[[ -f "$REFERENCE/gptq_pb/run.py" ]] || { echo "bench_quantize: $REFERENCE/gptq_pb/run.py not found" >&2; exit 1; }
WORK=${1:-${BUILD_DIR:-build}/bench_quantize}
scripts/setup.sh
PYTHON=$(scripts/reference-venv.sh)
if [[ "${OPT_CHECK:-0}" == 1 ]]; then
  exec "$PYTHON" scripts/bench_quantize.py opt-check --reference "$REFERENCE" \
    --pbllm "${BUILD_DIR:-build}/tools/pbllm-quantize" --work "$WORK"
fi
"$PYTHON" scripts/bench_quantize.py run --reference "$REFERENCE" \
  --pbllm "${BUILD_DIR:-build}/tools/pbllm-quantize" --work "$WORK" \
  $([[ "${LAYER_JOB:-1}" == 1 ]] && echo --layer-job) \
  --widths "${WIDTHS:-512,1024,2048,4096}" --nsamples "${NSAMPLES:-4,8,16,32,64}"
"$PYTHON" scripts/bench_quantize.py plot "$WORK/results.json" "$WORK/quantize-scaling.png"
