#!/usr/bin/env bash
# The CUDA checks in one call, for a lent GPU machine (CUDA 13, cmake, ninja,
# python3 with torch; no Debian -dev packages, no network).
#   scripts/device-check.sh --prepare   # here: copy the headers and libraries the build
#                                       # needs into .device-deps/ (git-ignored)
#   scripts/device-check.sh             # there (run tool, carry .device-deps): build,
#                                       # CUDA tests, compute-sanitizer, benchmarks into $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=.device-deps
if [[ "${1:-}" == --prepare ]]; then
  rm -rf "$DEPS" && mkdir -p "$DEPS/include" "$DEPS/lib"
  for dir in CLI spdlog fmt nlohmann gtest gmock; do cp -r "/usr/include/$dir" "$DEPS/include/"; done
  cp /usr/include/pcre2.h "$DEPS/include/"
  cp -a /usr/lib/x86_64-linux-gnu/{libgtest*,libgmock*,libspdlog.so*,libfmt.so*,libpcre2-8.so*} "$DEPS/lib/"
  cp -r /usr/lib/x86_64-linux-gnu/cmake/{GTest,spdlog,CLI11,fmt} "$DEPS/lib/" 2>/dev/null || true
  cp -r /usr/share/cmake/{CLI11,nlohmann_json} "$DEPS/lib/" 2>/dev/null || true
  echo "prepared $DEPS ($(du -sh "$DEPS" | cut -f1)); run: scripts/device-check.sh with carry [\"$DEPS\"]"
  exit 0
fi
OUT=${OUT:-device-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/$DEPS/lib:${LD_LIBRARY_PATH:-}"
GPU_ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1)
cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$PWD/$DEPS/lib" -DCMAKE_CXX_FLAGS="-I$PWD/$DEPS/include" \
  -DPCRE2_INCLUDE_DIRS="$PWD/$DEPS/include" -DCMAKE_CUDA_ARCHITECTURES="${GPU_ARCH/./}" \
  >"$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
cmake --build build-device -j >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
build-device/tests/pbllm_tests --gtest_filter='Cuda*:GptqPb*' 2>&1 | tee "$OUT/cuda-tests.log" | tail -20
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    compute-sanitizer --tool "$tool" build-device/tests/pbllm_tests \
      --gtest_filter='Cuda.Fp16Conversion*:GptqPb.CudaKernel*' >"$OUT/sanitizer-$tool.log" 2>&1
    tail -3 "$OUT/sanitizer-$tool.log"
  done
fi
build-device/tools/pbllm-eval data/stories260K --device cuda --datasets wikitext2,ptb 2>&1 | tail -4 | tee "$OUT/eval-cuda.log"
