#!/usr/bin/env bash
# Sets up, then runs the main job on the bundled demo model and data:
# quantizes stories260K with GPTQ-PB (calibration ptb, xnor, low_frac 0.9,
# salient metric hessian, 8-bit salient weights) and prints its perplexity on
# WikiText-2 test and PTB test next to the full-precision model's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BIN=${BUILD_DIR:-build}/tools
OUT=${DEMO_OUT:-output/demo}
mkdir -p "$OUT"
"$BIN"/pbllm-eval data/stories260K --datasets wikitext2,ptb --json "$OUT/fp.json"
"$BIN"/pbllm-quantize data/stories260K ptb xnor --low_frac 0.9 --salient_metric hessian --high_bit 8 \
  --nsamples 32 --seqlen 512 --eval wikitext2,ptb --save "$OUT/stories260K-pb10" --json "$OUT/quantized.json"
python3 - "$OUT/fp.json" "$OUT/quantized.json" <<'PY'
import json, sys
fp, quantized = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["perplexity"]
print("\nstories260K perplexity   full precision   PB-LLM (10% salient at 8 bits, 90% xnor)")
for name in ("wikitext2", "ptb"):
    print(f"{name:<24} {fp[name]['perplexity']:>14.2f}   {quantized[name]['perplexity']:>10.2f}")
PY
echo "quantized model: $OUT/stories260K-pb10 (loads in transformers and pbllm-eval)"
