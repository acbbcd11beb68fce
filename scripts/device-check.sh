#!/usr/bin/env bash
# The CUDA checks and benchmarks on a lent GPU machine (its image: CUDA 13,
# cmake, ninja, python3 with torch and transformers; no Debian -dev packages,
# no network). In steps, each well inside one device call:
#   scripts/device-check.sh --prepare   # here: copy the Debian headers, libraries and
#                                       # CMake files the build needs into .device-deps/
#   scripts/device-check.sh [STEP ...]  # there, with carry [".device-deps"]; STEP is
#       build     configure and build into build-device/ (kept between calls)
#       tests     the whole gtest suite (GPU tests included), oracle tests aside
#       sanitize  compute-sanitizer memcheck and racecheck on the kernel tests
#       kernel    scripts/bench_gptq.sh on LLaMA-7B-shaped Linears
#       model     a random LLaMA-7B-shaped fp16 checkpoint quantized with nsamples 128,
#                 seqlen 2048: minutes and peak GPU memory
#       eval      pbllm-eval vs transformers tokens/s on the same GPU
#     (default: build tests sanitize kernel; model and eval each take a call of their own,
#      and build first when the machine is a fresh one)
# Logs and JSON figures go to $OUT (device-out/ when unset); the last lines
# printed are a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=$PWD/.device-deps
ARCH=x86_64-linux-gnu

prepare() {
  # A mirror of the /usr paths, so the CMake package files, which locate
  # everything relative to themselves, work from the copy.
  rm -rf "$DEPS" && mkdir -p "$DEPS/usr/include" "$DEPS/usr/lib/$ARCH/cmake" "$DEPS/usr/share/cmake"
  for dir in CLI spdlog fmt nlohmann gtest gmock; do cp -r "/usr/include/$dir" "$DEPS/usr/include/"; done
  cp /usr/include/{pcre2.h,zlib.h,zconf.h} "$DEPS/usr/include/"
  cp -a /usr/lib/$ARCH/{libgtest*,libgmock*,libspdlog.so*,libfmt.so*,libpcre2-8.so*,libz.so*} "$DEPS/usr/lib/$ARCH/"
  cp -r /usr/lib/$ARCH/cmake/{GTest,spdlog,fmt} "$DEPS/usr/lib/$ARCH/cmake/"
  cp -r /usr/share/cmake/{CLI11,nlohmann_json} "$DEPS/usr/share/cmake/"
  echo "prepared $DEPS ($(du -sh "$DEPS" | cut -f1)); there: scripts/device-check.sh with carry [\".device-deps\"]"
}

# Debian's libspdlog finds its libfmt only through the loader's path.
export LD_LIBRARY_PATH="$DEPS/usr/lib/$ARCH:${LD_LIBRARY_PATH:-}"
OUT=${OUT:-$PWD/device-out}
BUILD=build-device
SUMMARY=()
note() { SUMMARY+=("$*"); echo "== $*"; }

build() {
  [[ -d "$DEPS/usr" ]] || { echo "no $DEPS: run scripts/device-check.sh --prepare here and carry it"; exit 1; }
  local gpu_arch
  gpu_arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1)
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$DEPS/usr" \
    -DPBLLM_CUDA_ARCH_LIST="$gpu_arch" >"$OUT/configure.log" 2>&1 ||
    { tail -40 "$OUT/configure.log"; exit 1; }
  cmake --build "$BUILD" -j "$(nproc)" >"$OUT/build.log" 2>&1 || { grep -m20 -B2 -A10 error "$OUT/build.log"; exit 1; }
  note "build: ok ($(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader), $(python3 -c 'import torch; print("torch", torch.__version__)'))"
}

# A later device call may start on a fresh machine: build first when the binaries are gone.
ensure_built() { [[ -x "$BUILD/tools/pbllm-quantize" && -x "$BUILD/tests/pbllm_tests" ]] || build; }

tests() {
  # The oracle tests need the fixtures ctest makes from this machine's pip packages: run elsewhere.
  "$BUILD/tests/pbllm_tests" --gtest_filter='-*Oracle*' --gtest_brief=1 >"$OUT/tests.log" 2>&1 || true
  grep -E "^\[  (FAILED|PASSED|SKIPPED) " "$OUT/tests.log" | tail -15
  note "tests: $(grep -E '^\[  PASSED' "$OUT/tests.log" || echo 'NOT all passed') $(grep -cE '^\[  FAILED  \] [A-Za-z]' "$OUT/tests.log" || true) failed"
  # The measured GPU-vs-CPU gap of the quantized model, float32 and float16 compute.
  note "tests: $(grep -m1 '^quantized stories260K' "$OUT/tests.log" || echo 'no quantized-perplexity line')"
}

