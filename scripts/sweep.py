#!/usr/bin/env python3
"""pbllm sweeps: a grid of pbllm-quantize runs, here (--jobs N) or as a Slurm job array, gathered into
results.csv, a markdown table and a plot.

  scripts/sweep.sh MODEL DATASET METHOD [--low_frac 0.5,0.8,0.9,0.95] [--salient_metric magnitude,hessian]
                   [--corrections none,stats-over-binarized,...|each] [--eval wikitext2,ptb] [--dir DIR]
                   [--jobs N] [--threads N] [--keep-models] [--no-full-precision] [--dry-run]
                   [pbllm-quantize flags]
  scripts/sweep.sh MODEL DATASET METHOD ... --slurm [--partition P] [--gpus-per-task N] [--cpus-per-task N]
                   [--time T] [--sbatch-args="..."] [--dry-run]
  scripts/sweep.sh --collect DIR

Every configuration is one pbllm-quantize run with --eval, a JSON report (DIR/reports/ID.json), a log
(DIR/logs/ID.log) and its exit status (DIR/logs/ID.exit); the full-precision model is evaluated once
with pbllm-eval. A configuration whose report and exit status 0 are there is never run again, so rerunning
the same command resumes a sweep (and a killed pbllm-quantize resumes its own layers). The sweep folder
remembers what all runs share (DIR/sweep.json: model, data, flags, threads per run): a rerun with other
settings is refused rather than mixed in.
"""
import argparse
import concurrent.futures
import contextlib
import csv
import fcntl
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

METHODS = ("xnor", "sign", "no", "2bit", "4bit", "prune")
# The corrections of the reference's quirks (README, "quirks") and the methods each one changes.
CORRECTIONS = {
    "stats-over-binarized": {"xnor", "sign"},
    "high-range-from-salient": set(METHODS),
    "zero-point-per-row": {"2bit", "4bit"},
}
# Flags the sweep names per run, or that would let a run replace folders: not passed through.
OWN_FLAGS = {"--save", "--json", "--format", "--eval", "--overwrite", "--low_frac", "--low-frac",
             "--salient_metric", "--salient-metric"} | {
             f"--{c}" for c in CORRECTIONS} | {f"--{c.replace('-', '_')}" for c in CORRECTIONS}
# pbllm-quantize flags that pbllm-eval shares (with a value), passed on to the full-precision run.
EVAL_FLAGS = {"--seqlen", "--max-windows", "--max_windows", "--data-dir", "--data_dir", "--device",
              "--compute-dtype", "--compute_dtype"}
PATH_FLAGS = {"--data-dir", "--data_dir"}
FULL_PRECISION = "full-precision"


class SweepError(Exception):
    """A one-line error for the user."""


def fail(message):
    raise SweepError(message)


