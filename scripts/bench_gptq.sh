#!/usr/bin/env bash
# GPTQ-PB on LLaMA-7B-shaped Linears with random positive-definite Hessians:
# the fused path (the CUDA kernel on a GPU) vs its own trailing-update GEMMs vs
# the plain-LibTorch restated loop, on one device (tests/bench_gptq_pb.cpp).
#   scripts/bench_gptq.sh                      # cuda when a GPU is present, else cpu
#   DEVICE=cpu SHAPES=1024x1024 scripts/bench_gptq.sh [--skip-restated] [--json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
[[ -x "$BUILD_DIR/tests/pbllm_bench_gptq" ]] || scripts/setup.sh
if [[ -z "${DEVICE:-}" ]]; then
  DEVICE=$(python3 -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
fi
SHAPES=${SHAPES:-4096x4096,11008x4096,4096x11008}
"$BUILD_DIR/tests/pbllm_bench_gptq" --device "$DEVICE" --shapes "$SHAPES" "$@"
