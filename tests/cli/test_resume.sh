#!/usr/bin/env bash
# Resume after a kill (docs/DESIGN.md, "Resume"): pbllm-quantize killed
# after layer k (SIGKILL, SIGTERM) and run again gives the uninterrupted
# run's file byte for byte, on stories260K and a random 4-layer LLaMA; a
# changed argument or input refuses to resume and names the change.
# Every run of a comparison uses the same command line, in its own folder,
# so the packed file's recorded command is the same too.
#   test_resume.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
BUILD=$(realpath "$1") SOURCE=$(realpath "$2")
QUANTIZE="$BUILD/tools/pbllm-quantize"
source "$(dirname "$0")/lib.sh"
STORIES="$SOURCE/data/stories260K" LLAMA="$SCRATCH/llama4"
python3 "$SOURCE/scripts/make_random_llama.py" "$LLAMA" --hidden 128 --intermediate 344 --layers 4 --heads 4 \
  --vocab 32000 --device cpu >/dev/null || { echo "FAILED: make_random_llama.py"; exit 1; }

# run_in FOLDER [VAR=VALUE...] pbllm-quantize ARGS...: runs in SCRATCH/FOLDER; the exit status goes to $status.
run_in() {
  local folder="$SCRATCH/$1"; shift
  local env=()
  while [[ $1 == *=* ]]; do env+=("$1"); shift; done
  mkdir -p "$folder"
  (cd "$folder" && env "${env[@]}" "$QUANTIZE" "$@" >out 2>err)
  status=$?
}

# resume_case NAME WEIGHTS_FILE K SIGNAL EXPECTED_STATUS ARGS...
resume_case() {
  local name=$1 file=$2 k=$3 signal=$4 expected=$5; shift 5
  run_in "$name.full" "$@" --save q
  check "$name: the uninterrupted run exits 0" test $status -eq 0
  run_in "$name.cut" PBLLM_TEST_SIGNAL="layer:$k:$signal" "$@" --save q
  check "$name: SIG$signal after layer $k exits $expected (got $status)" test $status -eq "$expected"
  check "$name: layers 0..$k kept" test "$(ls "$SCRATCH/$name.cut/q.pbllm-state" | grep -c '^layer-')" -eq $((k + 1))
  check "$name: no output folder after the kill" test ! -e "$SCRATCH/$name.cut/q"
  [[ $signal == KILL ]] || check "$name: SIG$signal says how to resume" \
    grep -q "layers 0..$k are kept in q.pbllm-state: run the same command again" "$SCRATCH/$name.cut/err"
  run_in "$name.cut" "$@" --save q
  check "$name: the rerun exits 0" test $status -eq 0
  check "$name: the rerun reads the kept layers back" grep -q "resuming: layers 0..$k are read back" "$SCRATCH/$name.cut/err"
  check "$name: identical $file" cmp "$SCRATCH/$name.full/q/$file" "$SCRATCH/$name.cut/q/$file"
  check "$name: no state left" test ! -e "$SCRATCH/$name.cut/q.pbllm-state"
}

SMALL=(ptb xnor --nsamples 8 --seqlen 128 --log-level info)
resume_case stories-kill model.safetensors 2 KILL 137 "$STORIES" "${SMALL[@]}" --salient-metric hessian
resume_case stories-term model.pb.safetensors 1 TERM 143 "$STORIES" "${SMALL[@]}" --format pb
# After layer 0: the rerun's first forward is layer 0's second pass (MKL first-call race, initialise_vector_math).
resume_case llama-first model.safetensors 0 KILL 137 "$LLAMA" "${SMALL[@]}"
resume_case llama-kill model.pb.safetensors 1 KILL 137 "$LLAMA" "${SMALL[@]}" --format pb --low_frac 0.8
resume_case llama-term model.safetensors 2 TERM 143 "$LLAMA" ptb 2bit --nsamples 8 --seqlen 128 --log-level info

# A kill from outside at whatever moment it lands, then the rerun.
run_in outside.full "$LLAMA" "${SMALL[@]}" --save q
(cd "$SCRATCH" && mkdir -p outside.cut && cd outside.cut && exec "$QUANTIZE" "$LLAMA" "${SMALL[@]}" --save q >out 2>err) &
pid=$!
for _ in $(seq 500); do [[ -e "$SCRATCH/outside.cut/q.pbllm-state/layer-00000.safetensors" ]] && break; sleep 0.01; done
kill -KILL $pid; wait $pid
run_in outside.cut "$LLAMA" "${SMALL[@]}" --save q
check "a kill from outside, then the rerun: identical model.safetensors" \
  cmp "$SCRATCH/outside.full/q/model.safetensors" "$SCRATCH/outside.cut/q/model.safetensors"

