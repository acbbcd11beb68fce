#!/usr/bin/env python3
"""Makes a random OPT-125m-shaped checkpoint (once) and times transformers'
full forward at the same seqlen and thread count as pbllm-bench."""
import argparse
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, OPTConfig, OPTForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("model_dir")
parser.add_argument("--seqlen", type=int, default=2048)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--repeat", type=int, default=3)
args = parser.parse_args()
torch.set_num_threads(args.threads)

directory = Path(args.model_dir)
if not (directory / "config.json").exists():
    torch.manual_seed(0)
    config = OPTConfig(vocab_size=50272, hidden_size=768, num_hidden_layers=12, ffn_dim=3072, num_attention_heads=12,
                       max_position_embeddings=2048, word_embed_proj_dim=768)
    OPTForCausalLM(config).save_pretrained(directory)

model = AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32).eval()
ids = torch.randint(0, model.config.vocab_size, (1, args.seqlen))
best = float("inf")
with torch.no_grad():
    for run in range(args.repeat + 1):
        start = time.perf_counter()
        model(input_ids=ids).logits.sum().item()
        if run > 0:
            best = min(best, time.perf_counter() - start)
print(f"transformers forward ({model.config._attn_implementation}): {args.seqlen} tokens in {best:.3f} s = "
      f"{args.seqlen / best:.1f} tokens/s (best of {args.repeat}, {args.threads} threads)")
