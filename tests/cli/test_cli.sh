#!/usr/bin/env bash
# The tools from the shell: flags out of range and missing files give one
# line on stderr and a non-zero exit; pbllm-quantize --save writes a folder
# that pbllm-eval and transformers both load.
#   test_cli.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
BUILD=$1 SOURCE=$2
QUANTIZE="$BUILD/tools/pbllm-quantize" EVAL="$BUILD/tools/pbllm-eval"
MODEL="$SOURCE/data/stories260K"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
passed=0 failed=0

# expect_error NEEDLE COMMAND...: non-zero exit, exactly one stderr line containing NEEDLE.
expect_error() {
  local needle=$1; shift
  "$@" >"$SCRATCH/out" 2>"$SCRATCH/err"
  local status=$? lines
  lines=$(wc -l <"$SCRATCH/err")
  if [[ $status -ne 0 && $lines -eq 1 ]] && grep -qF -- "$needle" "$SCRATCH/err"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $* -> exit $status, $lines stderr lines, expected one containing '$needle':"; cat "$SCRATCH/err"
  fi
}
check() {  # check DESCRIPTION CONDITION...
  local what=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $what"; fi
}

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

# Quantize two layers, save, load back with pbllm-eval and transformers.
"$QUANTIZE" "$MODEL" ptb xnor --low_frac 0.8 --salient-metric hessian --nsamples 4 --seqlen 128 --maxlayer 2 \
  --save "$SCRATCH/q" --eval ptb --max-windows 4 --log-level warn >"$SCRATCH/quantize.out" 2>&1
check "pbllm-quantize --save exits 0" test $? -eq 0
check "one line per quantized Linear" test "$(grep -c '^\[layer' "$SCRATCH/quantize.out")" -eq 14
check "report.json lists 14 Linears" python3 -c "
import json, sys; r = json.load(open('$SCRATCH/q/report.json')); sys.exit(len(r['linears']) != 14 or 'ptb' not in r['perplexity'])"
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

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