# What refuses to resume, naming the change; --restart starts over.
run_in changed PBLLM_TEST_SIGNAL=layer:0:KILL "$STORIES" "${SMALL[@]}" --save q
expect_error "q.pbllm-state holds the kept state of a different run (--low_frac was 0.9, now 0.8)" \
  bash -c "cd '$SCRATCH/changed' && '$QUANTIZE' '$STORIES' ${SMALL[*]} --save q --low_frac 0.8"
run_in changed "$STORIES" "${SMALL[@]}" --save q --low_frac 0.8 --restart
check "--restart starts over (exit $status)" test $status -eq 0
check "--restart: no layer read back" bash -c "! grep -q resuming '$SCRATCH/changed/err'"
check "--restart: no state left" test ! -e "$SCRATCH/changed/q.pbllm-state"

cp "$SOURCE/data/ptb/ptb.train.txt" "$SCRATCH/calibration.txt"
TEXT=(text:"$SCRATCH/calibration.txt" xnor --nsamples 4 --seqlen 128 --save q --log-level warn)
run_in text PBLLM_TEST_SIGNAL=layer:0:KILL "$STORIES" "${TEXT[@]}"
echo "one more line" >>"$SCRATCH/calibration.txt"
expect_error "calibration text calibration.txt changed" bash -c "cd '$SCRATCH/text' && '$QUANTIZE' '$STORIES' ${TEXT[*]}"

run_in damaged PBLLM_TEST_SIGNAL=layer:1:KILL "$STORIES" "${SMALL[@]}" --save q
truncate -s 100 "$SCRATCH/damaged/q.pbllm-state/layer-00001.safetensors"
expect_error "cannot resume from q.pbllm-state/layer-00001.safetensors (" \
  bash -c "cd '$SCRATCH/damaged' && '$QUANTIZE' '$STORIES' ${SMALL[*]/info/warn} --save q"
check "a damaged layer is kept for the user to see" test -s "$SCRATCH/damaged/q.pbllm-state/layer-00001.safetensors"
run_in damaged "$STORIES" "${SMALL[@]}" --save q --restart
check "--restart gets past a damaged state folder (exit $status)" test $status -eq 0

mkdir -p "$SCRATCH/fulldisk"
(cd "$SCRATCH/fulldisk" && ulimit -f 64 && "$QUANTIZE" "$STORIES" "${SMALL[@]}" >out 2>err)
check "a state folder that cannot be written does not stop the run (exit $?)" test $? -eq 0
check "... it says the run cannot resume" grep -q "cannot keep layer 0 for a resume" "$SCRATCH/fulldisk/err"

mkdir -p "$SCRATCH/nostate" && touch "$SCRATCH/nostate/output"  # the default state folder cannot be made
(cd "$SCRATCH/nostate" && "$QUANTIZE" "$STORIES" "${SMALL[@]}" >out 2>err)
check "a state folder that cannot be made does not stop the run (exit $?)" test $? -eq 0
check "... it says the run cannot resume" grep -q "no state folder (.*): this run cannot resume after a kill" \
  "$SCRATCH/nostate/err"

mkdir -p "$SCRATCH/foreign/q.pbllm-state" && echo mine >"$SCRATCH/foreign/q.pbllm-state/notes.txt"
expect_error "q.pbllm-state is not a pbllm state folder (it holds notes.txt)" \
  bash -c "cd '$SCRATCH/foreign' && '$QUANTIZE' '$STORIES' ${SMALL[*]} --save q --restart"
check "a foreign folder is left alone" test -f "$SCRATCH/foreign/q.pbllm-state/notes.txt"

run_in busy PBLLM_TEST_SIGNAL=layer:0:KILL "$STORIES" "${SMALL[@]}" --save q
exec 9>"$SCRATCH/busy/q.pbllm-state/lock"
flock -n 9  # this shell holds the lock, as a running pbllm-quantize would
expect_error "another pbllm-quantize is running with the state folder q.pbllm-state" \
  bash -c "cd '$SCRATCH/busy' && exec 9>&- && '$QUANTIZE' '$STORIES' ${SMALL[*]} --save q"
exec 9>&-

finish
