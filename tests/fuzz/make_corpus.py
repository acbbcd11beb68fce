#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (checked in under tests/fuzz/corpus/):
small valid inputs of each format, made with the libraries that define them
(safetensors, torch.save, tokenizers) or copied from the bundled files.

  tests/fuzz/make_corpus.py
"""
import gzip, json, shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"
torch.manual_seed(0)

save_file({"a": torch.randn(2, 3), "b": torch.randn(4).half(), "c": torch.randn(3, 1).bfloat16()},
          CORPUS / "safetensors" / "three_dtypes.safetensors", metadata={"format": "pt"})
save_file({"x.weight": torch.arange(6, dtype=torch.float32).view(2, 3)}, CORPUS / "safetensors" / "one.safetensors")

torch.save({"w": torch.randn(2, 3), "h": torch.randn(3).half(), "view": torch.randn(4, 4)[1:3, ::2]},
           CORPUS / "torch_pickle" / "state_dict.bin")
torch.save({"x": torch.zeros(1)}, CORPUS / "torch_pickle" / "one.bin")

shutil.copy(ROOT / "data/stories260K/config.json", CORPUS / "config" / "llama.json")
(CORPUS / "config" / "opt.json").write_text(json.dumps({
    "model_type": "opt", "vocab_size": 64, "hidden_size": 16, "ffn_dim": 32, "num_hidden_layers": 2,
    "num_attention_heads": 2, "max_position_embeddings": 32, "word_embed_proj_dim": 16,
    "do_layer_norm_before": True, "activation_function": "relu", "torch_dtype": "float16"}))
(CORPUS / "config" / "llama_gqa_rope.json").write_text(json.dumps({
    "model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64, "rope_theta": 100000.0,
    "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}))

text = (ROOT / "data/ptb/ptb.valid.txt").read_text()[:20000]
bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
bpe.train_from_iterator([text], trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                    special_tokens=["<|endoftext|>"]))
bpe.save(str(CORPUS / "tokenizer_json" / "byte_level_300.json"))

shutil.copy(ROOT / "data/stories260K/tokenizer.model", CORPUS / "sentencepiece" / "stories260K.model")

(CORPUS / "c4" / "three_lines.jsonl").write_text(
    json.dumps({"text": "A first document.\nWith two lines.", "timestamp": "2019-04-25T12:57:54Z", "url": "u"}) + "\n" +
    json.dumps({"text": "Unicode: h\u00e9llo \u2581 \ud83d\ude00", "url": "v"}) + "\n" +
    json.dumps({"text": ""}) + "\n")
# Packed PB files: a tiny random LLaMA (bf16) quantized by the built
# pbllm-quantize with --format pb, then for each seed the packed parts of one
# Linear (and its metadata entry) alone, so that a seed is a few KiB.
def packed_seeds():
    import subprocess, tempfile
    from safetensors import safe_open
    quantize = ROOT / "build/tools/pbllm-quantize"
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        subprocess.run(["python3", ROOT / "scripts/make_random_llama.py", work / "model", "--hidden", "64",
                        "--intermediate", "96", "--layers", "1", "--heads", "2", "--vocab", "32000", "--device", "cpu"],
                       check=True, capture_output=True)
        runs = [(method, [quantize, work / "model", "text:" + str(ROOT / "data/ptb/ptb.valid.txt"), method,
                          "--nsamples", "2", "--seqlen", "32", *extra])
                for method, extra in [("xnor", []), ("sign", ["--groupsize", "32", "--blocksize", "32"]),
                                      ("2bit", []), ("prune", []), ("no", [])]]
        # pbllm-qat's packed output: affine 8-bit grids (format version 3).
        runs.append(("qat_affine", [ROOT / "build/tools/pbllm-qat", work / "model", "ptb", "--train_steps", "1",
                                    "--seqlen", "32", "--batch_size", "1", "--gradient_accumulation_steps", "1"]))
        for name, command in runs:
            out = work / name
            subprocess.run([*command, "--save", out, "--format", "pb", "--log-level", "error"], check=True,
                           stdout=subprocess.DEVNULL)
            with safe_open(out / "model.pb.safetensors", "pt") as f:
                metadata = f.metadata()
                linear = "model.layers.0.self_attn.k_proj.weight"
                tensors = {k: f.get_tensor(k) for k in f.keys() if k.startswith(linear + ".pb.")}
            metadata["pbllm.linears"] = json.dumps({linear: json.loads(metadata["pbllm.linears"])[linear]})
            save_file(tensors, CORPUS / "packed" / f"{name}.pb.safetensors", metadata=metadata)

(CORPUS / "packed").mkdir(exist_ok=True)
packed_seeds()
print("corpus written to", CORPUS)
