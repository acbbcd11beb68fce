#!/usr/bin/env bash
# pbllm-qat from the shell: bad input gets one line each; a run with --save,
# --eval and --json writes a folder pbllm-eval reads back to the perplexity
# the run printed; a run killed after step k resumes from its checkpoint to
# the uninterrupted run's weights byte for byte; hessian outliers from
# pbllm-quantize's packed masks.
#   test_qat.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
BUILD=$(realpath "$1") SOURCE=$(realpath "$2")
QAT="$BUILD/tools/pbllm-qat" QUANTIZE="$BUILD/tools/pbllm-quantize" EVAL="$BUILD/tools/pbllm-eval"
source "$(dirname "$0")/lib.sh"
STORIES="$SOURCE/data/stories260K"
SHORT=(--train_steps 4 --seqlen 32 --batch_size 1 --gradient_accumulation_steps 2 --threads 1)

# Bad input: one line each, before any training.
expect_error "unknown binarization method 'xnor'" "$QAT" "$STORIES" ptb --binarization_method xnor
for f in 0 1 1.5 -0.2; do
  expect_error "--outlier_fraction $f is outside (0, 1)" "$QAT" "$STORIES" ptb --outlier_fraction=$f
done
expect_error "xnor_outlier_hessian needs --masks DIR" "$QAT" "$STORIES" ptb --binarization_method xnor_outlier_hessian
expect_error "--masks is for xnor_outlier_hessian only" "$QAT" "$STORIES" ptb --masks "$SCRATCH"
expect_error "--masks $SCRATCH has no model.pb.safetensors" \
  "$QAT" "$STORIES" ptb --binarization_method xnor_outlier_hessian --masks "$SCRATCH" "${SHORT[@]}"
expect_error "--lr -1 must be in (0, 1]" "$QAT" "$STORIES" ptb --lr=-1
printf 'Once upon a time.' >"$SCRATCH/short.txt"
expect_error "windows of 32" "$QAT" "$STORIES" "text:$SCRATCH/short.txt" "${SHORT[@]}"
expect_error "the reference's dataset red_pajama is not available offline" "$QAT" "$STORIES" red_pajama
expect_error "--seqlen 4096 exceeds the model's 512 positions" "$QAT" "$STORIES" ptb --seqlen 4096

# Hessian outliers: the masks of another model are refused, this model's are used.
LLAMA="$SCRATCH/llama2"
python3 "$SOURCE/scripts/make_random_llama.py" "$LLAMA" --hidden 128 --intermediate 344 --layers 2 --heads 4 \
  --vocab 32000 --device cpu >/dev/null || { echo "FAILED: make_random_llama.py"; exit 1; }
"$QUANTIZE" "$LLAMA" ptb xnor --low_frac 0.9 --salient_metric hessian --nsamples 4 --seqlen 64 \
  --save "$SCRATCH/llama-masks" --format pb >/dev/null 2>&1
"$QUANTIZE" "$STORIES" ptb xnor --low_frac 0.9 --salient_metric hessian --nsamples 4 --seqlen 64 \
  --save "$SCRATCH/masks" --format pb >/dev/null 2>&1
HESSIAN=(--binarization_method xnor_outlier_hessian --outlier_fraction 0.1)
expect_error "the mask of model.layers.0.self_attn.q_proj.weight is 128 x 128 but the weight is 64 x 64" \
  "$QAT" "$STORIES" ptb "${HESSIAN[@]}" --masks "$SCRATCH/llama-masks" "${SHORT[@]}"
expect_error "was written with --low_frac 0.9, which keeps 0.1 salient, but --outlier_fraction is 0.2" \
  "$QAT" "$STORIES" ptb --binarization_method xnor_outlier_hessian --outlier_fraction 0.2 --masks "$SCRATCH/masks" "${SHORT[@]}"
"$QAT" "$STORIES" ptb "${HESSIAN[@]}" --masks "$SCRATCH/masks" "${SHORT[@]}" >"$SCRATCH/hessian.out" 2>"$SCRATCH/hessian.err"
check "hessian outliers from the masks: exit 0" test $? -eq 0
check "hessian: the head's fallback to magnitude is said" grep -q "the head (model.embed_tokens.weight): magnitude outliers" "$SCRATCH/hessian.err"

