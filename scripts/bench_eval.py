#!/usr/bin/env python3
"""transformers' side of scripts/bench_eval.sh: perplexity of MODEL_DIR on the
WikiText-2 test text ("\\n\\n".join(rows)) by the reference's convention, first
N windows, float32 on the CPU (fp16 on --device cuda, as pbllm-eval), and tokens
per second of the forward."""
import argparse
import math
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

parser = argparse.ArgumentParser()
parser.add_argument("model_dir")
parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "data/wikitext-2-raw/wiki.test.raw"))
parser.add_argument("--seqlen", type=int, default=2048)
parser.add_argument("--max-windows", type=int, default=20)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--device", default="cpu")
args = parser.parse_args()
torch.set_num_threads(args.threads)

rows = ["" if line == " \n" else line for line in open(args.data, newline="").readlines()]
tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
ids = tokenizer("\n\n".join(rows), return_tensors="pt").input_ids
dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype).to(args.device).eval()
ids = ids.to(args.device)
windows = min(args.max_windows, ids.shape[1] // args.seqlen)
losses, start = [], time.perf_counter()
with torch.no_grad():
    for i in range(windows):
        batch = ids[:, i * args.seqlen:(i + 1) * args.seqlen]
        logits = model(batch).logits.float()
        losses.append(torch.nn.functional.cross_entropy(logits[0, :-1], batch[0, 1:]).item())  # .item() waits for the GPU
seconds = time.perf_counter() - start
print(f"transformers: wikitext2 perplexity {math.exp(sum(losses) / windows):.4f} over {windows} windows of "
      f"{args.seqlen} ({ids.shape[1]} tokens), {windows * args.seqlen / seconds:.1f} tokens/s")
