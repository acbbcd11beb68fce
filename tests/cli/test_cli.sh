#!/usr/bin/env bash
# The tools from the shell: flags out of range and missing files give one
# line on stderr and a non-zero exit; pbllm-quantize --save writes a folder
# that pbllm-eval and transformers both load.
#   test_cli.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
BUILD=$1 SOURCE=$2
QUANTIZE="$BUILD/tools/pbllm-quantize" EVAL="$BUILD/tools/pbllm-eval"
MODEL="$SOURCE/data/stories260K"
source "$(dirname "$0")/lib.sh"

expect_error "--low_frac 1.5 is outside [0, 1]" "$QUANTIZE" "$MODEL" ptb xnor --low_frac 1.5
expect_error "--low_frac -0.1 is outside [0, 1]" "$QUANTIZE" "$MODEL" ptb xnor --low-frac=-0.1
expect_error "--high_bit 17 is outside 1..16" "$QUANTIZE" "$MODEL" ptb xnor --high_bit 17
expect_error "--groupsize 48 must be -1 or a positive multiple of --blocksize 32" \
  "$QUANTIZE" "$MODEL" ptb xnor --groupsize 48 --blocksize 32
expect_error "wiki.train.raw is missing" "$QUANTIZE" "$MODEL" wikitext2 xnor --data-dir "$SCRATCH"
expect_error "unknown dataset 'wiki'" "$QUANTIZE" "$MODEL" wiki xnor
expect_error "model '$SCRATCH/none' not found" "$QUANTIZE" "$SCRATCH/none" ptb xnor
expect_error "unknown dataset 'ptb2'" "$EVAL" "$MODEL" --datasets ptb2
expect_error "exceeds the model's 512 positions" "$QUANTIZE" "$MODEL" ptb xnor --seqlen 1024
expect_error "--compute-dtype float16 needs --device cuda (the CPU computes in float32 or bfloat16)" \
  "$EVAL" "$MODEL" --datasets ptb --compute-dtype float16
expect_error "--compute-dtype 'bf16' is not one of auto, float32, bfloat16, float16" "$QUANTIZE" "$MODEL" ptb xnor --compute_dtype bf16
"$EVAL" "$MODEL" --datasets ptb --seqlen 128 --max-windows 2 --compute-dtype bfloat16 --json "$SCRATCH/bf16.json" \
  --log-level warn >/dev/null 2>&1
check "pbllm-eval --compute-dtype bfloat16 exits 0" test $? -eq 0
check "pbllm-eval --compute-dtype bfloat16 on the CPU says so in its JSON" python3 -c "
import json, sys; sys.exit(json.load(open('$SCRATCH/bf16.json'))['meta']['compute_dtype'] != 'bfloat16')"

# Quantize two layers, save, load back with pbllm-eval and transformers.
"$QUANTIZE" "$MODEL" ptb xnor --low_frac 0.8 --salient-metric hessian --nsamples 4 --seqlen 128 --maxlayer 2 \
  --save "$SCRATCH/q" --eval ptb --max-windows 4 --log-level warn >"$SCRATCH/quantize.out" 2>&1
check "pbllm-quantize --save exits 0" test $? -eq 0
check "one line per quantized Linear" test "$(grep -c '^\[layer' "$SCRATCH/quantize.out")" -eq 14
check "report.json lists 14 Linears" python3 -c "
import json, sys; r = json.load(open('$SCRATCH/q/report.json'))
# float32 stories260K: --calibration-dtype auto resolves to the compute dtype, and the report names it.
sys.exit(len(r['linears']) != 14 or 'ptb' not in r['perplexity'] or r['arguments']['calibration_dtype'] != 'compute')"
check "the profile: one line, and in report.json every phase the run went through, adding up to the wall time" \
  python3 -c "
import json, sys
p = json.load(open('$SCRATCH/q/report.json'))['profile']
phases = {'load', 'data', 'forward', 'hessian', 'factorisation', 'mask', 'column_loop', 'save', 'evaluation'}
ok = phases <= set(p['phases']) and p['other_seconds'] >= 0 and p['gemm_flops_per_second'] > 0
ok = ok and abs(sum(v['seconds'] for v in p['phases'].values()) + p['other_seconds'] - p['wall_seconds']) < 1e-6
ok = ok and all(v['floor_seconds'] == v['flops'] / p['gemm_flops_per_second'] for k, v in p['phases'].items()
                if k not in ('forward', 'hessian') and 'floor_seconds' in v)
