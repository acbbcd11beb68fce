#!/usr/bin/env python3
"""pbllm sweeps: a grid of pbllm-quantize runs, here (--jobs N) or as a Slurm job array, gathered into
results.csv, a markdown table and a plot.

  scripts/sweep.sh MODEL DATASET METHOD [--low_frac 0.5,0.8,0.9,0.95] [--salient_metric magnitude,hessian]
                   [--corrections none,stats-over-binarized,...|each] [--eval wikitext2,ptb] [--dir DIR]
                   [--jobs N] [--keep-models] [--dry-run] [pbllm-quantize flags]
  scripts/sweep.sh ... --slurm [--partition P] [--gpus-per-task N] [--cpus-per-task N] [--time T]
                   [--sbatch-args "..."] [--dry-run]
  scripts/sweep.sh --collect DIR

Every configuration is one pbllm-quantize run with --eval, a JSON report (DIR/reports/ID.json), a log
(DIR/logs/ID.log) and its exit status (DIR/logs/ID.exit); the full-precision model is evaluated once
with pbllm-eval. A configuration already reported is never run again, so rerunning the same command
resumes a sweep (and a killed pbllm-quantize resumes its own layers). The sweep folder remembers the
flags common to all runs (DIR/sweep.json): a rerun with other flags is refused rather than mixed in.
"""
import argparse
import concurrent.futures
import csv
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
import plot_sweep  # noqa: E402  (beside this file)

# The corrections of the reference's quirks (README, "quirks") and the methods each one changes.
CORRECTIONS = {
    "stats-over-binarized": {"xnor", "sign"},
    "high-range-from-salient": {"xnor", "sign", "no", "2bit", "4bit", "prune"},
    "zero-point-per-row": {"2bit", "4bit"},
}
# Flags the sweep sets itself for every run: passing them through would make runs overwrite each other.
OWN_FLAGS = {"--save", "--json", "--format", "--eval", "--low_frac", "--low-frac",
             "--salient_metric", "--salient-metric", "--overwrite"} | {"--" + c for c in CORRECTIONS} | {
             "--" + c.replace("-", "_") for c in CORRECTIONS}
# pbllm-quantize flags that pbllm-eval shares (with a value), passed on to the full-precision run.
EVAL_FLAGS = {"--seqlen", "--max-windows", "--max_windows", "--data-dir", "--data_dir", "--device",
              "--compute-dtype", "--compute_dtype"}
FULL_PRECISION = "full-precision"


class SweepError(Exception):
    """A one-line error for the user."""


def fail(message):
    raise SweepError(message)


# ---------------------------------------------------------------------------------------------------------
# The grid


def split_list(text, what):
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        fail(f"{what}: empty list")
    return items


def parse_corrections(text, method):
    """'none', single corrections, '+'-joined combinations, or 'each' (none and every applicable one)."""
    applicable = [c for c, methods in CORRECTIONS.items() if method in methods]
    sets = []
    for item in split_list(text, "--corrections"):
        if item == "each":
            sets += [()] + [(c,) for c in applicable]
            continue
        if item == "none":
            sets.append(())
            continue
        names = tuple(sorted(set(item.split("+"))))
        for name in names:
            if name not in CORRECTIONS:
                fail(f"--corrections: unknown correction '{name}' (known: none, each, {', '.join(CORRECTIONS)})")
            if name not in applicable:
                fail(f"--corrections: {name} does not change {method} (it applies to "
                     f"{', '.join(sorted(CORRECTIONS[name]))})")
        sets.append(names)
    return list(dict.fromkeys(sets))  # unique, in order


def absolute_paths(flags):
    """Paths in pass-through flags made absolute, so that Slurm tasks find them from any folder."""
    out = list(flags)
    for i, flag in enumerate(out[:-1]):
        if flag in ("--data-dir", "--data_dir"):
            out[i + 1] = str(Path(out[i + 1]).resolve())
    return out


def absolute_source(text):
    if text.startswith("text:"):
        return "text:" + str(Path(text[5:]).resolve())
    return str(Path(text).resolve()) if Path(text).exists() else text  # else a Hugging Face cache name


def flag_values(flags, wanted):
    """The (flag, value) pairs of `flags` whose name is in `wanted` (--flag value or --flag=value)."""
    out, i = [], 0
    while i < len(flags):
        name, eq, value = flags[i].partition("=")
        if name in wanted:
            if eq:
                out += [name, value]
            elif i + 1 < len(flags):
                out += [name, flags[i + 1]]
                i += 1
        i += 1
    return out