# A whole run: progress per step, perplexity before and after, the saved folder, the report.
RUN=("$STORIES" ptb "${SHORT[@]}" --zero-point-unrounded --eval ptb --max-windows 2)
"$QAT" "${RUN[@]}" --save "$SCRATCH/trained" --json "$SCRATCH/report.json" >"$SCRATCH/run.out" 2>"$SCRATCH/run.err"
check "a whole run exits 0" test $? -eq 0
check "one progress line per step" test "$(grep -c '^step ' "$SCRATCH/run.out")" -eq 4
check "the lr of step 1 is 0 (warmup)" grep -q '^step     1/4  loss .* lr 0.000e+00' "$SCRATCH/run.out"
check "the tied head is saved untied" python3 -c "
import json, sys; c = json.load(open('$SCRATCH/trained/config.json')); sys.exit(c['tie_word_embeddings'] is not False)"
after=$(grep -A2 'perplexity after QAT' "$SCRATCH/run.out" | awk '$1 == "ptb" {print $2}')
"$EVAL" "$SCRATCH/trained" --datasets ptb --max-windows 2 >"$SCRATCH/eval.out" 2>/dev/null
check "pbllm-eval of the saved folder gives the perplexity after QAT ($after)" \
  test "$(awk '$1 == "ptb" {print $2}' "$SCRATCH/eval.out")" = "$after"
check "the report has 4 steps, both perplexities and the outliers" python3 -c "
import json, sys; r = json.load(open('$SCRATCH/report.json'))
sys.exit(not (len(r['steps']) == 4 and 'ptb' in r['perplexity_before'] and 'ptb' in r['perplexity_after'] and r['outliers'] > 0))"
python3 "$SOURCE/scripts/plot_qat.py" "$SCRATCH/loss.png" "run=$SCRATCH/report.json" >/dev/null
check "plot_qat.py draws the report's loss curve" test -s "$SCRATCH/loss.png"
echo '{"steps": []}' >"$SCRATCH/empty.json"
expect_error "empty.json: the report has no steps" python3 "$SOURCE/scripts/plot_qat.py" "$SCRATCH/x.png" "$SCRATCH/empty.json"
expect_error "not a pbllm-qat --json report" python3 "$SOURCE/scripts/plot_qat.py" "$SCRATCH/x.png" "$SCRATCH/short.txt"
check "no state folder left after a complete run" test ! -e "$SCRATCH/trained.pbllm-state"
# Packed: the same model in PB's format, smaller, the same perplexity.
"$QAT" "${RUN[@]}" --save "$SCRATCH/packed" --format pb >"$SCRATCH/packed.out" 2>"$SCRATCH/packed.err"
check "--format pb exits 0" test $? -eq 0
check "--format pb writes model.pb.safetensors only" test -s "$SCRATCH/packed/model.pb.safetensors" -a ! -e "$SCRATCH/packed/model.safetensors"
check "--format pb prints its bits per weight" grep -q "^packed       36 Linears" "$SCRATCH/packed.out"
check "the packed file is under a third of the fake-quant one" \
  test $(($(stat -c %s "$SCRATCH/packed/model.pb.safetensors") * 3)) -lt "$(stat -c %s "$SCRATCH/trained/model.safetensors")"
check "the packed file is format version 3 with affine grids, the head packed" python3 -c "
import json, sys
from safetensors import safe_open
m = safe_open('$SCRATCH/packed/model.pb.safetensors', 'pt').metadata()
linears = json.loads(m['pbllm.linears'])
sys.exit(not (m['pbllm.format_version'] == '3' and linears['lm_head.weight']['high_grid'] == 'affine'
              and json.loads(m['pbllm.settings'])['tool'] == 'pbllm-qat'))"
"$EVAL" "$SCRATCH/packed" --datasets ptb --max-windows 2 >"$SCRATCH/eval-packed.out" 2>/dev/null
check "pbllm-eval of the packed folder gives the perplexity after QAT ($after)" \
  test "$(awk '$1 == "ptb" {print $2}' "$SCRATCH/eval-packed.out")" = "$after"
expect_error "--format pb stores the outliers as codes of their frozen 8-bit grid" \
  "$QAT" "$STORIES" ptb --save "$SCRATCH/x" --format pb --train_outlier
expect_error "--train_outlier and --weight_decay move them off it" \
  "$QAT" "$STORIES" ptb --save "$SCRATCH/x" --format pb --weight_decay 0.01
expect_error "--format needs --save" "$QAT" "$STORIES" ptb --format pb
expect_error "is pbllm-qat's output; the hessian masks come from pbllm-quantize" \
  "$QAT" "$STORIES" ptb "${HESSIAN[@]}" --masks "$SCRATCH/packed" "${SHORT[@]}"
