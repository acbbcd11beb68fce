#!/usr/bin/env python3
"""Oracle fixtures for pbllm-qat: PB-LLM's QAT module restated in python torch
(the reference's quant/outlier_quantizer.py BinaryXnorExceptOutliersLinear
and STEBinary, written out here from its description, not copied) on tiny
Hugging Face models, trained the way its qat/run_qat.py trains through the
Trainer: AdamW (0.9, 0.999, 1e-8, no weight decay), transformers'
get_cosine_schedule_with_warmup with warmup = 0.05 x steps, gradient
accumulation, clip_grad_norm_ 1.0, transformers' own causal-LM loss.

    make_qat_oracle.py OUT_DIR

writes OUT_DIR/<case>/ (the model before QAT, save_pretrained) and
OUT_DIR/<case>/oracle.safetensors: "ids" [windows, T] int64, "losses" [steps]
(the mean micro-batch loss of each step), "outliers/<name>" (the masks),
"latent0/<name>" (the weights after the 8-bit pass), "grad0/<name>" (the
first step's clipped gradients), "latent/<name>" and
"bias/<name>" after the steps, "effective/<name>" (the weights the trained
model computes with, as to_regular_linear gives them), with the settings in
the metadata. Also OUT_DIR/lr_factors.safetensors: transformers' schedule.
tests/test_qat.cpp compares pbllm's QAT with these.
"""
import json
import sys
import zlib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import get_cosine_schedule_with_warmup

from make_hf_models import VOCAB, llama, opt, randomize  # the same tiny models and visible random weights

SEQ = 16
WINDOWS_PER_STEP = 4  # batch 2, accumulation 2
BATCH = 2


class SignStraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.sign()

    @staticmethod
    def backward(ctx, grad):
        return grad


def quant_8bit(w, unrounded_zero_point):
    # per row: codes round((w - zp) / range * 255) cast to uint8 (torch wraps
    # negatives modulo 256), values codes * range / 255 + zp; zp = round(min).
    low = torch.min(w, dim=-1, keepdim=True)[0]
    span = (torch.max(w, dim=-1, keepdim=True)[0] - low).type(torch.float32)
    zero = low if unrounded_zero_point else torch.round(low)
    codes = torch.clamp(torch.round((w - zero) / span * 255).type(torch.uint8), 0, 255)
    return (codes * (span / 255) + zero).to(w.dtype)


class PartiallyBinarizedLinear(nn.Module):
    def __init__(self, weight, bias, fraction, corrections):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.corrections = corrections
        with torch.no_grad():
            flat = self.weight.view(-1)
            lower = torch.kthvalue(flat, int(flat.numel() * fraction / 2))[0]
            upper = torch.kthvalue(flat, int(flat.numel() * (1 - fraction / 2)))[0]
            self.outliers = (self.weight < lower) | (self.weight > upper)
            self.scale = self.binary_scale()
            self.weight.data = quant_8bit(self.weight.data, corrections["zero_point"])

    def binary_scale(self):
        w = self.weight.detach()
        if self.corrections["per_row_scale"]:
            kept = ~self.outliers
            return (w.abs() * kept).sum(1, keepdim=True) / kept.sum(1, keepdim=True).clamp_min(1)
        return w[~self.outliers].abs().mean(-1).view(-1, 1)

    def effective_weight(self):
        if self.training:
            self.scale = self.binary_scale()
        scale = self.binary_scale() if (not self.training and self.corrections["fresh_scale"]) else self.scale
        kept = self.weight if self.corrections["train_outlier"] else self.weight.detach()
        return torch.where(self.outliers, kept, SignStraightThrough.apply(self.weight) * scale)

    def forward(self, x):
        return F.linear(x, self.effective_weight(), self.bias)


NONE = dict(zero_point=False, per_row_scale=False, fresh_scale=False, train_outlier=False, keep_head=False)
ALL = dict(zero_point=True, per_row_scale=True, fresh_scale=True, train_outlier=True, keep_head=False)