def config_id(method, frac, metric, corrections):
    return f"{method}_{frac}_{metric}" + "".join("+" + c for c in corrections)


def build_grid(args, common):
    configs = {}
    evaluated = ["--eval", args.eval]
    for frac in split_list(args.low_frac, "--low_frac"):
        try:
            if not 0 <= float(frac) <= 1:
                raise ValueError
        except ValueError:
            fail(f"--low_frac: '{frac}' is not a fraction in [0, 1]")
        for metric in split_list(args.salient_metric, "--salient_metric"):
            if metric not in ("magnitude", "hessian"):
                fail(f"--salient_metric: '{metric}' is not magnitude or hessian")
            for corrections in parse_corrections(args.corrections, args.method):
                argv = [args.model, args.dataset, args.method, "--low_frac", frac, "--salient_metric", metric]
                argv += ["--" + c for c in corrections] + evaluated + common
                configs[config_id(args.method, frac, metric, corrections)] = {
                    "tool": "pbllm-quantize", "argv": argv, "low_frac": frac, "salient_metric": metric,
                    "corrections": "+".join(corrections) or "none"}
    if not args.no_full_precision:
        argv = [args.model, "--datasets", args.eval] + flag_values(common, EVAL_FLAGS)
        configs[FULL_PRECISION] = {"tool": "pbllm-eval", "argv": argv, "low_frac": "", "salient_metric": "",
                                   "corrections": ""}
    return configs


# ---------------------------------------------------------------------------------------------------------
# The sweep folder


class Sweep:
    """DIR/sweep.json (the grid), reports/, logs/, models/ (packed models while a run measures its size)."""

    def __init__(self, folder):
        self.dir = Path(folder).resolve()
        self.manifest_path = self.dir / "sweep.json"

    def report(self, cid):
        return self.dir / "reports" / f"{cid}.json"

    def log(self, cid):
        return self.dir / "logs" / f"{cid}.log"

    def exit_record(self, cid):
        return self.dir / "logs" / f"{cid}.exit"

    def model_dir(self, cid):
        return self.dir / "models" / cid

    def load(self):
        if not self.manifest_path.is_file():
            fail(f"{self.dir} has no sweep.json: not a sweep folder (one is made by scripts/sweep.sh MODEL ...)")
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as e:
            fail(f"{self.manifest_path}: unreadable ({e})")
        if not (isinstance(manifest, dict) and isinstance(manifest.get("configs"), dict) and "identity" in manifest):
            fail(f"{self.manifest_path}: not a sweep manifest (no identity / configs)")
        return manifest

    def save(self, manifest):
        for sub in ("reports", "logs", "models"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, self.manifest_path)

    def merge(self, identity, configs, bin_dir, write=True):
        """The grid added to the folder's; refused when the folder was swept with other common flags."""
        manifest = self.load() if self.manifest_path.is_file() else {"identity": identity, "configs": {}}
        if manifest["identity"] != identity:
            fail(f"{self.dir} was swept with other settings ({shlex.join(manifest['identity']['common'])} on "
                 f"{manifest['identity']['model']}): use another --dir (or SWEEP_DIR)")
        manifest["configs"].update(configs)
        manifest["bin_dir"] = str(bin_dir)
        if write:
            self.save(manifest)
        return manifest

    def status(self, cid):
        """('done', report) | ('failed', reason) | ('running', '') | ('pending', '')."""
        report = self.report(cid)
        if report.is_file():
            try:
                return "done", json.loads(report.read_text())
            except (OSError, ValueError):
                return "failed", f"its report {report} is unreadable"
        record = self.exit_record(cid)
        if record.is_file():
            try:
                code = json.loads(record.read_text())["exit"]
            except (OSError, ValueError, KeyError):
                code = "?"
            return "failed", f"exit {code}: {last_line(self.log(cid))}"
        return ("running", "") if self.log(cid).is_file() else ("pending", "")


def last_line(path):
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def command_of(sweep, manifest, cid, threads):
    config = manifest["configs"][cid]
    cmd = [str(Path(manifest["bin_dir"]) / config["tool"])] + config["argv"] + ["--json", str(sweep.report(cid))]
    if config["tool"] == "pbllm-quantize":  # packed, so that bits per weight are measured from the file
        cmd += ["--save", str(sweep.model_dir(cid)), "--format", "pb"]
    return cmd + (["--threads", str(threads)] if threads else [])


