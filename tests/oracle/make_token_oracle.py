#!/usr/bin/env python3
"""Oracle fixtures for the tokenizer, dataset, sampler and perplexity tests,
computed with Hugging Face transformers / tokenizers / sentencepiece and
Python's random module on the bundled files.

    make_token_oracle.py OUT_DIR

OUT_DIR/token_ids.safetensors: "<tokenizer>/<dataset>" -> the evaluation ids
  transformers' slow tokenizers give (BOS included), and "windows/<seed>/<n>/<L>"
  -> the window starts random.randint draws after random.seed(seed).
OUT_DIR/gpt2_json, gpt2_json_digits: byte-level tokenizer.json folders, with
  ids from the Rust `tokenizers` under "<folder>/<dataset>".
OUT_DIR/perplexity.json: stories260K perplexity on wikitext2 / ptb test,
  transformers forward, seqlen 512, the reference's convention.
"""
import json
import random
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Tokenizer, GPT2TokenizerFast, LlamaTokenizer

ROOT = Path(__file__).resolve().parents[2]
TOKENIZERS = ROOT / "tests/data/tokenizers"


def wikitext2_test():
    # Hugging Face 'wikitext-2-raw-v1' rows: the lines with their newline, " \n" as "".
    rows = ["" if line == " \n" else line for line in open(ROOT / "data/wikitext-2-raw/wiki.test.raw", newline="").readlines()]
    return "\n\n".join(rows)


def ptb_test():
    # Hugging Face 'ptb_text_only' sentences: the lines of the file, stripped.
    return " ".join(line.strip() for line in open(ROOT / "data/ptb/ptb.test.txt", encoding="utf-8"))


def slow_tokenizers():
    return {
        "opt": GPT2Tokenizer.from_pretrained(TOKENIZERS / "opt"),
        "gpt2": GPT2Tokenizer(str(TOKENIZERS / "gpt2/vocab.json"), str(TOKENIZERS / "gpt2/merges.txt")),
        "llama": LlamaTokenizer(str(TOKENIZERS / "llama/tokenizer.model"), legacy=True),
        "stories260K": LlamaTokenizer.from_pretrained(ROOT / "data/stories260K", legacy=True),
    }


def byte_level_json_folders(out):
    fast = GPT2TokenizerFast(str(TOKENIZERS / "gpt2/vocab.json"), str(TOKENIZERS / "gpt2/merges.txt"))
    spec = json.loads(fast.backend_tokenizer.to_str())
    folders = {"gpt2_json": spec}
    digits = json.loads(json.dumps(spec))
    digits["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    folders["gpt2_json_digits"] = digits
    for name, content in folders.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / name / "tokenizer.json").write_text(json.dumps(content))
    return {name: Tokenizer.from_file(str(out / name / "tokenizer.json")) for name in folders}


def window_starts():
    starts = {}
    for seed in (0, 1, 42, 1234567, 2**33 + 5):
        for count, seqlen in ((1000, 100), (300000, 2048), (2**20 + 3, 512), (4097, 2048)):
            random.seed(seed)
            starts[f"windows/{seed}/{count}/{seqlen}"] = torch.tensor(
                [random.randint(0, count - seqlen - 1) for _ in range(64)], dtype=torch.int64)
    return starts


def perplexity(model, ids, seqlen):
    # The reference's eval loop: floor(n / seqlen) windows, exp(mean of window losses).
    windows = len(ids) // seqlen
    losses = []
    with torch.no_grad():
        for i in range(windows):
            batch = torch.tensor(ids[i * seqlen:(i + 1) * seqlen]).unsqueeze(0)
            logits = model(batch).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], batch[0, 1:])
            losses.append(loss.item())
    return {"perplexity": float(torch.exp(torch.tensor(losses, dtype=torch.float64).mean())), "windows": windows,
            "tokens": len(ids)}


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    texts = {"wikitext2": wikitext2_test(), "ptb": ptb_test()}
    tensors = window_starts()
    stories_ids = {}
    for name, tokenizer in slow_tokenizers().items():
        for dataset, text in texts.items():
            ids = tokenizer(text)["input_ids"]
            tensors[f"{name}/{dataset}"] = torch.tensor(ids, dtype=torch.int32)
            if name == "stories260K":
                stories_ids[dataset] = ids
    json_tokenizers = byte_level_json_folders(out)
    smollm2 = ROOT / "models/SmolLM2-135M"  # made by scripts/get-smollm2.sh; its test skips without it
    if (smollm2 / "tokenizer.json").exists():
        json_tokenizers["SmolLM2-135M"] = AutoTokenizer.from_pretrained(smollm2)
    for name, tokenizer in json_tokenizers.items():
        for dataset, text in texts.items():
            ids = tokenizer(text)["input_ids"] if name == "SmolLM2-135M" else tokenizer.encode(text).ids
            tensors[f"{name}/{dataset}"] = torch.tensor(ids, dtype=torch.int32)
    save_file(tensors, str(out / "token_ids.safetensors"))

    model = AutoModelForCausalLM.from_pretrained(ROOT / "data/stories260K", dtype=torch.float32).eval()
    result = {dataset: perplexity(model, ids, 512) for dataset, ids in stories_ids.items()}
    (out / "perplexity.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {len(tensors)} id arrays and {result} to {out}")


if __name__ == "__main__":
    main()