line = [l for l in open('$SCRATCH/quantize.out') if l.startswith('profile ')]
sys.exit(not (ok and len(line) == 1 and '| forward ' in line[0] and '(floor ' in line[0]))"
check "no temporary folder left" test -z "$(ls -d "$SCRATCH"/q.tmp.* 2>/dev/null)"
"$EVAL" "$SCRATCH/q" --datasets ptb --seqlen 128 --max-windows 4 --json "$SCRATCH/eval.json" --log-level warn >/dev/null 2>&1
check "pbllm-eval loads the saved folder" test $? -eq 0
check "transformers loads the saved folder with the quantized weights and the same perplexity" \
  env PTB="$SOURCE/data/ptb/ptb.test.txt" python3 - "$SCRATCH" <<'PY'
import json, math, os, sys
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
scratch = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(f"{scratch}/q", dtype=torch.float32).eval()
saved = load_file(f"{scratch}/q/model.safetensors")["model.layers.0.self_attn.q_proj.weight"]
assert torch.equal(model.model.layers[0].self_attn.q_proj.weight.data, saved)
# xnor + 8-bit: a quantized row has few distinct values; an untouched one (layer 2) has many.
assert len(torch.unique(saved[0])) < 20 < len(torch.unique(model.model.layers[2].self_attn.q_proj.weight.data[0]))
ids = AutoTokenizer.from_pretrained(f"{scratch}/q", use_fast=False)(
    " ".join(line.strip() for line in open(os.environ["PTB"], encoding="utf-8")),
    return_tensors="pt").input_ids
losses = []
with torch.no_grad():
    for i in range(4):
        batch = ids[:, i * 128:(i + 1) * 128]
        losses.append(torch.nn.functional.cross_entropy(model(batch).logits[0, :-1], batch[0, 1:]).item())
expected = math.exp(sum(losses) / 4)
ours = json.load(open(f"{scratch}/eval.json"))["ptb"]["perplexity"]
assert abs(ours - expected) < 1e-4 * expected, (ours, expected)
PY

# --format pb: a packed folder that pbllm-eval reads to the same perplexity, bit for bit.
"$QUANTIZE" "$MODEL" ptb xnor --low_frac 0.8 --salient-metric hessian --nsamples 4 --seqlen 128 --maxlayer 2 \
  --save "$SCRATCH/p" --format pb --log-level warn >"$SCRATCH/packed.out" 2>&1
check "pbllm-quantize --format pb exits 0" test $? -eq 0
check "the packed folder holds model.pb.safetensors only" test -f "$SCRATCH/p/model.pb.safetensors" -a ! -e "$SCRATCH/p/model.safetensors"
check "the summary gives bits measured on disk" grep -q "^packed       14 Linears, 90624 weights: .* bits/weight on disk" "$SCRATCH/packed.out"
check "report.json records both sizes" python3 -c "
import json, os, sys; r = json.load(open('$SCRATCH/p/report.json'))['size']
sys.exit(r['file_bytes'] != os.path.getsize('$SCRATCH/p/model.pb.safetensors') or not 0 < r['linear_bits_per_weight'] < 8)"
"$EVAL" "$SCRATCH/p" --datasets ptb --seqlen 128 --max-windows 4 --json "$SCRATCH/eval_packed.json" --log-level warn >/dev/null 2>&1
check "pbllm-eval on the packed folder = on the fake-quant folder, bit for bit" python3 -c "
import json, sys; a, b = (json.load(open(f))['ptb']['perplexity'] for f in ('$SCRATCH/eval.json', '$SCRATCH/eval_packed.json'))
sys.exit(a != b)"
check "pbllm-inspect prints the packed sizes" sh -c "'$BUILD/tools/pbllm-inspect' '$SCRATCH/p' --log-level warn | grep -q '^packed       14 Linears'"
expect_error "is a packed PB checkpoint: quantize the original model" "$QUANTIZE" "$SCRATCH/p" ptb xnor
expect_error "--format pb needs --save" "$QUANTIZE" "$MODEL" ptb xnor --format pb

# --save never destroys a user's files: each refusal leaves what was there.
SMALL=(ptb xnor --nsamples 2 --seqlen 64 --maxlayer 1 --log-level warn)
echo "notes" >"$SCRATCH/file"
expect_error "--save $SCRATCH/file exists and is not a folder" "$QUANTIZE" "$MODEL" "${SMALL[@]}" --save "$SCRATCH/file"
check "a file named by --save is intact" grep -q notes "$SCRATCH/file"
mkdir -p "$SCRATCH/mine" && echo "thesis" >"$SCRATCH/mine/draft.txt"
expect_error "is a non-empty folder that is not an earlier pbllm output (draft.txt)" \
  "$QUANTIZE" "$MODEL" "${SMALL[@]}" --save "$SCRATCH/mine"
