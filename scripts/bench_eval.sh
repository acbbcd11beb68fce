#!/usr/bin/env bash
# pbllm-eval against transformers on the same model, text and windows, and optionally against the
# reference's own llama_eval: the perplexity (they must agree to the dtype's rounding) and tokens per
# second of each.
#   scripts/bench_eval.sh [MODEL_DIR] [MAX_WINDOWS]   (default: SmolLM2-135M, 20; float32 on the CPU)
#   DTYPE=bfloat16 scripts/bench_eval.sh              (both sides in bfloat16: fast where the CPU has
#                                                      AVX512-BF16 or AMX)
#   REFERENCE=PB_LLM_CHECKOUT scripts/bench_eval.sh   (also hahnyuan/PB-LLM's llama_eval, transformers
#                                                      4.35.2 in a venv of its own, in the checkpoint's dtype)
#   DEVICE=cuda scripts/bench_eval.sh MODEL_DIR        (fp16 on the GPU, both sides)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M}
WINDOWS=${2:-20}
BUILD=${BUILD_DIR:-build}
scripts/setup.sh
[[ -d "$MODEL" ]] || scripts/get-smollm2.sh "$MODEL"
THREADS=$(nproc)
DEVICE=${DEVICE:-cpu}
DTYPE=${DTYPE:-auto}
python3 scripts/bench_eval.py "$MODEL" --max-windows "$WINDOWS" --threads "$THREADS" --device "$DEVICE" \
  --dtype "$DTYPE" --save-ids "$BUILD/bench_eval_ids.pt"
"$BUILD"/tools/pbllm-eval "$MODEL" --datasets wikitext2 --max-windows "$WINDOWS" --threads "$THREADS" \
  --device "$DEVICE" --compute-dtype "$DTYPE" --log-level warn --json "$BUILD/bench_eval.json"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); r=j['wikitext2']; print(f\"pbllm ({j['meta']['compute_dtype']}): wikitext2 perplexity {r['perplexity']:.4f}, {r['windows']*2048/r['seconds']:.1f} tokens/s\")" \
  "$BUILD/bench_eval.json"
if [[ -n "${REFERENCE:-}" ]]; then
  [[ -f "$REFERENCE/gptq_pb/eval_ppl_utils.py" ]] || { echo "bench_eval: $REFERENCE/gptq_pb/eval_ppl_utils.py not found" >&2; exit 1; }
  PYTHON=$(scripts/reference-venv.sh)
  mkdir -p "$BUILD/bench_eval_reference"  # where run.py's LLaMA-path link is made
  IDS=$(realpath "$BUILD/bench_eval_ids.pt")
  SCRIPT=$(realpath scripts/bench_eval.py)
  MODEL_PATH=$(realpath "$MODEL")
  (cd "$BUILD/bench_eval_reference" && "$PYTHON" -W ignore "$SCRIPT" "$MODEL_PATH" \
     --max-windows "$WINDOWS" --threads "$THREADS" --reference "$REFERENCE" --ids "$IDS")
fi
