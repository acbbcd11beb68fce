#!/usr/bin/env bash
# MKL's vector math gives the same bits from its first parallel call on, in
# every process the tools start (pbllm::initialise_vector_math). A resumed
# pbllm-quantize promises the uninterrupted run's bytes; without this, about
# 1 process in 7 computed one thread's chunk of the first cos/sin otherwise.
#   test_vector_math.sh PBLLM_VECTOR_MATH_FIRST_CALL
set -uo pipefail
BIN=$1
source "$(dirname "$0")/lib.sh"
runs=40 raced=0
for _ in $(seq $runs); do
  differing=$("$BIN" initialised)
  check "set_compute_threads: the first parallel cos/sin is the second's ($differing values differ)" test "$differing" = 0
done
for _ in $(seq 20); do [[ $("$BIN" raw) == 0 ]] || raced=$((raced + 1)); done
echo "without it (at::set_num_threads alone): $raced of 20 processes got other bits"
finish