check "a user's folder is intact" grep -q thesis "$SCRATCH/mine/draft.txt"
cp -r "$MODEL" "$SCRATCH/model" && ln -s "$SCRATCH/model" "$SCRATCH/link"
for destination in "$SCRATCH/model" "$SCRATCH/model/" "$SCRATCH/model/." "$SCRATCH/link" "$SCRATCH/model/../model" "$SCRATCH"; do
  expect_error "is or contains the model being read" "$QUANTIZE" "$SCRATCH/model" "${SMALL[@]}" --save "$destination"
done
check "the model is intact" cmp -s "$MODEL/model.safetensors" "$SCRATCH/model/model.safetensors"
mkdir -p "$SCRATCH/ro" && chmod 555 "$SCRATCH/ro"
if [[ $(id -u) -ne 0 ]]; then
  expect_error "cannot write in $SCRATCH/ro" "$QUANTIZE" "$MODEL" "${SMALL[@]}" --save "$SCRATCH/ro/out"
fi
"$QUANTIZE" "$MODEL" "${SMALL[@]}" --save "$SCRATCH/mine" --overwrite >/dev/null 2>&1
check "--overwrite replaces a user's folder when asked" test -f "$SCRATCH/mine/report.json" -a ! -e "$SCRATCH/mine/draft.txt"
mkdir -p "$SCRATCH/q.tmp.999999999" "$SCRATCH/q.tmp.1x"
before=$(sha256sum "$SCRATCH/q/model.safetensors")
"$QUANTIZE" "$MODEL" "${SMALL[@]}" --save "$SCRATCH/q" >/dev/null 2>&1
check "an earlier pbllm output is replaced" test "$(sha256sum "$SCRATCH/q/model.safetensors")" != "$before"
check "a stale temporary folder is removed, other names kept" test ! -e "$SCRATCH/q.tmp.999999999" -a -d "$SCRATCH/q.tmp.1x"
rmdir "$SCRATCH/q.tmp.1x"
before=$(sha256sum <"$SCRATCH/q/model.safetensors")
PBLLM_TEST_SIGNAL=save:0:KILL "$QUANTIZE" "$MODEL" "${SMALL[@]}" --low_frac 0.8 --save "$SCRATCH/q" >/dev/null 2>&1
check "SIGKILL while saving: the earlier output is intact" test "$(sha256sum <"$SCRATCH/q/model.safetensors")" = "$before"
check "... the complete new folder is left under its temporary name" test -n "$(ls -d "$SCRATCH"/q.tmp.* 2>/dev/null)"
"$QUANTIZE" "$MODEL" "${SMALL[@]}" --low_frac 0.8 --save "$SCRATCH/q" >/dev/null 2>&1
check "... the rerun resumes (all layers kept), saves and removes the temporary" \
  test "$(sha256sum <"$SCRATCH/q/model.safetensors")" != "$before" -a -z "$(ls -d "$SCRATCH"/q.tmp.* "$SCRATCH"/q.pbllm-state 2>/dev/null)"
before=$(sha256sum "$SCRATCH/q/model.safetensors")
(ulimit -f 64; "$QUANTIZE" "$MODEL" "${SMALL[@]/warn/error}" --save "$SCRATCH/q" >/dev/null 2>"$SCRATCH/err")
status=$?
check "a full disk (ulimit -f) is a clear error" test $status -eq 1 -a "$(wc -l <"$SCRATCH/err")" -eq 1
check "... naming the write" grep -q "write failed" "$SCRATCH/err"
check "... and leaves the earlier output intact" test "$(sha256sum "$SCRATCH/q/model.safetensors")" = "$before"
check "... without a temporary" test -z "$(ls -d "$SCRATCH"/q.tmp.[0-9]* 2>/dev/null)"
ln -s "$SCRATCH/mine" "$SCRATCH/link_to_mine"; ln -s "$SCRATCH/nowhere" "$SCRATCH/dangling"
for link in link_to_mine dangling; do
  expect_error "is a symbolic link; give the folder itself" "$QUANTIZE" "$MODEL" "${SMALL[@]}" --save "$SCRATCH/$link" --overwrite
