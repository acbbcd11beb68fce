#!/usr/bin/env python3
"""A random LLaMA checkpoint in Hugging Face layout, for benchmarks: fp16 (or
--dtype float32) safetensors shards (one per decoder layer, written without the safetensors
package, which a bare GPU image may lack), config.json, and the bundled LLaMA
tokenizer. Weights are N(0, 0.02) (norms 1), generated on --device.

  scripts/make_random_llama.py OUT_DIR                # LLaMA-7B shape
  scripts/make_random_llama.py OUT_DIR --hidden 256 --intermediate 688 --layers 2 --heads 4
  scripts/make_random_llama.py OUT_DIR --layers 1 --dtype float32     # the issue-13 benchmark layer
"""
import argparse
import ctypes
import json
import shutil
import struct
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out_dir")
parser.add_argument("--hidden", type=int, default=4096)
parser.add_argument("--intermediate", type=int, default=11008)
parser.add_argument("--layers", type=int, default=32)
parser.add_argument("--heads", type=int, default=32)
parser.add_argument("--vocab", type=int, default=32000)
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
args = parser.parse_args()
DTYPE = getattr(torch, args.dtype)
SAFETENSORS_DTYPE = {"float16": "F16", "float32": "F32"}[args.dtype]


def write_safetensors(path, tensors):
    """The safetensors format: u64 header length, JSON header, raw little-endian data."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0  # transformers refuses a file without it
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": SAFETENSORS_DTYPE, "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for tensor in tensors.values():
            host = tensor.contiguous().cpu()  # bytes through ctypes: no numpy needed
            out.write(ctypes.string_at(host.data_ptr(), host.numel() * host.element_size()))
    tmp.replace(path)


def random(*shape):
    return (torch.randn(*shape, device=args.device) * 0.02).to(DTYPE)


out = Path(args.out_dir)
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(args.seed)
h, f = args.hidden, args.intermediate
shards = []  # (file name, {tensor name: tensor})
shards.append(("model-embed.safetensors", {"model.embed_tokens.weight": random(args.vocab, h)}))
for i in range(args.layers):
    p = f"model.layers.{i}."
    shards.append((f"model-layer-{i:03d}.safetensors", {
        p + "self_attn.q_proj.weight": random(h, h), p + "self_attn.k_proj.weight": random(h, h),
        p + "self_attn.v_proj.weight": random(h, h), p + "self_attn.o_proj.weight": random(h, h),
        p + "mlp.gate_proj.weight": random(f, h), p + "mlp.up_proj.weight": random(f, h),
        p + "mlp.down_proj.weight": random(h, f),
        p + "input_layernorm.weight": torch.ones(h, dtype=DTYPE),
        p + "post_attention_layernorm.weight": torch.ones(h, dtype=DTYPE)}))
shards.append(("model-head.safetensors", {"model.norm.weight": torch.ones(h, dtype=DTYPE),
                                          "lm_head.weight": random(args.vocab, h)}))
weight_map, total = {}, 0
for file, tensors in shards:
    write_safetensors(out / file, tensors)
    for name, tensor in tensors.items():
        weight_map[name] = file
        total += tensor.numel() * tensor.element_size()
(out / "model.safetensors.index.json").write_text(
    json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
(out / "config.json").write_text(json.dumps({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h, "intermediate_size": f,
    "num_hidden_layers": args.layers, "num_attention_heads": args.heads, "num_key_value_heads": args.heads,
    "vocab_size": args.vocab, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    "hidden_act": "silu", "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    "torch_dtype": args.dtype}, indent=1))
shutil.copy(ROOT / "tests/data/tokenizers/llama/tokenizer.model", out / "tokenizer.model")
(out / "tokenizer_config.json").write_text(json.dumps({
    "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
    "add_bos_token": True, "add_eos_token": False, "legacy": True}, indent=1))
print(f"wrote {out}: {total / 2**30:.2f} GiB of {args.dtype} weights in {len(shards)} shards")
