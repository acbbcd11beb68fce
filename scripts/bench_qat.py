#!/usr/bin/env python3
"""The python side of scripts/bench_qat.sh: PB-LLM's QAT step in python torch
on MODEL_DIR (transformers' model, every Linear replaced by the partially
binarized Linear), as the reference trains (batch 2, gradient accumulation 4,
AdamW, clipping; gradient checkpointing on, as its prepare_model_for_training
turns it on), float32 on the CPU; prints the training tokens per second over
the steps after the first.

The module is tests/oracle/make_qat_oracle.py's restatement of the
reference's BinaryXnorExceptOutliersLinear, or with --reference PB_LLM_DIR the
reference's own quant/outlier_quantizer.py (a checkout of hahnyuan/PB-LLM)."""
import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
parser = argparse.ArgumentParser()
parser.add_argument("model_dir")
parser.add_argument("--seqlen", type=int, default=512)
parser.add_argument("--steps", type=int, default=4)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--fraction", type=float, default=0.1)
parser.add_argument("--reference", help="a PB-LLM checkout: use its own module")
parser.add_argument("--no-checkpointing", action="store_true")
parser.add_argument("--flush-denormal", action="store_true", help="as pbllm-qat does (torch.set_flush_denormal)")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.set_flush_denormal(args.flush_denormal)
from transformers import AutoModelForCausalLM  # noqa: E402

model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
model.config.use_cache = False
for p in model.parameters():
    p.requires_grad = False
if args.reference:
    sys.path.insert(0, args.reference)
    from quant.outlier_quantizer import BinaryXnorExceptOutliersLinear  # noqa: E402

    def make(module):
        q = BinaryXnorExceptOutliersLinear(module.weight, module.bias, args.fraction)
        q.gen_outlier_mask()
        return q
else:
    sys.path.insert(0, str(ROOT / "tests/oracle"))
    from make_qat_oracle import NONE, PartiallyBinarizedLinear  # noqa: E402

    def make(module):
        return PartiallyBinarizedLinear(module.weight, module.bias, args.fraction, NONE)
for name, module in list(model.named_modules()):
    if isinstance(module, nn.Linear):
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        setattr(parent, name.rpartition(".")[2], make(module))
if not args.no_checkpointing:
    model.enable_input_require_grads()
    model.gradient_checkpointing_enable()
model.train()
parameters = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(parameters, lr=1e-4, weight_decay=0.0)
generator = torch.Generator().manual_seed(0)
batch, accumulation = 2, 4
times = []
for step in range(args.steps):
    start = time.perf_counter()
    optimizer.zero_grad()
    for _ in range(accumulation):
        ids = torch.randint(0, model.config.vocab_size, (batch, args.seqlen), generator=generator)
        (model(input_ids=ids, labels=ids).loss / accumulation).backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    times.append(time.perf_counter() - start)
    print(f"python step {step + 1}: {times[-1]:.1f} s", flush=True)
tokens = batch * accumulation * args.seqlen
measured = times[1:] or times
print(f"python ({'reference module' if args.reference else 'restated module'}, "
      f"{'no ' if args.no_checkpointing else ''}gradient checkpointing"
      f"{', denormals flushed' if args.flush_denormal else ''}): "
      f"{tokens * len(measured) / sum(measured):.0f} tokens/s")
