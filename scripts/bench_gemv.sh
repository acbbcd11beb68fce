#!/usr/bin/env bash
# The packed GEMV (one token of generation) against float32 at::mv on
# LLaMA-7B-shaped Linears, with 1 and 2 threads (tests/bench_packed_gemv.cpp).
#   scripts/bench_gemv.sh [--shapes 4096x4096,...] [--repeat N]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
[[ -x "$BUILD_DIR/tests/pbllm_bench_gemv" ]] || scripts/setup.sh
for threads in 1 2; do
  "$BUILD_DIR/tests/pbllm_bench_gemv" --threads "$threads" "$@"
done
