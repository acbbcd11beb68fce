#!/usr/bin/env python3
"""Python side of scripts/bench_tokenizer.sh: MB/s of encoding FILE with
Hugging Face `tokenizers` (Rust, one thread) and with transformers' slow
tokenizer, for a GPT-2 style (vocab.json + merges.txt) or SentencePiece
(tokenizer.model) folder."""
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from transformers import AutoTokenizer, GPT2Tokenizer, GPT2TokenizerFast, LlamaTokenizer, LlamaTokenizerFast  # noqa: E402

folder, path = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
size = len(text.encode()) / 1e6
if os.path.exists(os.path.join(folder, "tokenizer.model")):
    pair = {"slow": LlamaTokenizer(os.path.join(folder, "tokenizer.model"), legacy=True),
            "tokenizers (Rust)": LlamaTokenizerFast(os.path.join(folder, "tokenizer.model"), legacy=True)}
else:
    vocab, merges = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    pair = {"slow": GPT2Tokenizer(vocab, merges), "tokenizers (Rust)": GPT2TokenizerFast(vocab, merges)}
for name, tokenizer in pair.items():
    start = time.perf_counter()
    count = len(tokenizer(text)["input_ids"])
    seconds = time.perf_counter() - start
    print(f"{name} tokenize: {size:.2f} MB -> {count} ids in {seconds:.3f} s = {size / seconds:.2f} MB/s")
