#!/usr/bin/env bash
# Forward throughput, pbllm vs transformers, on a random OPT-125m-shaped model
# (made once under models/bench-opt-125m), same seqlen and threads.
#   scripts/bench_forward.sh [SEQLEN] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
SEQLEN=${1:-2048}
THREADS=${2:-$(nproc)}
scripts/setup.sh
python3 scripts/bench_forward.py models/bench-opt-125m --seqlen "$SEQLEN" --threads "$THREADS"
"${BUILD_DIR:-build}"/tools/pbllm-bench forward models/bench-opt-125m --seqlen "$SEQLEN" --threads "$THREADS" --log-level warn