def plural(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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
    for item in split_list(text.replace("_", "-"), "--corrections"):
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


def normalized_flags(flags):
    """--flag=value split in two, and paths made absolute (Slurm tasks run from any folder)."""
    out = []
    for flag in flags:
        name, eq, value = flag.partition("=")
        out += [name, value] if eq and name.startswith("--") else [flag]
    for i in range(len(out) - 1):
        if out[i] in PATH_FLAGS:
            out[i + 1] = str(Path(out[i + 1]).resolve())
    return out


def absolute_dataset(name):
    return "text:" + str(Path(name[5:]).resolve()) if name.startswith("text:") else name


def absolute_model(text):
    return str(Path(text).resolve()) if Path(text).exists() else text  # else a Hugging Face cache name


def flag_values(flags, wanted):
    """The (flag, value) pairs of normalized `flags` whose name is in `wanted`."""
    return [token for i, flag in enumerate(flags[:-1]) if flag in wanted for token in (flag, flags[i + 1])]


def config_id(method, frac, metric, corrections):
    return f"{method}_{frac}_{metric}" + "".join("+" + c for c in corrections)


def fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 1:
        fail(f"--low_frac: '{text}' is not a fraction in [0, 1]")
    return f"{value:g}"  # 0.50 and .5 are one configuration


def build_grid(args, common):
    configs = {}
    for frac in dict.fromkeys(fraction(f) for f in split_list(args.low_frac, "--low_frac")):
        for metric in split_list(args.salient_metric, "--salient_metric"):
            if metric not in ("magnitude", "hessian"):
                fail(f"--salient_metric: '{metric}' is not magnitude or hessian")
            for corrections in parse_corrections(args.corrections, args.method):
                argv = [args.model, args.dataset, args.method, "--low_frac", frac, "--salient_metric", metric]
                argv += ["--" + c for c in corrections] + ["--eval", args.eval] + common
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


def read_json(path, kind):
    """The JSON object in `path`, or None where it is missing, unreadable or not a `kind` (dict / list)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, kind) else None


def write_atomically(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(path, blocking=True):
    """An exclusive flock on `path` (made if missing); yields False where it is held and not blocking."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


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

    def lock(self, cid):
        return self.dir / "logs" / f"{cid}.lock"

    def model_dir(self, cid):
        return self.dir / "models" / cid

    def load(self):
        if not self.manifest_path.is_file():
            fail(f"{self.dir} has no sweep.json: not a sweep folder (one is made by scripts/sweep.sh MODEL ...)")
        manifest = read_json(self.manifest_path, dict)
        identity = manifest.get("identity") if manifest else None
        configs = manifest.get("configs") if manifest else None
        if not (isinstance(identity, dict) and isinstance(configs, dict) and all(
                isinstance(c, dict) and c.get("tool") in ("pbllm-quantize", "pbllm-eval") and
                isinstance(c.get("argv"), list) for c in configs.values())):
            fail(f"{self.manifest_path}: unreadable or not a sweep manifest")
        return manifest

    def merge(self, identity, configs, bin_dir, write=True):
        """The grid added to the folder's; refused when the folder was swept with other settings."""
        if self.dir.exists() and not self.dir.is_dir():
            fail(f"--dir {self.dir} is a file")
        if not self.manifest_path.is_file() and self.dir.is_dir() and any(self.dir.iterdir()):
            fail(f"--dir {self.dir} is not empty and has no sweep.json: give a new or empty folder")
        with contextlib.ExitStack() as stack:
            if write:
                for sub in ("reports", "logs", "models"):
                    (self.dir / sub).mkdir(parents=True, exist_ok=True)
                stack.enter_context(locked(self.dir / "sweep.lock"))  # one read-modify-write at a time
            manifest = self.load() if self.manifest_path.is_file() else {"identity": identity, "configs": {}}
            if manifest["identity"] != identity:
                differ = sorted(k for k in set(identity) | set(manifest["identity"])
                                if identity.get(k) != manifest["identity"].get(k))
                fail(f"{self.dir} was swept with other settings ("
                     + "; ".join(f"{k} was {manifest['identity'].get(k)!r}, now {identity.get(k)!r}" for k in differ)
                     + "): use another --dir (or SWEEP_DIR)")
            manifest["configs"].update(configs)
            manifest["bin_dir"] = str(bin_dir)
            if write:
                write_atomically(self.manifest_path, json.dumps(manifest, indent=2) + "\n")
        return manifest

    def status(self, cid):
        """('done', report) | ('failed', reason) | ('running', '') | ('interrupted', '') | ('pending', '')."""
        record = read_json(self.exit_record(cid), dict) if self.exit_record(cid).is_file() else None
        if record is not None:
            code = record.get("exit")
            if code == 0:
                report = read_json(self.report(cid), dict)
                return ("done", report) if report is not None else ("failed", f"no readable report {self.report(cid)}")
            return "failed", f"exit {code}: {last_line(self.log(cid))}"
        if self.exit_record(cid).is_file():
            return "failed", f"unreadable exit record {self.exit_record(cid)}"
        if not self.log(cid).is_file():
            return "pending", ""
        with locked(self.lock(cid), blocking=False) as free:
            return ("interrupted", "") if free else ("running", "")


def last_line(path):
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    errors = [line for line in lines if line.startswith(("error:", "pbllm-"))]
    return (errors or lines or ["(empty log)"])[-1]


def command_of(sweep, manifest, cid, threads):
    config = manifest["configs"][cid]
    cmd = [str(Path(manifest["bin_dir"]) / config["tool"])] + config["argv"] + ["--json", str(sweep.report(cid))]
    if config["tool"] == "pbllm-quantize":  # packed, so that bits per weight are measured from the file
        cmd += ["--save", str(sweep.model_dir(cid)), "--format", "pb"]
    return cmd + ["--threads", str(threads)]


def run_config(sweep, manifest, cid, threads, keep_models):
    """Runs one configuration (here or in a Slurm task) under its lock: its log, its exit record, its report.
    Returns the exit status, or None where another process runs it now or it is done already."""
    with locked(sweep.lock(cid), blocking=False) as mine:
        if not mine or sweep.status(cid)[0] == "done":
            return None
        cmd = command_of(sweep, manifest, cid, threads)
        for stale in (sweep.exit_record(cid), sweep.report(cid)):
            stale.unlink(missing_ok=True)
        # Only a folder this run makes is removed afterwards (never one that was there: kept or someone's).
        made_here = manifest["configs"][cid]["tool"] == "pbllm-quantize" and not sweep.model_dir(cid).exists()
        start = time.monotonic()
        with open(sweep.log(cid), "w") as log:
            log.write(f"$ {shlex.join(cmd)}\n")
            log.flush()
            code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        record = {"exit": code, "seconds": time.monotonic() - start, "host": socket.gethostname(),
                  "threads": threads}
        write_atomically(sweep.exit_record(cid), json.dumps(record) + "\n")
        if code == 0 and made_here and not keep_models:  # its size is in the report
            shutil.rmtree(sweep.model_dir(cid), ignore_errors=True)
        return code


# ---------------------------------------------------------------------------------------------------------
# Running: here, N at once, or as a Slurm job array


def summary_of(report):
    ppl = {d: v for d, v in report.items() if isinstance(v, dict) and "perplexity" in v}
    ppl.update(report.get("perplexity", {}) if isinstance(report.get("perplexity"), dict) else {})
    return ", ".join(f"{d} {v['perplexity']:.2f}" for d, v in sorted(ppl.items()) if "perplexity" in v)


def run_here(sweep, manifest, todo, jobs, threads, keep_models):
    lock = threading.Lock()
    width = len(str(len(todo)))

    def say(k, cid, text):
        with lock:
            print(f"[{k:>{width}}/{len(todo)}] {cid}: {text}", flush=True)

    def one(k, cid):
        say(k, cid, f"started ({plural(threads, 'thread')}, log {sweep.log(cid)})")
        start = time.monotonic()
        code = run_config(sweep, manifest, cid, threads, keep_models)
        state, detail = sweep.status(cid)
        took = f"{time.monotonic() - start:.0f} s"
        if code is None:
            say(k, cid, "skipped: another process runs it" if state != "done" else "skipped: reported meanwhile")
        elif state == "done":
            say(k, cid, f"done in {took}: {summary_of(detail)}")
        else:
            say(k, cid, f"FAILED after {took} ({detail})")
        return state == "done"

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    try:
        results = list(pool.map(lambda item: one(*item), enumerate(todo, 1)))
    finally:  # on Ctrl-C the running pbllm-quantize save their layers; the queued runs do not start
        pool.shutdown(wait=True, cancel_futures=True)
    return all(results)


def sbatch_script(sweep, todo, args, threads):
    lines = ["#!/bin/bash", "#SBATCH --job-name=pbllm-sweep", f"#SBATCH --array=0-{len(todo) - 1}",
             f"#SBATCH --output={sweep.dir}/logs/slurm-%A_%a.out", f"#SBATCH --cpus-per-task={args.cpus_per_task or threads}"]
    for flag, value in (("partition", args.partition), ("gpus-per-task", args.gpus_per_task), ("time", args.time)):
        if value:
            lines.append(f"#SBATCH --{flag}={value}")
    collect = shlex.join([str(SCRIPTS / "sweep.sh"), "--collect", str(sweep.dir)])
    lines += [f"# pbllm sweep of {sweep.dir}: one configuration per array task.",
              f"# Collect what has finished with: {collect}",
              "ids=(" + " ".join(shlex.quote(c) for c in todo) + ")",
              shlex.join(["exec", "python3", str(SCRIPTS / "sweep.py"), "--run-task", str(sweep.dir)]) +
              ' "${ids[$SLURM_ARRAY_TASK_ID]}"' + f" --threads {threads}" +
              (" --keep-models" if args.keep_models else "")]
    return "\n".join(lines) + "\n", collect


def queued_elsewhere(sweep):
    """The configurations of this sweep's earlier submissions that are still in Slurm's queue."""
    jobs = read_json(sweep.dir / "submissions.json", list) or []
    if not jobs or not shutil.which("squeue"):
        return set()
    ids = [str(job.get("job")) for job in jobs if isinstance(job, dict)]
    queued = subprocess.run(["squeue", "-h", "-o", "%F", "-j", ",".join(ids)], capture_output=True, text=True)
    alive = set(queued.stdout.split()) if queued.returncode == 0 else set()
    return {cid for job in jobs if isinstance(job, dict) and str(job.get("job")) in alive for cid in job.get("ids", [])}


def submit(sweep, todo, args, threads):
    if any(c.isspace() or c == "%" for c in str(sweep.dir)):
        fail(f"--slurm: the sweep folder {sweep.dir} has a space or '%', which sbatch directives cannot hold")
    try:
        extra = shlex.split(args.sbatch_args or "")
    except ValueError as e:
        fail(f"--sbatch-args: {e}")
    script, collect = sbatch_script(sweep, todo, args, threads)
    command = ["sbatch", "--parsable"] + extra
    if args.dry_run:
        print(f"# would run: {shlex.join(command)} SCRIPT, with SCRIPT:\n{script}", end="")
        return True
    if not shutil.which("sbatch"):
        fail("--slurm: sbatch is not on PATH (a Slurm client is needed; --dry-run prints the script)")
    path = sweep.dir / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    path.write_text(script)
    done = subprocess.run(command + [str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"sbatch failed: {((done.stderr or done.stdout).strip().splitlines() or ['no output'])[-1]}")
    job = done.stdout.strip().split(";")[0]
    with locked(sweep.dir / "sweep.lock"):
        jobs = read_json(sweep.dir / "submissions.json", list) or []
        write_atomically(sweep.dir / "submissions.json", json.dumps(jobs + [{"job": job, "ids": todo}], indent=1))
    print(f"submitted job {job}: {plural(len(todo), 'array task')}, one per configuration not yet reported ({path})")
    print(f"follow it: squeue -j {job}    logs: {sweep.dir}/logs/")
    print(f"gather what has finished: {collect}")
    return True


# ---------------------------------------------------------------------------------------------------------
# Collecting


def dict_of(value):
    return value if isinstance(value, dict) else {}


def csv_row(cid, config, report, record):
    """One results.csv row: every flag of the run, perplexities with standard errors, sizes, time, memory."""
    if config["tool"] == "pbllm-eval":
        meta = dict_of(report.get("meta"))
        row = {"id": cid, "kind": FULL_PRECISION}
        row.update({k: v for k, v in meta.items() if not isinstance(v, (dict, list))})
        perplexity = {d: v for d, v in report.items() if d != "meta"}
        versions = dict_of(meta.get("versions"))
    else:
        row = {"id": cid, "kind": "quantize"}
        row.update({k: v for k, v in dict_of(report.get("arguments")).items() if not isinstance(v, (dict, list))})
        perplexity = dict_of(report.get("perplexity"))
        versions = dict_of(report.get("versions"))
        size, totals = dict_of(report.get("size")), dict_of(report.get("totals"))
        row["linear_bits_per_weight"] = size.get("linear_bits_per_weight", "")
        row["file_bits_per_weight"] = size.get("file_bits_per_weight", "")
        row["quantize_seconds"] = totals.get("seconds", "")
        row["peak_memory_gib"] = totals.get("peak_memory_gib", "")
    row["corrections"] = config.get("corrections", "")
    for dataset, result in sorted(perplexity.items()):
        if isinstance(result, dict) and "perplexity" in result:
            row[f"ppl_{dataset}"] = result["perplexity"]
            row[f"stderr_{dataset}"] = result.get("stderr", "")
            row[f"windows_{dataset}"] = result.get("windows", "")
    for key in ("threads", "host"):
        row[key] = record.get(key, "")
    row["wall_seconds"] = record.get("seconds", "")
    row["pbllm_version"] = versions.get("pbllm", "")
    row["torch_version"] = versions.get("torch", "")
    return row


def write_csv(path, rows):
    first = ["id", "kind", "model", "dataset", "low_quant_method", "low_frac", "salient_metric", "corrections"]
    rest = sorted({k for row in rows for k in row} - set(first))
    ppl = [k for k in rest if k.startswith(("ppl_", "stderr_", "windows_"))]
    tail = ["linear_bits_per_weight", "file_bits_per_weight", "quantize_seconds", "peak_memory_gib", "wall_seconds",
            "threads", "host", "pbllm_version", "torch_version"]
    flags = [k for k in rest if k not in ppl and k not in tail]
    tmp = path.with_name(path.name + ".tmp")
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

    def order(row):
        try:
            frac = float(row.get("low_frac") or 0)
        except (TypeError, ValueError):
            frac = 0
        return row["kind"] != FULL_PRECISION, str(row.get("salient_metric")), str(row.get("corrections")), frac

    for row in sorted(rows, key=order):
        first = ["full precision", "", ""] if row["kind"] == FULL_PRECISION else [
            str(row.get("salient_metric", "")), str(row.get("low_frac", "")), str(row.get("corrections", ""))]
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
            rows.append(csv_row(cid, config, detail, read_json(sweep.exit_record(cid), dict) or {}))
        elif state == "failed":
            failed.append(f"FAILED {cid}: {detail} (log {sweep.log(cid)})")
        else:
            waiting.append(f"{state} {cid}")
    if rows:
        write_csv(sweep.dir / "results.csv", rows)
        table = markdown_table(rows)
        write_atomically(sweep.dir / "results.md", table)
        print(table, end="")
        try:
            identity = manifest["identity"]
            title = f"{Path(str(identity.get('model'))).name}: {identity.get('method')}, calibration " \
                    f"{Path(str(identity.get('dataset'))).name} {' '.join(map(str, identity.get('common', [])))}"
            plot_sweep.plot(sweep.dir / "results.csv", sweep.dir / "results.png", title[:120])
            plotted = f", {sweep.dir / 'results.png'}"
        except plot_sweep.PlotError as e:
            plotted = f" (no plot: {e})"
        print(f"wrote {sweep.dir / 'results.csv'}, {sweep.dir / 'results.md'}{plotted}")
    for line in failed + waiting:
        print(line)
    print(f"{len(rows)} reported, {len(failed)} failed, {len(waiting)} not finished, "
          f"of {plural(len(manifest['configs']), 'configuration')}")
    return not failed


# ---------------------------------------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        fail(f"{message} (scripts/sweep.sh --help shows the usage)")


def parse_arguments(argv):
    parser = OneLineParser(prog="scripts/sweep.sh", allow_abbrev=False, usage=__doc__.split("\n\n")[1])
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
    return args, rest


def sweep_command(argv, args, rest):
    if not (args.model and args.dataset and args.method) or any(a.startswith("-") for a in argv[:3]):
        fail("MODEL DATASET METHOD come first (or --collect DIR); scripts/sweep.sh --help shows the usage")
    if args.method not in METHODS:
        fail(f"METHOD '{args.method}' is not one of {', '.join(METHODS)}")
    if args.jobs < 1 or args.threads < 0 or args.gpus_per_task < 0 or args.cpus_per_task < 0:
        fail("--jobs must be >= 1; --threads, --gpus-per-task, --cpus-per-task >= 0")
    common = normalized_flags(rest)
    own = sorted(set(common) & OWN_FLAGS)
    if own:
        fail(f"{', '.join(own)}: not passed through (the sweep names each run's outputs itself; see --help)")
    build = Path(os.environ.get("BUILD_DIR", "build"))
    bin_dir = (build if build.is_absolute() else REPO / build).resolve() / "tools"
    if not (bin_dir / "pbllm-quantize").is_file():
        fail(f"{bin_dir / 'pbllm-quantize'} is missing: build pbllm first (scripts/setup.sh)")
    if args.gpus_per_task and "--device" not in common:
        common += ["--device", "cuda"]
    args.model, args.dataset = absolute_model(args.model), absolute_dataset(args.dataset)
    args.eval = ",".join(absolute_dataset(d) for d in split_list(args.eval, "--eval"))
    # The threads per run change the numbers (README, "Thread counts change the numbers"): part of the identity.
    threads = args.threads or (args.cpus_per_task if args.slurm else 0) or (
        1 if args.slurm else max(1, usable_cores() // args.jobs))
    configs = build_grid(args, common)
    identity = {"model": args.model, "dataset": args.dataset, "method": args.method, "common": common,
                "eval": args.eval, "threads": threads}
    sweep = Sweep(args.dir or REPO / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    manifest = sweep.merge(identity, configs, bin_dir, write=not args.dry_run)
    states = {cid: sweep.status(cid)[0] for cid in configs}
    elsewhere = queued_elsewhere(sweep) if args.slurm else set()
    todo = [cid for cid, state in states.items() if state not in ("done", "running") and cid not in elsewhere]
    busy = sum(1 for cid, state in states.items() if state == "running" or (cid in elsewhere and state != "done"))
    print(f"sweep {sweep.dir}: {plural(len(configs), 'configuration')}, "
          f"{sum(1 for s in states.values() if s == 'done')} already reported, "
          + (f"{busy} running or queued elsewhere, " if busy else "") + f"{len(todo)} to run")
    if not todo:
        return args.dry_run or collect(sweep)
    if args.slurm:
        return submit(sweep, todo, args, threads)
    if args.dry_run:
        for cid in todo:
            print(shlex.join(command_of(sweep, manifest, cid, threads)))
        return True
    ok = run_here(sweep, manifest, todo, args.jobs, threads, args.keep_models)
    return collect(sweep) and ok


def run_task(args):
    sweep = Sweep(args.run_task[0])
    manifest = sweep.load()
    if args.run_task[1] not in manifest["configs"]:
        fail(f"{args.run_task[1]}: no such configuration in {sweep.manifest_path}")
    # Slurm's SIGTERM (time limit, scancel) reaches pbllm-quantize too, which keeps its finished layers and
    # exits; this process waits for it so that the exit is recorded.
    signal.signal(signal.SIGTERM, lambda *_: None)
    threads = args.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0) or 1
    code = run_config(sweep, manifest, args.run_task[1], threads, args.keep_models)
    return 0 if code is None else code


def main(argv):
    try:
        args, rest = parse_arguments(argv)
        if args.run_task:
            return run_task(args)
        if args.collect:
            if rest or args.model:
                fail("--collect DIR takes no other arguments")
            return 0 if collect(Sweep(args.collect)) else 1
        return 0 if sweep_command(argv, args, rest) else 1
    except SweepError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sweep: interrupted; the same command resumes it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the output quietly
    sys.exit(main(sys.argv[1:]))
