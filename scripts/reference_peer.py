"""The reference (hahnyuan/PB-LLM's gptq_pb, transformers 4.35.2) made importable on a CPU-only machine
without the network, for the benchmarks that run it beside pbllm (bench_quantize.py, bench_eval.py).
Its code runs as it stands except for two things it cannot do here: its unconditional
torch.cuda.synchronize / empty_cache calls are no-ops without a GPU, and datasets.load_dataset reads the
bundled data/ptb files (the sentences Hugging Face's ptb_text_only holds: the lines, stripped)."""
import importlib.machinery
import os
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ptb_dataset(split):
    name = {"train": "ptb.train.txt", "validation": "ptb.valid.txt", "test": "ptb.test.txt"}[split]
    with open(ROOT / "data/ptb" / name, encoding="utf-8") as f:
        return {"sentence": [line.strip() for line in f]}


def load_dataset(path, name=None, split=None, **_):
    if path != "ptb_text_only":
        raise SystemExit(f"reference_peer: only ptb is bundled (the reference asked for {path})")
    return ptb_dataset(split)


def import_reference(checkout, threads):
    """The reference's gptq_pb folder on sys.path, torch on THREADS threads, the two stand-ins above."""
    import torch

    torch.set_num_threads(threads)
    if not torch.cuda.is_available():  # the reference calls these unconditionally
        torch.cuda.synchronize = lambda *a, **k: None
        torch.cuda.empty_cache = lambda *a, **k: None
    datasets = types.ModuleType("datasets")  # a module with a spec: transformers probes for it
    datasets.__spec__ = importlib.machinery.ModuleSpec("datasets", None)
    datasets.load_dataset = load_dataset
    sys.modules["datasets"] = datasets
    sys.path.insert(0, str(Path(checkout) / "gptq_pb"))


def reference_model_name(model_dir):
    """run.py picks its OPT or LLaMA path from "opt" or "huggyllama" in the model's name: a link with that
    name (by config.json's model_type), made in the working directory and named relative to it (a folder
    above called "opt" must not turn a LLaMA into an OPT)."""
    import json

    kind = json.loads((Path(model_dir) / "config.json").read_text())["model_type"]
    if kind not in ("opt", "llama"):
        raise SystemExit(f"reference_peer: the reference runs OPT and LLaMA, not {kind}")
    link = Path.cwd() / f"{'opt' if kind == 'opt' else 'huggyllama'}-{Path(model_dir).name}"
    if kind == "llama" and "opt" in link.name:
        raise SystemExit(f"reference_peer: run.py would take {link.name} for an OPT: rename the folder")
    target = Path(model_dir).resolve()
    if link.is_symlink() and Path(os.readlink(link)) != target:
        link.unlink()  # a link left by another model of the same folder name (or dangling)
    if not link.is_symlink():
        link.symlink_to(target)
    return link.name
