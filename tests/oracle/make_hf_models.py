#!/usr/bin/env python3
"""Oracle fixtures for the model tests: tiny random OPT and LLaMA models built
and saved by Hugging Face transformers itself, in every weights layout the
loader reads, each with the logits transformers computes for fixed token ids.

    make_hf_models.py OUT_DIR

writes OUT_DIR/<case>/ (a save_pretrained directory) and
OUT_DIR/<case>/oracle.safetensors holding "ids" [2, T] int64 and "logits"
[2, T, vocab] float32. tests/test_model_oracle.cpp compares pbllm's forward.
"""
import sys
import zlib
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

VOCAB = 96
SEQ = 24


def opt(**overrides):
    base = dict(vocab_size=VOCAB, hidden_size=32, ffn_dim=48, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=64, word_embed_proj_dim=32, do_layer_norm_before=True,
                pad_token_id=1, bos_token_id=2, eos_token_id=2)
    base.update(overrides)
    return OPTForCausalLM(OPTConfig(**base))


def llama(**overrides):
    base = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
                tie_word_embeddings=True)
    base.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**base))


# name -> (model factory, save_pretrained arguments, dtype the weights are stored in)
CASES = {
    "opt_pre_ln": (lambda: opt(), dict(safe_serialization=True), torch.float32),
    "opt_post_ln_project": (lambda: opt(do_layer_norm_before=False, word_embed_proj_dim=16),
                            dict(safe_serialization=False), torch.float32),
    "opt_sharded_bin": (lambda: opt(), dict(safe_serialization=False, max_shard_size="20KB"), torch.float32),
    "llama_gqa_sharded": (lambda: llama(), dict(safe_serialization=True, max_shard_size="20KB"), torch.float32),
    "llama_untied_bin": (lambda: llama(tie_word_embeddings=False, num_key_value_heads=4, attention_bias=True),
                         dict(safe_serialization=False), torch.float32),
    "llama_bf16": (lambda: llama(tie_word_embeddings=False), dict(safe_serialization=True), torch.bfloat16),
    "llama_fp16_sharded_bin": (lambda: llama(), dict(safe_serialization=False, max_shard_size="20KB"), torch.float16),
}


def randomize(model):
    # Hugging Face's init (std 0.02, unit norms, zero biases) would hide layout
    # errors in biases and norm weights: give every parameter visible values.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + 0.2 * torch.randn_like(parameter))
            else:
                parameter.copy_(0.15 * torch.randn_like(parameter))


def make_case(out: Path, name: str, factory, save_args, dtype):
    torch.manual_seed(zlib.crc32(name.encode()))
    model = factory()
    randomize(model)
    model = model.to(dtype)
    directory = out / name
    model.save_pretrained(directory, **save_args)
    # The oracle is transformers reading the saved files back, computing in float32.
    reference = AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32,
                                                     attn_implementation="eager").eval()
    ids = torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = reference(input_ids=ids).logits.float().contiguous()
    save_file({"ids": ids, "logits": logits}, str(directory / "oracle.safetensors"))


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for name, (factory, save_args, dtype) in CASES.items():
        make_case(out, name, factory, save_args, dtype)
    print(f"wrote {len(CASES)} oracle models to {out}")


if __name__ == "__main__":
    main()
