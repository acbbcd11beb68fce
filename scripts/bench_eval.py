#!/usr/bin/env python3
"""A peer's side of scripts/bench_eval.sh: perplexity of MODEL_DIR on the WikiText-2 test text
("\\n\\n".join(rows), the reference's convention), first N windows of 2048, and tokens per second.

  bench_eval.py MODEL_DIR [--dtype auto|float32|bfloat16|float16]   transformers' whole-model forward
      (auto: float32 on the CPU, float16 on --device cuda, as pbllm-eval's --compute-dtype auto)
      [--save-ids IDS.pt]   also keep the token ids, for the reference below
  bench_eval.py MODEL_DIR --reference CHECKOUT --ids IDS.pt   the reference's own llama_eval
      (hahnyuan/PB-LLM gptq_pb/eval_ppl_utils.py, transformers 4.35.2: run it with that venv's python),
      on the model loaded as its run.py loads it (torch_dtype="auto": the checkpoint's dtype), on the ids
      the transformers run tokenized (4.35's tokenizers cannot read a newer tokenizer.json)
"""
import argparse
import contextlib
import io
import math
import re
import time
from pathlib import Path

import torch

from reference_peer import ROOT, import_reference, reference_model_name


def test_ids(tokenizer_dir, data):
    from transformers import AutoTokenizer

    rows = ["" if line == " \n" else line for line in open(data, newline="").readlines()]
    return AutoTokenizer.from_pretrained(tokenizer_dir)("\n\n".join(rows), return_tensors="pt").input_ids


def transformers_eval(args, ids, windows):
    from transformers import AutoModelForCausalLM

    if args.dtype == "auto":
        dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    else:
        dtype = getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype).to(args.device).eval()
    ids = ids.to(args.device)
    losses, start = [], time.perf_counter()
    with torch.no_grad():
        for i in range(windows):
            batch = ids[:, i * args.seqlen:(i + 1) * args.seqlen]
            logits = model(batch).logits.float()
            losses.append(torch.nn.functional.cross_entropy(logits[0, :-1], batch[0, 1:]).item())  # waits for the GPU
    return math.exp(sum(losses) / windows), time.perf_counter() - start, str(dtype).replace("torch.", "")


def reference_eval(args, ids, windows):
    import_reference(args.reference, args.threads)
    import eval_ppl_utils
    import run

    model = run.get_model(reference_model_name(args.model_dir))  # sets seqlen 2048
    model.eval()
    if model.seqlen != args.seqlen:
        raise SystemExit(f"bench_eval: the reference evaluates LLaMAs in windows of {model.seqlen}")
    testenc = argparse.Namespace(input_ids=ids[:, :windows * args.seqlen])  # its first N windows only
    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        eval_ppl_utils.llama_eval(model, testenc, "cpu", "wikitext2")
    seconds = time.perf_counter() - start
    found = re.search(r"Perplexity: ([0-9.]+)", printed.getvalue())
    if not found:
        raise SystemExit(f"bench_eval: the reference printed no perplexity:\n{printed.getvalue()}")
    return float(found.group(1)), seconds, str(next(model.parameters()).dtype).replace("torch.", "")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--data", default=str(ROOT / "data/wikitext-2-raw/wiki.test.raw"))
    parser.add_argument("--seqlen", type=int, default=2048)
    parser.add_argument("--max-windows", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--save-ids", help="write the token ids here (torch.save)")
    parser.add_argument("--reference", help="a hahnyuan/PB-LLM checkout: run its llama_eval instead")
    parser.add_argument("--ids", help="with --reference: the ids a transformers run saved")
    args = parser.parse_args()
    if bool(args.reference) != bool(args.ids):
        raise SystemExit("bench_eval: --reference and --ids go together")
    torch.set_num_threads(args.threads)
    ids = torch.load(args.ids) if args.ids else test_ids(args.model_dir, args.data)
    if args.save_ids:
        torch.save(ids, args.save_ids)
    windows = min(args.max_windows, ids.shape[1] // args.seqlen)
    peer, run = ("reference llama_eval", reference_eval) if args.reference else ("transformers", transformers_eval)
    perplexity, seconds, dtype = run(args, ids, windows)
    print(f"{peer} ({dtype}): wikitext2 perplexity {perplexity:.4f} over {windows} windows of {args.seqlen} "
          f"({ids.shape[1]} tokens), {windows * args.seqlen / seconds:.1f} tokens/s")


if __name__ == "__main__":
    main()