# name -> (model factory, corrections, outlier fraction, steps, lr)
CASES = {
    "llama_tied_reference": (lambda: llama(), NONE, 0.1, 3, 1e-3),
    "llama_tied_corrected": (lambda: llama(), ALL, 0.2, 3, 1e-3),
    "llama_keep_head": (lambda: llama(tie_word_embeddings=False), dict(NONE, zero_point=True, keep_head=True),
                        0.1, 3, 1e-3),
    # OPT's dropout (0.1 in its configs, active under the Trainer) is off: pbllm-qat trains without it.
    "opt_project_reference": (lambda: opt(dropout=0.0, word_embed_proj_dim=16), NONE, 0.1, 3, 1e-3),
}


def replace_linears(model, fraction, corrections):
    """As the reference's replace_with_qlinear: every nn.Linear, the head too."""
    replaced = {}
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or (name == "lm_head" and corrections["keep_head"]):
            continue
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        qlinear = PartiallyBinarizedLinear(module.weight, module.bias, fraction, corrections)
        setattr(parent, name.rpartition(".")[2], qlinear)
        replaced[name] = qlinear
    return replaced


def make_case(out, name, factory, corrections, fraction, steps, lr):
    torch.manual_seed(zlib.crc32(name.encode()))
    model = factory()
    randomize(model)
    directory = out / name
    model.save_pretrained(directory, safe_serialization=True)
    model.config.use_cache = False
    for parameter in model.parameters():  # the reference's prepare_model_for_training
        parameter.requires_grad = False
    linears = replace_linears(model, fraction, corrections)
    tensors = {}
    for linear_name, q in linears.items():
        tensors[f"outliers/{linear_name}.weight"] = q.outliers.clone()
        tensors[f"latent0/{linear_name}.weight"] = q.weight.detach().clone()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=steps * 0.05, num_training_steps=steps)
    ids = torch.randint(0, VOCAB, (steps * WINDOWS_PER_STEP, SEQ), generator=torch.Generator().manual_seed(11))
    model.train()
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        step_loss = 0.0
        for micro in range(WINDOWS_PER_STEP // BATCH):
            batch = ids[step * WINDOWS_PER_STEP + micro * BATCH:][:BATCH]
            loss = model(input_ids=batch, labels=batch).loss
            (loss / (WINDOWS_PER_STEP // BATCH)).backward()
            step_loss += loss.item() / (WINDOWS_PER_STEP // BATCH)
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        if step == 0:
            for linear_name, q in linears.items():
                tensors[f"grad0/{linear_name}.weight"] = q.weight.grad.clone()
                if q.bias is not None:
                    tensors[f"grad0/{linear_name}.bias"] = q.bias.grad.clone()
        optimizer.step()
        schedule.step()
        losses.append(step_loss)
    model.eval()
    for linear_name, q in linears.items():
        tensors[f"latent/{linear_name}.weight"] = q.weight.detach().clone()
        if q.bias is not None:
            tensors[f"bias/{linear_name}.bias"] = q.bias.detach().clone()
        with torch.no_grad():
            tensors[f"effective/{linear_name}.weight"] = q.effective_weight().clone()
    tensors["ids"] = ids
    tensors["losses"] = torch.tensor(losses, dtype=torch.float64)
    settings = dict(corrections, outlier_fraction=fraction, steps=steps, lr=lr, batch=BATCH,
                    accumulation=WINDOWS_PER_STEP // BATCH)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "oracle.safetensors"),
              metadata={"settings": json.dumps(settings)})


def schedule_factors(steps):
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=steps * 0.05, num_training_steps=steps)
    factors = []
    for _ in range(steps):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return torch.tensor(factors, dtype=torch.float64)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for name, case in CASES.items():
        make_case(out, name, *case)
    save_file({f"steps_{n}": schedule_factors(n) for n in (3, 30, 300, 1000)}, str(out / "lr_factors.safetensors"))
    print(f"wrote {len(CASES)} QAT oracle cases to {out}")


if __name__ == "__main__":
    main()
