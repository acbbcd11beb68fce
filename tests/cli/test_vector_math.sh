#!/usr/bin/env bash
# MKL's vector math gives the same bits from its first parallel call on, in
# every process the tools start (pbllm::initialise_vector_math). A resumed
# pbllm-quantize promises the uninterrupted run's bytes; without this, about
# 1 process in 7 computed one thread's chunk of the first cos/sin otherwise.
#   test_vector_math.sh PBLLM_VECTOR_MATH_FIRST_CALL
set -uo pipefail
BIN=$1
source "$(dirname "$0")/lib.sh"
# run MODE: the count of differing values it prints, or "crashed (exit N)"; exits 0 and 1 are answers.
run() {
  local differing status
  differing=$("$BIN" "$1"); status=$?
  if ((status <= 1)); then echo "$differing"; else echo "crashed (exit $status)"; fi
}
for _ in $(seq 40); do
  result=$(run initialised)
  check "set_compute_threads: the first parallel cos/sin equals the second (got: $result)" test "$result" = 0
done
# What it guards against, for the log only: whether MKL races depends on the machine.
raced=0
for _ in $(seq 10); do
  result=$(run raw)
  [[ $result == 0 ]] || raced=$((raced + 1))
done
echo "without it (at::set_num_threads alone): $raced of 10 processes got other bits or failed"
finish
