#!/usr/bin/env bash
# The CPU-only build (-DPBLLM_CUDA=OFF: nvcc is not involved) compiled with
# clang, AddressSanitizer and UndefinedBehaviorSanitizer into build-asan/,
# with the libFuzzer targets; then every test through CTest under the
# sanitizers. CI runs it after scripts/test.sh. Arguments go to ctest.
#   scripts/sanitize.sh [-R PATTERN]
set -euo pipefail
cd "$(dirname "$0")/.."
export BUILD_DIR=${BUILD_DIR:-build-asan}
EXTRA_APT_PACKAGES="clang libomp-dev" CXX=clang++ CC=clang \
  CMAKE_ARGS="-DPBLLM_CUDA=OFF -DPBLLM_FUZZ=ON" scripts/setup.sh
# LibTorch is not instrumented: its allocations kept until exit are not ours to report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" "$@"
