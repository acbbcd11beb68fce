#!/usr/bin/env bash
# Fuzzes every reader of untrusted files (tests/fuzz: safetensors, torch .bin,
# config.json, tokenizer.json, tokenizer.model, c4 JSON lines) for SECONDS
# each with libFuzzer, ASan and UBSan, from the checked-in seed corpus. New
# inputs go to build-asan/fuzz-corpus/<target>; a finding stops with its
# input saved as build-asan/fuzz-findings/<target>-crash-*.
#   scripts/fuzz.sh [SECONDS]      (default 30: CI's smoke run)
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-30}
BUILD_DIR=${BUILD_DIR:-build-asan}
[[ -x "$BUILD_DIR/tests/fuzz_safetensors" ]] || BUILD_DIR=$BUILD_DIR scripts/sanitize.sh -R '^$' >/dev/null
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
mkdir -p "$BUILD_DIR/fuzz-findings"
found=0
for target in ${TARGETS:-safetensors torch_pickle config tokenizer_json sentencepiece c4 packed}; do
  work="$BUILD_DIR/fuzz-corpus/$target" log="$BUILD_DIR/fuzz-$target-${SECONDS_EACH}s.log"
  mkdir -p "$work"
  "$BUILD_DIR/tests/fuzz_$target" -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=4096 \
    -artifact_prefix="$BUILD_DIR/fuzz-findings/$target-" -print_final_stats=1 \
    "$work" "tests/fuzz/corpus/$target" >"$log" 2>&1
  status=$?
  runs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  if ((status)); then
    grep -aE "ERROR|SUMMARY|what\(\)|#[0-9] " "$log" | head -n 12
    echo "fuzz: $target: a finding after ${runs:-?} executions (input in $BUILD_DIR/fuzz-findings/)"
    found=1
  else
    echo "fuzz: $target: ${runs:-?} executions in ${SECONDS_EACH} s, no finding"
  fi
done
exit $found