sanitize() {
  command -v compute-sanitizer >/dev/null || { note "sanitize: no compute-sanitizer"; return; }
  local tool
  for tool in memcheck racecheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 9 "$BUILD/tests/pbllm_tests" \
      --gtest_filter='Cuda.CublasHessian*:GptqPb.Cuda*' >"$OUT/sanitizer-$tool.log" 2>&1 &&
      note "sanitize $tool: $(grep -m1 'ERROR SUMMARY' "$OUT/sanitizer-$tool.log")" ||
      note "sanitize $tool: FAILED, see sanitizer-$tool.log: $(grep -m1 'ERROR SUMMARY' "$OUT/sanitizer-$tool.log")"
  done
}

kernel() {
  BUILD_DIR=$BUILD DEVICE=cuda scripts/bench_gptq.sh --json "$OUT/bench_gptq.json" | tee "$OUT/bench_gptq.log"
  # The column loop (the kernel, in the launch shape chosen for this GPU)
  # against the trailing GEMMs tells whether the shape fills the GPU; the
  # thresholds, whether the radix select beats CUDA's one-block kthvalue.
  local line
  while read -r line; do note "kernel: $line"; done < <(grep -oE '^[0-9x]+ +fused.*loop / GEMMs +[0-9.]+x\)( \[kernel: [^]]*\])?|^[0-9x]+ +threshold.*' "$OUT/bench_gptq.log")
}

random_model() {
  local dir=/tmp/pbllm-llama-7b-random
  [[ -f "$dir/config.json" ]] || python3 scripts/make_random_llama.py "$dir" --device cuda >"$OUT/make_model.log" 2>&1
  echo "$dir"
}

model() {
  local dir peak_file
  dir=$(random_model)
  peak_file=$OUT/nvidia-smi-memory.csv
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 >"$peak_file" &
  local sampler=$!
  "$BUILD/tools/pbllm-quantize" "$dir" ptb xnor --low_frac 0.9 --salient_metric hessian \
    --nsamples 128 --seqlen 2048 --device cuda --json "$OUT/quantize_7b.json" >"$OUT/quantize_7b.log" 2>&1 ||
    { kill $sampler; tail -20 "$OUT/quantize_7b.log"; exit 1; }
  kill $sampler
  note "model: $(grep -m1 '^quantized' "$OUT/quantize_7b.log" | cut -d: -f1); nvidia-smi peak $(sort -n "$peak_file" | tail -1) MiB"
}

evaluate() {
  local dir
  dir=$(random_model)
  python3 scripts/bench_eval.py "$dir" --device cuda --max-windows 20 >"$OUT/eval_transformers.log" 2>&1 ||
    echo "transformers failed: $(tail -1 "$OUT/eval_transformers.log")"
  "$BUILD/tools/pbllm-eval" "$dir" --device cuda --datasets wikitext2 --max-windows 20 \
    --json "$OUT/eval_pbllm.json" >"$OUT/eval_pbllm.log" 2>&1 || tail -5 "$OUT/eval_pbllm.log"
  note "eval: $(tail -1 "$OUT/eval_transformers.log")"
  note "eval: pbllm $(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['wikitext2']; print(f\"perplexity {r['perplexity']:.4f}, {r['windows']*2048/r['seconds']:.1f} tokens/s\")" "$OUT/eval_pbllm.json")"
}

if [[ "${1:-}" == --prepare ]]; then
  prepare
  exit 0
fi
mkdir -p "$OUT"
STEPS=("$@")
[[ ${#STEPS[@]} -gt 0 ]] || STEPS=(build tests sanitize kernel)
for step in "${STEPS[@]}"; do
  case $step in
    build) build ;;
    tests | sanitize | kernel | model) ensure_built && "$step" ;;
    eval) ensure_built && evaluate ;;
    *) echo "unknown step '$step'"; exit 2 ;;
  esac
done
printf '%s\n' "--- summary" "${SUMMARY[@]}"