done
check "a dangling link is kept" test -L "$SCRATCH/dangling"
mkdir -p "$SCRATCH/cwd" && echo mine >"$SCRATCH/cwd/z"
expect_error "is or contains the current folder" sh -c \
  "cd '$SCRATCH/cwd' && '$(realpath "$QUANTIZE")' '$(realpath "$MODEL")' ${SMALL[*]} --save . --overwrite"
check "the current folder is intact" test -f "$SCRATCH/cwd/z"
# --json FILE: a regular file may be replaced, nothing else; checked before any work.
expect_error "--json $SCRATCH/model/config.json is inside the model being read" \
  "$QUANTIZE" "$SCRATCH/model" "${SMALL[@]}" --json "$SCRATCH/model/config.json"
expect_error "--json $SCRATCH/mine exists and is not a regular file" "$QUANTIZE" "$MODEL" "${SMALL[@]}" --json "$SCRATCH/mine"
expect_error "--json $SCRATCH/dangling exists and is not a regular file" "$EVAL" "$MODEL" --json "$SCRATCH/dangling"
check "the model's config.json is intact" cmp -s "$MODEL/config.json" "$SCRATCH/model/config.json"
# A failing evaluation comes after the save: the quantized model is kept.
expect_error "no dataset could be evaluated (text:$SCRATCH/no/such/long/file.txt: " \
  "$QUANTIZE" "$MODEL" "${SMALL[@]/warn/error}" --save "$SCRATCH/q4" --eval "text:$SCRATCH/no/such/long/file.txt"
check "the model is saved before --eval" test -f "$SCRATCH/q4/model.safetensors"
expect_error "no dataset could be evaluated" "$EVAL" "$MODEL" --datasets "text:$SCRATCH/none.txt" --log-level off
# Bad inputs of the families the hostile probe found: one line naming the file or flag.
expect_error "pbllm-quantize: error: --nsamples: Value -5 not in range 1 to 1099511627776 (see --help)" \
  "$QUANTIZE" "$MODEL" ptb xnor --nsamples -5
expect_error "select none of the 5 layers' Linears (self_attn.q_proj" "$QUANTIZE" "$MODEL" ptb xnor --quant_only nothing
mkdir -p "$SCRATCH/c4data/c4"
echo '{"text": "not compressed"}' >"$SCRATCH/c4data/c4/c4-train.00000-of-01024.json.gz"
expect_error "c4-train.00000-of-01024.json.gz: not gzip data" "$QUANTIZE" "$MODEL" c4 xnor --data-dir "$SCRATCH/c4data"
mkdir -p "$SCRATCH/tok"
cp "$MODEL/config.json" "$MODEL/model.safetensors" "$SCRATCH/tok/"
python3 - "$SOURCE/tests/fuzz/corpus/tokenizer_json/byte_level_300.json" "$SCRATCH/tok" <<'PY'
import copy, json, sys
base = json.load(open(sys.argv[1]))
def variant(name, change):
    t = copy.deepcopy(base); change(t); json.dump(t, open(f"{sys.argv[2]}/{name}.json", "w"))
variant("empty_added", lambda t: t["added_tokens"].append({"id": 299, "content": "", "special": True}))
variant("no_merges", lambda t: t["model"].__setitem__("merges", []))
variant("missing_merges", lambda t: t["model"].pop("merges"))
variant("unknown_merge", lambda t: t["model"]["merges"].insert(0, "zzq yyq"))
variant("vocab_list", lambda t: t["model"].__setitem__("vocab", [1, 2]))
variant("id_string", lambda t: t["added_tokens"][0].__setitem__("id", "zero"))
PY
tokenizer_error() {  # tokenizer_error VARIANT NEEDLE
  cp "$SCRATCH/tok/$1.json" "$SCRATCH/tok/tokenizer.json"
  expect_error "$SCRATCH/tok/tokenizer.json: $2" "$EVAL" "$SCRATCH/tok" --datasets ptb --max-windows 1
}
tokenizer_error empty_added 'added token 299 has an empty "content"'
tokenizer_error no_merges "there are no merges"
tokenizer_error missing_merges "unexpected content ([json.exception.out_of_range.403] key 'merges' not found)"
tokenizer_error unknown_merge "merge 'zzq yyq' names 'zzq', which is not in the vocabulary"
tokenizer_error vocab_list "model.vocab is not a {token: id} object"
tokenizer_error id_string "an added token's id is \"zero\", not an integer in range"