expect_error "--format: gz not in {hf,pb}" "$QAT" "$STORIES" ptb --save "$SCRATCH/x" --format gz
expect_error "is or contains the model being read" "$QAT" "$STORIES" ptb "${SHORT[@]}" --save "$STORIES"
# Outputs never replace what the run reads or writes.
expect_error "is or is inside $SCRATCH/trained, which this run reads or writes" \
  "$QAT" "$STORIES" ptb "${SHORT[@]}" --save "$SCRATCH/trained" --json "$SCRATCH/trained/model.safetensors"
cp "$SCRATCH/short.txt" "$SCRATCH/text.txt"
expect_error "--json $SCRATCH/text.txt is or is inside" "$QAT" "$STORIES" "text:$SCRATCH/text.txt" --json "$SCRATCH/text.txt"
expect_error "which this run reads; choose another folder" \
  "$QAT" "$STORIES" ptb "${HESSIAN[@]}" --masks "$SCRATCH/masks" --save "$SCRATCH/masks"
check "the masks are still there" test -s "$SCRATCH/masks/model.pb.safetensors"
expect_error "is inside the pbllm state folder" "$QAT" "$STORIES" ptb --save "$SCRATCH/x.pbllm-state/sub"
expect_error "--checkpoint_every needs --save" "$QAT" "$STORIES" ptb --checkpoint_every 5
expect_error "--max-windows needs --eval" "$QAT" "$STORIES" ptb --max-windows 5
expect_error "--lr 2 must be in (0, 1]" "$QAT" "$STORIES" ptb --lr 2
expect_error "training tokens up front" "$QAT" "$STORIES" ptb --train_steps 1000000000 --seqlen 32

# Killed after step 2 (checkpoints every step), then the same command: the uninterrupted run's weights.
for signal in KILL TERM; do
  (cd "$SCRATCH" && PBLLM_TEST_SIGNAL="step:2:$signal" "$QAT" "$STORIES" ptb "${SHORT[@]}" --checkpoint_every 1 \
     --save "cut-$signal" >"cut-$signal.out" 2>"cut-$signal.err")
  status=$?
  check "SIG$signal after step 2: killed (status $status)" test $status -ne 0
  check "SIG$signal: a checkpoint is kept" test -e "$SCRATCH/cut-$signal.pbllm-state/checkpoint.safetensors"
  (cd "$SCRATCH" && "$QAT" "$STORIES" ptb "${SHORT[@]}" --checkpoint_every 1 --save "cut-$signal" \
     >"cut-$signal.out" 2>"cut-$signal.err")
  check "SIG$signal: the rerun exits 0" test $? -eq 0
  check "SIG$signal: the rerun resumes after step 2" grep -q "resumed after step 2" "$SCRATCH/cut-$signal.out"
  check "SIG$signal: it runs steps 3 and 4 only" test "$(grep -c '^step ' "$SCRATCH/cut-$signal.out")" -eq 2
done
(cd "$SCRATCH" && "$QAT" "$STORIES" ptb "${SHORT[@]}" --checkpoint_every 1 --save whole >whole.out 2>whole.err)
for signal in KILL TERM; do
  check "SIG$signal: resumed weights equal the uninterrupted run's" \
    cmp "$SCRATCH/whole/model.safetensors" "$SCRATCH/cut-$signal/model.safetensors"
done
# Ctrl-C between checkpoints keeps the state after the last finished step.
(cd "$SCRATCH" && PBLLM_TEST_SIGNAL="step:2:INT" "$QAT" "$STORIES" ptb "${SHORT[@]}" --checkpoint_every 3 \
   --save int >int.out 2>int.err)
check "SIGINT after step 2 of checkpoints every 3: exit 130" test $? -eq 130
check "SIGINT: says the state after step 2 is kept" grep -q "the state after step 2 is kept in int.pbllm-state" "$SCRATCH/int.err"
(cd "$SCRATCH" && "$QAT" "$STORIES" ptb "${SHORT[@]}" --checkpoint_every 3 --save int >int.out 2>int.err)
check "SIGINT: the rerun resumes after step 2" grep -q "resumed after step 2" "$SCRATCH/int.out"
check "SIGINT: resumed weights equal the uninterrupted run's" cmp "$SCRATCH/whole/model.safetensors" "$SCRATCH/int/model.safetensors"
# A checkpoint of another command is refused, naming the change.
(cd "$SCRATCH" && PBLLM_TEST_SIGNAL="step:1:KILL" "$QAT" "$STORIES" ptb "${SHORT[@]}" --save other >/dev/null 2>&1)
expect_error "holds the kept state of a different run (--lr was 0.0001, now 0.001)" \
  "$QAT" "$STORIES" ptb "${SHORT[@]}" --save "$SCRATCH/other" --lr 0.001 --log-level error
finish
