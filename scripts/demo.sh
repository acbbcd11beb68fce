#!/usr/bin/env bash
# Sets up, then shows the bundled stories260K model: its summary, its
# perplexity on the reference token ids, and a greedy continuation of BOS.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
"${BUILD_DIR:-build}"/tools/pbllm-inspect data/stories260K \
  --score data/reference/reference_ppl_tinystories_sample.json --generate 32
