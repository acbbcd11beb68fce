#!/usr/bin/env bash
# Tokenizer throughput on wiki.test.raw, one thread: pbllm vs Hugging Face
# tokenizers (Rust) vs transformers' slow Python tokenizer.
#   scripts/bench_tokenizer.sh [TOKENIZER_DIR] [FILE]   (default: GPT-2, then LLaMA)
set -euo pipefail
cd "$(dirname "$0")/.."
FILE=${2:-data/wikitext-2-raw/wiki.test.raw}
scripts/setup.sh
for dir in ${1:-tests/data/tokenizers/gpt2 tests/data/tokenizers/llama}; do
  echo "== $dir"
  "${BUILD_DIR:-build}"/tools/pbllm-bench tokenize "$dir" "$FILE" --threads 1 --log-level warn
  python3 scripts/bench_tokenizer.py "$dir" "$FILE"
done