def run_config(sweep, manifest, cid, threads, keep_models):
    """Runs one configuration (here or in a Slurm task): its log, its exit record, its report. Returns the
    exit status."""
    cmd = command_of(sweep, manifest, cid, threads)
    sweep.exit_record(cid).unlink(missing_ok=True)
    start = time.monotonic()
    with open(sweep.log(cid), "w") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    record = {"exit": code, "seconds": time.monotonic() - start, "host": socket.gethostname(), "threads": threads}
    tmp = sweep.exit_record(cid).with_suffix(".exit.tmp")
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, sweep.exit_record(cid))
    if code == 0 and not keep_models:  # the size is in the report; the folder is ours (made by this run)
        shutil.rmtree(sweep.model_dir(cid), ignore_errors=True)
    return code


# ---------------------------------------------------------------------------------------------------------
# Running: here, N at once, or as a Slurm job array


def summary_of(report):
    ppl = {d: v for d, v in report.items() if isinstance(v, dict) and "perplexity" in v}
    ppl.update(report.get("perplexity", {}))
    return ", ".join(f"{d} {v['perplexity']:.2f}" for d, v in sorted(ppl.items()) if "perplexity" in v)


def threads_per_job(jobs, threads_flag):
    return threads_flag or max(1, (os.cpu_count() or 1) // jobs)


def run_here(sweep, manifest, todo, jobs, threads, keep_models):
    lock = threading.Lock()
    width = len(str(len(todo)))

    def say(k, cid, text):
        with lock:
            print(f"[{k:>{width}}/{len(todo)}] {cid}: {text}", flush=True)

    def one(k, cid):
        say(k, cid, f"started ({threads} thread{'s' * (threads > 1)}, log {sweep.log(cid)})")
        start = time.monotonic()
        code = run_config(sweep, manifest, cid, threads, keep_models)
        state, detail = sweep.status(cid)
        took = f"{time.monotonic() - start:.0f} s"
        if code == 0 and state == "done":
            say(k, cid, f"done in {took}: {summary_of(detail)}")
        else:
            say(k, cid, f"FAILED after {took} ({detail if state == 'failed' else f'exit {code}'})")
        return code == 0

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    try:
        results = list(pool.map(lambda item: one(*item), enumerate(todo, 1)))
    finally:  # on Ctrl-C the running pbllm-quantize save their layers; the queued runs do not start
        pool.shutdown(wait=True, cancel_futures=True)
    return all(results)


def sbatch_script(sweep, todo, args):
    lines = ["#!/bin/bash", "#SBATCH --job-name=pbllm-sweep", f"#SBATCH --array=0-{len(todo) - 1}",
             f"#SBATCH --output={sweep.dir}/logs/slurm-%A_%a.out"]
    for flag, value in (("partition", args.partition), ("cpus-per-task", args.cpus_per_task),
                        ("gpus-per-task", args.gpus_per_task), ("time", args.time)):
        if value:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [f"# pbllm sweep of {sweep.dir}: one configuration per array task.",
              f"# Collect what has finished with: {SCRIPTS}/sweep.sh --collect {sweep.dir}",
              "ids=(" + " ".join(shlex.quote(c) for c in todo) + ")",
              f"exec python3 {shlex.quote(str(SCRIPTS / 'sweep.py'))} --run-task {shlex.quote(str(sweep.dir))} "
              '"${ids[$SLURM_ARRAY_TASK_ID]}"' + (" --keep-models" if args.keep_models else "")
              + (f" --threads {args.threads}" if args.threads else "")]
    return "\n".join(lines) + "\n"


def submit(sweep, todo, args):
    script = sbatch_script(sweep, todo, args)
    command = ["sbatch", "--parsable"] + shlex.split(args.sbatch_args or "")
    if args.dry_run:
        print(f"# would run: {shlex.join(command)} SCRIPT, with SCRIPT:\n{script}", end="")
        return True
    if not shutil.which("sbatch"):
        fail("--slurm: sbatch is not on PATH (a Slurm client is needed; --dry-run prints the script)")
    path = sweep.dir / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    path.write_text(script)
    done = subprocess.run(command + [str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"sbatch failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    job = done.stdout.strip().split(";")[0]
    print(f"submitted job {job}: {len(todo)} array tasks, one per configuration not yet reported ({path})")
    print(f"follow it: squeue -j {job}    logs: {sweep.dir}/logs/")
    print(f"gather what has finished: {SCRIPTS}/sweep.sh --collect {sweep.dir}")
    return True


# ---------------------------------------------------------------------------------------------------------
# Collecting


def csv_row(cid, config, report, record):
    """One results.csv row: every flag of the run, perplexities with standard errors, sizes, time, memory."""
    if config["tool"] == "pbllm-eval":
        meta = report.get("meta", {})
        row = {"id": cid, "kind": FULL_PRECISION}
        row.update({k: v for k, v in meta.items() if not isinstance(v, dict)})
        perplexity = {d: v for d, v in report.items() if d != "meta"}
        versions = meta.get("versions", {})
    else:
        row = {"id": cid, "kind": "quantize"}
        row.update(report.get("arguments", {}))
        perplexity = report.get("perplexity", {})
        versions = report.get("versions", {})
        size, totals = report.get("size", {}), report.get("totals", {})
        row["linear_bits_per_weight"] = size.get("linear_bits_per_weight", "")
        row["file_bits_per_weight"] = size.get("file_bits_per_weight", "")
        row["quantize_seconds"] = totals.get("seconds", "")
        row["peak_memory_gib"] = totals.get("peak_memory_gib", "")
    row["corrections"] = config["corrections"]
    for dataset, result in sorted(perplexity.items()):
        if isinstance(result, dict) and "perplexity" in result:
            row[f"ppl_{dataset}"] = result["perplexity"]
            row[f"stderr_{dataset}"] = result.get("stderr", "")
            row[f"windows_{dataset}"] = result.get("windows", "")
    row["wall_seconds"] = record.get("seconds", "")
    row["host"] = record.get("host", "")
    row["pbllm_version"] = versions.get("pbllm", "")
    row["torch_version"] = versions.get("torch", "")
    return row


def write_csv(path, rows):
    first = ["id", "kind", "model", "dataset", "low_quant_method", "low_frac", "salient_metric", "corrections"]
    rest = sorted({k for row in rows for k in row} - set(first))
    ppl = [k for k in rest if k.startswith(("ppl_", "stderr_", "windows_"))]
    tail = ["linear_bits_per_weight", "file_bits_per_weight", "quantize_seconds", "peak_memory_gib", "wall_seconds",
            "host", "pbllm_version", "torch_version"]
    flags = [k for k in rest if k not in ppl and k not in tail]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=first + flags + ppl + [k for k in tail if k in rest])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def markdown_table(rows):
    datasets = sorted({k[4:] for row in rows for k in row if k.startswith("ppl_")})
    head = ["salient metric", "low_frac", "corrections"] + datasets + ["bits/weight (Linears)", "quantize s",
                                                                       "peak GiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(row, key, fmt):
        value = row.get(key, "")
        return fmt.format(value) if isinstance(value, (int, float)) else "-"

    order = sorted(rows, key=lambda r: (r["kind"] != FULL_PRECISION, r.get("salient_metric", ""),
                                        r.get("corrections", ""), float(r.get("low_frac") or 0)))
    for row in order:
        first = ["full precision", "", ""] if row["kind"] == FULL_PRECISION else [
            row.get("salient_metric", ""), str(row.get("low_frac", "")), row.get("corrections", "")]
        ppl = [cell(row, f"ppl_{d}", "{:.2f}") + (f" ± {row[f'stderr_{d}']:.2f}" if isinstance(
            row.get(f"stderr_{d}"), float) else "") for d in datasets]
        lines.append("| " + " | ".join(first + ppl + [cell(row, "linear_bits_per_weight", "{:.3f}"),
                                                       cell(row, "quantize_seconds", "{:.1f}"),
                                                       cell(row, "peak_memory_gib", "{:.2f}")]) + " |")
    return "\n".join(lines) + "\n"


def collect(sweep):
    manifest = sweep.load()
    rows, failed, waiting = [], [], []
    for cid, config in manifest["configs"].items():
        state, detail = sweep.status(cid)
        if state == "done":
            record = {}
            if sweep.exit_record(cid).is_file():
                try:
                    record = json.loads(sweep.exit_record(cid).read_text())
                except ValueError:
                    pass
            rows.append(csv_row(cid, config, detail, record))
        elif state == "failed":
            failed.append(f"FAILED {cid}: {detail} (log {sweep.log(cid)})")
        else:
            waiting.append(f"{state} {cid}")
    if rows:
        write_csv(sweep.dir / "results.csv", rows)
        table = markdown_table(rows)
        (sweep.dir / "results.md").write_text(table)
        print(table, end="")
        try:
            plot_sweep.plot(sweep.dir / "results.csv", sweep.dir / "results.png")
            plotted = f", {sweep.dir / 'results.png'}"
        except plot_sweep.PlotError as e:
            plotted = f" (no plot: {e})"
        print(f"wrote {sweep.dir / 'results.csv'}, {sweep.dir / 'results.md'}{plotted}")
    for line in failed + waiting:
        print(line)
    print(f"{len(rows)} reported, {len(failed)} failed, {len(waiting)} not finished, of {len(manifest['configs'])}")
    return not failed


# ---------------------------------------------------------------------------------------------------------


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="scripts/sweep.sh", allow_abbrev=False, add_help=True,
                                     usage=__doc__.split("\n\n")[1])
    parser.add_argument("model", nargs="?")
    parser.add_argument("dataset", nargs="?")
    parser.add_argument("method", nargs="?")
    parser.add_argument("--low_frac", "--low-frac", default="0.9")
    parser.add_argument("--salient_metric", "--salient-metric", default="magnitude")
    parser.add_argument("--corrections", default="none")
    parser.add_argument("--eval", default="wikitext2,ptb,c4")
    parser.add_argument("--dir", default=os.environ.get("SWEEP_DIR"))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--keep-models", action="store_true")
    parser.add_argument("--no-full-precision", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--slurm", action="store_true")
    parser.add_argument("--partition")
    parser.add_argument("--gpus-per-task", type=int, default=0)
    parser.add_argument("--cpus-per-task", type=int, default=0)
    parser.add_argument("--time")
    parser.add_argument("--sbatch-args")
    parser.add_argument("--collect", metavar="DIR")
    parser.add_argument("--run-task", nargs=2, metavar=("DIR", "ID"), help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    return parser, args, rest


def sweep_command(args, rest):
    if not (args.model and args.dataset and args.method):
        fail("give MODEL DATASET METHOD (or --collect DIR); --help shows the usage")
    if args.jobs < 1 or args.threads < 0 or args.gpus_per_task < 0 or args.cpus_per_task < 0:
        fail("--jobs must be >= 1; --threads, --gpus-per-task, --cpus-per-task >= 0")
    own = sorted({f.partition("=")[0] for f in rest} & OWN_FLAGS)
    if own:
        fail(f"{', '.join(own)}: the sweep sets these for each run itself (see --help)")
    bin_dir = Path(os.environ.get("BUILD_DIR", REPO / "build")).resolve() / "tools"
    if not (bin_dir / "pbllm-quantize").is_file():
        fail(f"{bin_dir / 'pbllm-quantize'} is missing: build pbllm first (scripts/setup.sh)")
    common = absolute_paths(rest)
    if args.gpus_per_task and not flag_values(common, {"--device"}):
        common += ["--device", "cuda"]
    args.model, args.dataset = absolute_source(args.model), absolute_source(args.dataset)
    configs = build_grid(args, common)
    identity = {"model": args.model, "dataset": args.dataset, "method": args.method, "common": common,
                "eval": args.eval}
    sweep = Sweep(args.dir or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    manifest = sweep.merge(identity, configs, bin_dir, write=not args.dry_run)
    todo = [cid for cid in configs if sweep.status(cid)[0] != "done"]
    print(f"sweep {sweep.dir}: {len(configs)} configurations, {len(configs) - len(todo)} already reported, "
          f"{len(todo)} to run")
    if not todo:
        return args.dry_run or collect(sweep)
    if args.slurm:
        return submit(sweep, todo, args)
    threads = threads_per_job(args.jobs, args.threads)
    if args.dry_run:
        for cid in todo:
            print(shlex.join(command_of(sweep, manifest, cid, threads)))
        return True
    ok = run_here(sweep, manifest, todo, args.jobs, threads, args.keep_models)
    return collect(sweep) and ok


def main(argv):
    parser, args, rest = parse_arguments(argv)
    try:
        if args.run_task:
            sweep = Sweep(args.run_task[0])
            manifest = sweep.load()
            if args.run_task[1] not in manifest["configs"]:
                fail(f"{args.run_task[1]}: no such configuration in {sweep.manifest_path}")
            threads = args.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
            # Slurm's SIGTERM (time limit, scancel) reaches pbllm-quantize too, which keeps its finished
            # layers and exits; this process waits for it so that the exit is recorded.
            signal.signal(signal.SIGTERM, lambda *_: None)
            return run_config(sweep, manifest, args.run_task[1], threads, args.keep_models)
        if args.collect:
            if rest or args.model:
                fail(f"--collect DIR takes no other arguments (got {shlex.join((args.model and [args.model] or []) + rest)})")
            return 0 if collect(Sweep(args.collect)) else 1
        return 0 if sweep_command(args, rest) else 1
    except SweepError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sweep: interrupted; the same command resumes it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the output quietly
    sys.exit(main(sys.argv[1:]))