# Inf in the activations of layer 1 (a norm weight of the checkpoint): named, before any file is written.
mkdir -p "$SCRATCH/overflow" && cp "$MODEL"/* "$SCRATCH/overflow/"
python3 - "$SCRATCH/overflow/model.safetensors" <<'PY'
import sys
from safetensors.torch import load_file, save_file
tensors = load_file(sys.argv[1])
tensors["model.layers.1.input_layernorm.weight"][0] = float("inf")
save_file(tensors, sys.argv[1], metadata={"format": "pt"})
PY
expect_error "layer 1 self_attn.q_proj: the Hessian has NaN or Inf values (activations overflowed?)" \
  "$QUANTIZE" "$SCRATCH/overflow" ptb xnor --nsamples 2 --seqlen 64 --log-level error

# The plan: printed before the work, a refusal when it cannot fit, --dry-run writes nothing.
expect_error "--threads 100000 is more than 4x the" "$QUANTIZE" "$MODEL" ptb xnor --threads 100000
expect_error "MiB are available: lower --nsamples / --seqlen, hold the calibration activations in 16 bits (--calibration-dtype bfloat16), free memory, or add --force" \
  "$QUANTIZE" "$MODEL" ptb xnor --nsamples 100000000 --seqlen 512 --save "$SCRATCH/huge"
check "a refused plan leaves nothing behind" test -z "$(ls -d "$SCRATCH"/huge* 2>/dev/null)"
"$QUANTIZE" "$MODEL" ptb xnor --nsamples 100000000 --seqlen 512 --dry-run --save "$SCRATCH/dry" >"$SCRATCH/plan.out" 2>&1
check "--dry-run exits 0 when the plan does not fit" test $? -eq 0
check "--dry-run says it does not fit" grep -q "DOES NOT FIT" "$SCRATCH/plan.out"
check "--dry-run writes nothing" test -z "$(ls -d "$SCRATCH"/dry* 2>/dev/null)"
"$QUANTIZE" "$MODEL" ptb xnor --nsamples 4 --seqlen 128 --dry-run >"$SCRATCH/plan.out" 2>&1
check "--dry-run prints the peak and the time" grep -qE "^plan  host   peak .* GiB of .* GiB available$" "$SCRATCH/plan.out"
check "... and the time" grep -q "^plan  time " "$SCRATCH/plan.out"
check "... and no Linear" bash -c "! grep -q '^\[layer' '$SCRATCH/plan.out'"
"$QUANTIZE" "$MODEL" ptb xnor --nsamples 8192 --seqlen 512 --dry-run >"$SCRATCH/plan32.out" 2>&1
"$QUANTIZE" "$MODEL" ptb xnor --nsamples 8192 --seqlen 512 --dry-run --calibration-dtype bfloat16 >"$SCRATCH/plan16.out" 2>&1
activations() { awk '/calibration activations/ {print $(NF-1)}' "$1"; }
check "--calibration-dtype bfloat16 halves the planned activations ($(activations "$SCRATCH/plan32.out") -> $(activations "$SCRATCH/plan16.out") GiB)" \
  python3 -c "import sys; a, b = float('$(activations "$SCRATCH/plan32.out")'), float('$(activations "$SCRATCH/plan16.out")'); sys.exit(not (a > 0 and abs(b - a / 2) <= 0.006))"
expect_error "--calibration-dtype: int8 not in {auto,compute,float16,bfloat16}" "$QUANTIZE" "$MODEL" ptb xnor --calibration-dtype int8

# SIGTERM / SIGINT: the next safe point, exit 143 / 130, nothing half-written.
for signal in TERM INT; do
  # Long enough (~10 s) to be signalled mid-run, once its first layer is done.
  "$QUANTIZE" "$MODEL" ptb xnor --nsamples 512 --seqlen 512 --save "$SCRATCH/s$signal" >/dev/null 2>"$SCRATCH/err" &
  pid=$!
  for _ in $(seq 600); do grep -q "quantize 1/" "$SCRATCH/err" && break; sleep 0.1; done
  kill -s $signal $pid
  wait $pid
  status=$?
  expected=$([[ $signal == TERM ]] && echo 143 || echo 130)
  check "SIG$signal exits $expected (got $status)" test $status -eq "$expected"
  check "SIG$signal says so" grep -q "interrupted by SIG$signal" "$SCRATCH/err"
  check "SIG$signal leaves no output folder" test -z "$(ls -d "$SCRATCH/s$signal" "$SCRATCH/s$signal".tmp.* 2>/dev/null)"
done

finish
