#!/usr/bin/env python3
"""pbllm-quantize against the reference's own run.py path (hahnyuan/PB-LLM gptq_pb, transformers 4.35.2)
on the same random float32 LLaMA checkpoints, calibration (ptb), method (xnor, low_frac 0.9, hessian,
8 bits, blocksize 128) and threads, one after the other in the same session: wall time and peak RSS of
each process, the reference's GPTQ-PB part (the sum of its fasterquant "time" lines), pbllm's floor (the
sum of its phases' FLOP floors, from its --json) and both total losses (the same job: they agree to float
rounding, which the masks amplify in later layers). scripts/bench_quantize.sh sets it up.

  bench_quantize.py run --reference CHECKOUT --pbllm BUILD/tools/pbllm-quantize --work DIR
      [--layer-job] [--widths 512,1024,2048,4096] [--nsamples 4,8,16,32,64] [--nsamples-width 1024]
  bench_quantize.py plot RESULTS.json OUT.png
  bench_quantize.py reference MODEL_DIR --checkout CHECKOUT --nsamples N --threads T   (one reference run)
  bench_quantize.py opt-check --reference CHECKOUT --pbllm BUILD/tools/pbllm-quantize --work DIR
      the OPT check of --inverse-factor one-cholesky: a random OPT (OPT-125m's vocabulary and tokenizer,
      hidden 768, 2 layers, 2048 positions) quantized by the reference's OPT path and by pbllm with each
      inverse factor; each Linear's loss of the three, side by side

The reference runs on the CPU as its code stands but for the two stand-ins of reference_peer.py. It runs
in WORK/runs/<point>, where it writes its masks (outputs/mask) and its tokenized windows (cache/), as it
does in its own folder.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from reference_peer import ROOT, import_reference, reference_model_name

SEQLEN = 2048
# Float rounding the masks amplify: layer 1's losses move by up to 0.25% from one factorisation to another.
OPT_CHECK_TOLERANCE = 0.005
METHOD = ["xnor", "--low_frac", "0.9", "--salient_metric", "hessian", "--high_bit", "8", "--blocksize", "128"]


# ---------------------------------------------------------------- one reference run (a child process)

def run_reference(args):
    import_reference(args.checkout, args.threads)
    import datautils
    import run

    model_name = reference_model_name(args.model)
    run.args = argparse.Namespace(
        model=model_name, nsamples=args.nsamples, seed=0, minlayer=-1, maxlayer=1000, quant_only="",
        invert=False, low_quant_method="xnor", groupsize=-1, high_bit=8, salient_metric="hessian",
        disable_gptq=False, low_frac=0.9, percdamp=0.01, blocksize=128, plot=False)
    # run.py's __main__, without its evaluation: load, calibration data, quantize.
    model = run.get_model(model_name)
    model.eval()
    dataloader, _ = datautils.get_loaders("ptb", nsamples=args.nsamples, seed=0, model=model_name,
                                          seqlen=model.seqlen)
    run.quant_sequential(model, dataloader, "cpu")


# ---------------------------------------------------------------- the sweep

def measured(command, log, cwd=None):
    """(wall seconds, peak RSS bytes) of a child process; its output goes to LOG."""
    start = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench_quantize: {' '.join(map(str, command))} failed; see {log}")
    return wall, usage.ru_maxrss * 1024


def random_model(work, hidden, layers):
    """A random float32 LLaMA of that width (LLaMA-7B's proportions: intermediate 11008/4096 of hidden,
    heads of 128), made once and kept under WORK/models. The intermediate size is rounded to a multiple of
    the blocksize: the reference asserts that down_proj's columns are one."""
    out = work / "models" / f"llama-h{hidden}-l{layers}"
    if not (out / "config.json").exists():
        intermediate = round(hidden * 11008 / 4096 / 128) * 128
        subprocess.run([sys.executable, ROOT / "scripts/make_random_llama.py", out, "--hidden", str(hidden),
                        "--intermediate", str(intermediate), "--layers", str(layers),
                        "--heads", str(max(1, hidden // 128)), "--dtype", "float32", "--device", "cpu"],
                       check=True, stdout=subprocess.DEVNULL)
    return out


def one_point(args, work, label, hidden, layers, nsamples):
    model = random_model(work, hidden, layers)
    tag = f"{label}-h{hidden}-l{layers}-n{nsamples}"
    run_dir = work / "runs" / tag
    shutil.rmtree(run_dir, ignore_errors=True)  # the reference caches its tokenized windows: start cold
    (run_dir / "outputs").mkdir(parents=True)  # where the reference saves its masks
    ref_log = run_dir / "reference.log"
    ref_wall, ref_rss = measured(
        [sys.executable, Path(__file__).resolve(), "reference", model, "--checkout", args.reference,
         "--nsamples", str(nsamples), "--threads", str(args.threads)], ref_log, cwd=run_dir)
    ref_text = ref_log.read_text()
    ref_gptq = sum(float(t) for t in re.findall(r"^time ([0-9.]+)$", ref_text, re.M))
    ref_loss = sum(float(e) for e in re.findall(r"^error ([0-9.e+-]+)$", ref_text, re.M))
    report = run_dir / "pbllm.json"
    pb_wall, pb_rss = measured(
        [args.pbllm, model, "ptb", *METHOD, "--nsamples", str(nsamples), "--seqlen", str(SEQLEN),
         "--threads", str(args.threads), "--json", report], run_dir / "pbllm.log")
    result = json.loads(report.read_text())
    profile = result["profile"]
    pb_loss = sum(linear["loss"] for linear in result["linears"])
    phases = profile["phases"]
    point = {
        "label": label, "hidden": hidden, "layers": layers, "nsamples": nsamples, "threads": args.threads,
        "reference": {"wall_seconds": ref_wall, "peak_rss_bytes": ref_rss, "gptq_pb_seconds": ref_gptq,
                      "total_loss": ref_loss},
        "pbllm": {"wall_seconds": pb_wall, "peak_rss_bytes": pb_rss, "total_loss": pb_loss,
                  "gptq_pb_seconds": sum(phases[p]["seconds"] for p in
                                         ("factorisation", "mask", "column_loop", "trailing_gemms")),
                  "floor_seconds": sum(p.get("floor_seconds", 0.0) for p in phases.values()),
                  "phases": {name: p["seconds"] for name, p in phases.items()},
                  "gemm_flops_per_second": profile["gemm_flops_per_second"]},
    }
    ref, pb = point["reference"], point["pbllm"]
    print(f"{tag:28s} reference {ref_wall:7.1f} s {ref_rss / 2**30:5.2f} GiB | pbllm {pb_wall:7.1f} s "
          f"{pb_rss / 2**30:5.2f} GiB (floor {pb['floor_seconds']:6.1f} s, {pb_wall / pb['floor_seconds']:.2f}x) | "
          f"{ref_wall / pb_wall:.2f}x faster, memory {pb_rss / ref_rss:.2f}x | total loss {ref_loss:.6g} / "
          f"{pb_loss:.6g}", flush=True)
    return point


def random_opt(work):
    """A random float32 OPT saved by transformers itself, with the bundled OPT tokenizer (run.py's OPT
    path calibrates in windows of max_position_embeddings: 2048, as OPT-125m)."""
    out = work / "models" / "opt-random-h768-l2"
    if not (out / "config.json").exists():
        import torch
        from transformers import OPTConfig, OPTForCausalLM

        torch.manual_seed(0)
        config = OPTConfig(vocab_size=50272, hidden_size=768, ffn_dim=3072, num_hidden_layers=2,
                           num_attention_heads=12, max_position_embeddings=2048, word_embed_proj_dim=768,
                           do_layer_norm_before=True, pad_token_id=1, bos_token_id=2, eos_token_id=2)
        OPTForCausalLM(config).save_pretrained(out, safe_serialization=True)
        for file in (ROOT / "tests/data/tokenizers/opt").iterdir():
            shutil.copy(file, out / file.name)
    return out


def reference_losses(log_text):
    """{(layer, name): loss} from run.py's "<layer> <name>" and "error <loss>" lines."""
    losses, current = {}, None
    for line in log_text.splitlines():
        if (named := re.fullmatch(r"(\d+) (\S+)", line)):
            current = (int(named.group(1)), named.group(2))
        elif (error := re.fullmatch(r"error ([0-9.e+-]+)", line)) and current:
            losses[current] = float(error.group(1))
    return losses


def opt_check(args):
    work = Path(args.work).resolve()
    model = random_opt(work)
    run_dir = work / "runs" / "opt-check"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "outputs").mkdir(parents=True)
    nsamples = 8
    measured([sys.executable, Path(__file__).resolve(), "reference", model, "--checkout", args.reference,
              "--nsamples", str(nsamples), "--threads", str(args.threads)], run_dir / "reference.log", cwd=run_dir)
    columns = {"reference run.py": reference_losses((run_dir / "reference.log").read_text())}
    for factor in ("reference", "one-cholesky"):
        report = run_dir / f"pbllm-{factor}.json"
        measured([args.pbllm, model, "ptb", *METHOD, "--nsamples", str(nsamples), "--seqlen", str(SEQLEN),
                  "--threads", str(args.threads), "--inverse-factor", factor, "--json", report],
                 run_dir / f"pbllm-{factor}.log")
        columns[f"pbllm {factor}"] = {(l["layer"], l["name"]): l["loss"]
                                      for l in json.loads(report.read_text())["linears"]}
    keys = list(columns["pbllm reference"])
    if set(keys) != set(columns["reference run.py"]):
        raise SystemExit(f"opt-check: the reference quantized {sorted(columns['reference run.py'])}, pbllm {keys}")
    print(f"{'Linear':24s}" + "".join(f"{name:>22s}" for name in columns))
    for key in keys:
        print(f"{key[0]} {key[1]:22s}" + "".join(f"{c[key]:22.6f}" for c in columns.values()))
    ref, failed = columns["reference run.py"], False
    for name in ("pbllm reference", "pbllm one-cholesky"):
        if set(columns[name]) != set(ref):
            raise SystemExit(f"opt-check: {name} quantized {sorted(columns[name])}, the reference {sorted(ref)}")
        worst = max(abs(columns[name][k] / ref[k] - 1) for k in keys)
        failed = failed or worst > OPT_CHECK_TOLERANCE
        print(f"{name}: largest relative difference from the reference's losses {worst:.2e}")
    if failed:
        raise SystemExit(f"opt-check: a loss differs from the reference's by more than {OPT_CHECK_TOLERANCE:.1%}")
    print(f"opt-check: every loss within {OPT_CHECK_TOLERANCE:.1%} of the reference's")


def integers(text):
    return [int(x) for x in text.split(",") if x]


def run_sweep(args):
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    points = []
    if args.layer_job:  # the one LLaMA-7B-shaped layer, nsamples 4
        points.append(one_point(args, work, "layer", 4096, 1, 4))
    for hidden in integers(args.widths):
        points.append(one_point(args, work, "width", hidden, 2, 4))
    for nsamples in integers(args.nsamples):
        points.append(one_point(args, work, "nsamples", args.nsamples_width, 2, nsamples))
    results = work / "results.json"
    results.write_text(json.dumps({"host": os.uname().nodename, "cpus": os.cpu_count(),
                                   "method": METHOD, "seqlen": SEQLEN, "points": points}, indent=1))
    print(f"wrote {results}")


# ---------------------------------------------------------------- the plot

def plot(args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        points = json.loads(Path(args.results).read_text())["points"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"bench_quantize: cannot read {args.results}: {error}") from None
    if not isinstance(points, list) or not all(isinstance(p, dict) and "label" in p for p in points):
        raise SystemExit(f"bench_quantize: {args.results} is not a results.json of bench_quantize.py run")
    sweeps = [("width", "hidden", "model width (hidden; 2 layers, nsamples 4 x 2048)"),
              ("nsamples", "nsamples", "nsamples x 2048 (2 layers, hidden %s)")]
    sweeps = [(label, key, title) for label, key, title in sweeps if any(p["label"] == label for p in points)]
    if not sweeps:
        raise SystemExit(f"bench_quantize: {args.results} holds no width or nsamples sweep")
    figure, axes = plt.subplots(2, len(sweeps), figsize=(6.4 * len(sweeps), 8), dpi=100, squeeze=False)
    for column, (label, key, title) in enumerate(sweeps):
        rows = sorted((p for p in points if p["label"] == label), key=lambda p: p[key])
        x = [p[key] for p in rows]
        if label == "nsamples":
            title = title % rows[0]["hidden"]
        time_axis, memory_axis = axes[0][column], axes[1][column]
        time_axis.plot(x, [p["reference"]["wall_seconds"] for p in rows], "o-", label="reference run.py")
        time_axis.plot(x, [p["pbllm"]["wall_seconds"] for p in rows], "s-", label="pbllm-quantize")
        time_axis.plot(x, [p["pbllm"]["floor_seconds"] for p in rows], "k--", label="floor (FLOPs / GEMM rate)")
        time_axis.set_ylabel("wall seconds")
        memory_axis.plot(x, [p["reference"]["peak_rss_bytes"] / 2**30 for p in rows], "o-", label="reference run.py")
        memory_axis.plot(x, [p["pbllm"]["peak_rss_bytes"] / 2**30 for p in rows], "s-", label="pbllm-quantize")
        memory_axis.set_ylabel("peak RSS (GiB)")
        time_axis.set_yscale("log")
        memory_axis.set_ylim(bottom=0)
        for axis in (time_axis, memory_axis):
            axis.set_xscale("log", base=2)
            axis.set_xticks(x, [str(v) for v in x])
            axis.set_xlabel(title)
            axis.grid(True, which="both", alpha=0.3)
            axis.legend()
    figure.suptitle("GPTQ-PB quantization (ptb, xnor, low_frac 0.9, hessian, 8 bits) on random float32 LLaMAs")
    figure.tight_layout()
    figure.savefig(args.out)
    print(f"wrote {args.out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    sweep = modes.add_parser("run")
    sweep.add_argument("--reference", required=True, help="a hahnyuan/PB-LLM checkout")
    sweep.add_argument("--pbllm", required=True, help="the pbllm-quantize binary")
    sweep.add_argument("--work", required=True, help="models, logs and results.json go here")
    sweep.add_argument("--threads", type=int, default=os.cpu_count())
    sweep.add_argument("--layer-job", action="store_true", help="also the one LLaMA-7B-shaped layer")
    sweep.add_argument("--widths", default="512,1024,2048,4096")
    sweep.add_argument("--nsamples", default="4,8,16,32,64")
    sweep.add_argument("--nsamples-width", type=int, default=1024)
    figure = modes.add_parser("plot")
    figure.add_argument("results")
    figure.add_argument("out")
    check = modes.add_parser("opt-check")
    check.add_argument("--reference", required=True, help="a hahnyuan/PB-LLM checkout")
    check.add_argument("--pbllm", required=True, help="the pbllm-quantize binary")
    check.add_argument("--work", required=True)
    check.add_argument("--threads", type=int, default=os.cpu_count())
    reference = modes.add_parser("reference")
    reference.add_argument("model")
    reference.add_argument("--checkout", required=True)
    reference.add_argument("--nsamples", type=int, required=True)
    reference.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    {"run": run_sweep, "plot": plot, "reference": run_reference, "opt-check": opt_check}[args.mode](args)


if __name__ == "__main__":
    main()
