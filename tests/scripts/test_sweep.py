#!/usr/bin/env python3
"""Tests of scripts/sweep.sh and scripts/plot_sweep.py on stories260K.

  test_sweep.py BUILD_DIR local   # the local sweep (--jobs), failures, resumption, bad input, the plot
  test_sweep.py BUILD_DIR slurm   # the same 2 x 2 sweep as a job array on a private single-node Slurm

Exit status 77 (CTest's "skipped") when every test skipped, e.g. where Slurm cannot start.
"""
import csv
import os
import struct
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SWEEP = REPO / "scripts" / "sweep.sh"
BUILD = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else REPO / "build"
# 2 x 2 configurations and the full-precision model, each a few seconds.
GRID = [str(REPO / "data" / "stories260K"), "ptb", "xnor", "--low_frac", "0.5,0.9",
        "--salient_metric", "magnitude,hessian", "--eval", "wikitext2,ptb", "--nsamples", "8", "--seqlen", "256",
        "--max-windows", "4",
        # One thread per run everywhere: pbllm's numbers depend on the thread count (LibTorch's GEMMs and
        # vectorised loops split the work by threads), and GPTQ-PB's binarization amplifies the last bits.
        "--threads", "1"]
IDS = {"xnor_0.5_magnitude", "xnor_0.5_hessian", "xnor_0.9_magnitude", "xnor_0.9_hessian", "full-precision"}


def sweep(*args, build=BUILD, env=None):
    return subprocess.run([str(SWEEP), *args], capture_output=True, text=True,
                          env=dict(os.environ, BUILD_DIR=str(build), **(env or {})))


def results(folder):
    with open(Path(folder) / "results.csv", newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def perplexities(folder):
    return {cid: (row["ppl_wikitext2"], row["ppl_ptb"]) for cid, row in results(folder).items()}


class Scratch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.TemporaryDirectory()
        cls.tmp = Path(cls.scratch.name)

    @classmethod
    def tearDownClass(cls):
        cls.scratch.cleanup()

    def assertOneLineError(self, done, needle):
        self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertIn(needle, done.stderr)


class LocalSweep(Scratch):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.one = sweep(*GRID, "--dir", str(cls.tmp / "one"), "--jobs", "1")
        cls.two = sweep(*GRID, "--dir", str(cls.tmp / "two"), "--jobs", "2")

    def test_every_configuration_is_reported(self):
        self.assertEqual(self.one.returncode, 0, self.one.stdout + self.one.stderr)
        rows = results(self.tmp / "one")
        self.assertEqual(set(rows), IDS)
        quantized = rows["xnor_0.9_hessian"]
        self.assertEqual((quantized["low_frac"], quantized["salient_metric"], quantized["nsamples"]),
                         ("0.9", "hessian", "8"))
        # bits per weight measured from the packed file: 10% salient at 8 bits plus 1-bit codes and the mask
        self.assertTrue(4.5 < float(quantized["linear_bits_per_weight"]) < 6, quantized["linear_bits_per_weight"])
        self.assertEqual(rows["full-precision"]["kind"], "full-precision")
        for row in rows.values():
            self.assertGreater(float(row["ppl_ptb"]), 1)
            self.assertGreater(float(row["stderr_ptb"]), 0)
            self.assertEqual(row["windows_ptb"], "4")
        # the quantized models lose to the full-precision one
        self.assertGreater(float(quantized["ppl_ptb"]), float(rows["full-precision"]["ppl_ptb"]))
        self.assertTrue((self.tmp / "one" / "results.png").is_file())
        self.assertIn("| full precision |", (self.tmp / "one" / "results.md").read_text())
        # the packed models, once measured, are not kept
        self.assertEqual(list((self.tmp / "one" / "models").iterdir()), [])

    def test_two_jobs_give_the_results_of_one(self):
        self.assertEqual(self.two.returncode, 0, self.two.stdout + self.two.stderr)
        self.assertEqual(self.two.stdout.count("(1 thread,"), 5)
        self.assertEqual(perplexities(self.tmp / "one"), perplexities(self.tmp / "two"))

    def test_a_rerun_runs_nothing_reported(self):
        reports = sorted((self.tmp / "one" / "reports").glob("*.json"))
        before = [p.stat().st_mtime_ns for p in reports]
        again = sweep(*GRID, "--dir", str(self.tmp / "one"))
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("5 already reported, 0 to run", again.stdout)
        self.assertEqual(before, [p.stat().st_mtime_ns for p in reports])

    def test_a_rerun_with_other_flags_is_refused(self):
        other = [*GRID, "--nsamples", "4"]
        self.assertOneLineError(sweep(*other, "--dir", str(self.tmp / "one")), "was swept with other settings")

    def test_a_failed_configuration_is_listed_and_the_others_count(self):
        # A pbllm-quantize that fails for one configuration and is the real one otherwise.
        fake = self.tmp / "fake"
        (fake / "tools").mkdir(parents=True)
        tool = fake / "tools" / "pbllm-quantize"
        tool.write_text("#!/bin/bash\n[[ \" $* \" == *' 0.9 --salient_metric hessian '* ]] && "
                        "{ echo 'error: the Hessian of layer 0 is not positive definite' >&2; exit 1; }\n"
                        f"exec {BUILD}/tools/pbllm-quantize \"$@\"\n")
        tool.chmod(0o755)
        (fake / "tools" / "pbllm-eval").symlink_to(BUILD / "tools" / "pbllm-eval")
        folder = self.tmp / "failing"
        done = sweep(*GRID, "--dir", str(folder), build=fake)
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("xnor_0.9_hessian: FAILED", done.stdout)
        self.assertIn("FAILED xnor_0.9_hessian: exit 1: error: the Hessian of layer 0 is not positive definite",
                      done.stdout)
        self.assertEqual(set(results(folder)), IDS - {"xnor_0.9_hessian"})
        collected = sweep("--collect", str(folder))
        self.assertEqual(collected.returncode, 1)
        self.assertIn("4 reported, 1 failed, 0 not finished, of 5", collected.stdout)
        # rerun with the real tool: only the failed configuration runs
        again = sweep(*GRID, "--dir", str(folder))
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
        self.assertIn("4 already reported, 1 to run", again.stdout)
        self.assertEqual(perplexities(folder), perplexities(self.tmp / "one"))

    def test_dry_runs_write_nothing(self):
        folder = self.tmp / "dry"
        done = sweep(*GRID, "--dir", str(folder), "--dry-run")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("pbllm-quantize " + GRID[0], done.stdout)
        split = sweep(*GRID[:-2], "--dir", str(folder), "--jobs", "2", "--dry-run")  # the cores shared by two runs
        self.assertEqual(split.stdout.count(f"--threads {max(1, os.cpu_count() // 2)}\n"), 5, split.stdout)
        slurm = sweep(*GRID, "--dir", str(folder), "--slurm", "--partition", "gpu", "--gpus-per-task", "1",
                      "--cpus-per-task", "8", "--time", "2:00:00", "--dry-run")
        self.assertEqual(slurm.returncode, 0, slurm.stderr)
        for line in ("#SBATCH --array=0-4", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1",
                     "#SBATCH --cpus-per-task=8", "#SBATCH --time=2:00:00", "--run-task"):
            self.assertIn(line, slurm.stdout)
        self.assertFalse(folder.exists())

    def test_bad_arguments_are_one_line_errors(self):
        folder = str(self.tmp / "bad")
        self.assertOneLineError(sweep(*GRID, "--dir", folder, "--save", "x"), "not passed through")
        self.assertOneLineError(sweep(*GRID, "--dir", folder, "--save=x"), "not passed through")
        self.assertOneLineError(sweep("--nsamples", "8", *GRID, "--dir", folder), "MODEL DATASET METHOD come first")
        self.assertOneLineError(sweep(GRID[0], "ptb", "xnr", "--dir", folder), "METHOD 'xnr'")
        self.assertOneLineError(sweep(*GRID, "--dir", folder, "--jobs", "x"), "invalid int value")
        self.assertOneLineError(sweep(*GRID, "--dir", str(REPO)), "has no sweep.json")  # never adopted
        self.assertOneLineError(sweep(*GRID, "--dir", folder, "--corrections", "zero-point-per-row"),
                                "does not change xnor")
        self.assertOneLineError(sweep(*GRID, "--dir", folder, "--corrections", "fast"), "unknown correction")
        self.assertOneLineError(sweep(*GRID[:3], "--low_frac", "1.5", "--dir", folder), "not a fraction")
        self.assertOneLineError(sweep(*GRID, "--dir", folder, "--jobs", "0"), "--jobs must be >= 1")
        self.assertOneLineError(sweep("--collect", str(self.tmp)), "not a sweep folder")
        (self.tmp / "broken").mkdir()
        (self.tmp / "broken" / "sweep.json").write_text("{")
        self.assertOneLineError(sweep("--collect", str(self.tmp / "broken")), "unreadable")
        self.assertFalse(Path(folder).exists())

    def test_corrections_each_adds_one_configuration_per_applicable_correction(self):
        done = sweep(*GRID, "--dir", str(self.tmp / "each"), "--corrections", "each", "--dry-run")
        self.assertIn("13 configurations", done.stdout)  # 2 x 2 x (none and 2 corrections) + full precision
        for flag in ("--stats-over-binarized", "--high-range-from-salient"):
            self.assertEqual(done.stdout.count(flag), 4)


def png_size(path):
    header = Path(path).read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", header[16:24])


class Plot(Scratch):
    HEADER = "id,kind,low_frac,salient_metric,corrections,ppl_ptb,ppl_wikitext2,linear_bits_per_weight\n"

    def plot(self, text, name="r"):
        path = self.tmp / f"{name}.csv"
        path.write_text(text)
        return subprocess.run([sys.executable, str(REPO / "scripts" / "plot_sweep.py"), str(path),
                               str(self.tmp / f"{name}.png")], capture_output=True, text=True)

    def test_the_png_has_a_panel_per_dataset_and_axis(self):
        rows = self.HEADER + "".join(f"c{i},quantize,{f},{m},none,{10 + 50 * f},{20 + 90 * f},{9 - 4 * f}\n"
                                     for i, (f, m) in enumerate((f, m) for f in (0.5, 0.8, 0.9)
                                                                for m in ("magnitude", "hessian")))
        rows += "fp,full-precision,,,,9.5,19.0,\n"
        done = self.plot(rows)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(png_size(self.tmp / "r.png"), (2 * 640, 2 * 400))  # 2 datasets x (low_frac, bits)

    def test_without_sizes_only_the_low_frac_column(self):
        done = self.plot(self.HEADER + "a,quantize,0.5,hessian,none,12,25,\n", "nobits")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(png_size(self.tmp / "nobits.png"), (640, 2 * 400))

    def test_malformed_csvs_are_one_line_errors(self):
        for name, text, needle in (
                ("number", self.HEADER + "a,quantize,abc,hessian,none,12,25,5\n", "line 2: low_frac 'abc'"),
                ("nan", self.HEADER + "a,quantize,0.5,hessian,none,nan,25,5\n", "ppl_ptb is nan"),
                ("columns", "id,kind,low_frac\na,quantize,0.5\n", "missing columns"),
                ("short", self.HEADER + "a,quantize,0.5\n", "columns expected"),
                ("kind", self.HEADER + "a,other,0.5,hessian,none,12,25,5\n", "kind 'other'"),
                ("empty", "", "no rows"),
                ("negative", self.HEADER + "a,quantize,0.5,hessian,none,-3,25,5\n", "not a perplexity")):
            done = self.plot(text, name)
            self.assertEqual(done.returncode, 2, name)
            self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
            self.assertIn(needle, done.stderr, name)
            self.assertFalse((self.tmp / f"{name}.png").exists())


class SlurmSweep(Scratch):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp.chmod(0o755)  # munged wants every folder above its socket searchable by all
        cls.cluster = cls.tmp / "slurm"
        start = subprocess.run([str(REPO / "scripts" / "slurm-local.sh"), "start", str(cls.cluster)],
                               capture_output=True, text=True)
        if start.returncode == 77:
            raise unittest.SkipTest(f"Slurm cannot start here: {start.stderr.strip()}")
        if start.returncode != 0:
            raise AssertionError(f"slurm-local.sh start failed: {start.stdout}{start.stderr}")
        cls.env = {"SLURM_CONF": str(cls.cluster / "slurm.conf")}

    @classmethod
    def tearDownClass(cls):
        subprocess.run([str(REPO / "scripts" / "slurm-local.sh"), "stop", str(cls.cluster)])
        super().tearDownClass()

    def wait_for(self, job, seconds=600):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            queued = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i"], capture_output=True, text=True,
                                    env=dict(os.environ, **self.env))
            if queued.returncode == 0 and not queued.stdout.strip():
                return
            time.sleep(1)
        self.fail(f"job {job} still queued after {seconds} s")

    def test_a_job_array_gives_the_local_sweeps_results(self):
        local = sweep(*GRID, "--dir", str(self.tmp / "local"))
        self.assertEqual(local.returncode, 0, local.stdout + local.stderr)
        folder = self.tmp / "array"
        submitted = sweep(*GRID, "--dir", str(folder), "--slurm", "--cpus-per-task", "1", env=self.env)
        self.assertEqual(submitted.returncode, 0, submitted.stdout + submitted.stderr)
        self.assertIn("5 array tasks", submitted.stdout)
        job = submitted.stdout.split("submitted job ")[1].split(":")[0]
        # submitted again at once: what is queued or running is not submitted twice
        twice = sweep(*GRID, "--dir", str(folder), "--slurm", "--cpus-per-task", "1", env=self.env)
        self.assertEqual(twice.returncode, 0, twice.stdout + twice.stderr)
        self.assertIn(" 0 to run", twice.stdout)
        self.assertNotIn("submitted", twice.stdout)
        self.wait_for(job)
        collected = sweep("--collect", str(folder))
        self.assertEqual(collected.returncode, 0, collected.stdout + collected.stderr)
        self.assertIn("5 reported, 0 failed, 0 not finished, of 5", collected.stdout)
        self.assertEqual(perplexities(folder), perplexities(self.tmp / "local"))
        self.assertEqual({row["host"] for row in results(folder).values()}, {os.uname().nodename})
        # nothing left to submit
        again = sweep(*GRID, "--dir", str(folder), "--slurm", env=self.env)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("0 to run", again.stdout)
        self.assertNotIn("submitted", again.stdout)


def main():
    groups = {"local": [LocalSweep, Plot], "slurm": [SlurmSweep]}
    chosen = groups.get(sys.argv[2] if len(sys.argv) > 2 else "", None)
    if chosen is None:
        print(__doc__, file=sys.stderr)
        return 2
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(c) for c in chosen)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if not result.wasSuccessful():
        return 1
    return 77 if result.testsRun == 0 or len(result.skipped) >= result.testsRun else 0


if __name__ == "__main__":
    sys.exit(main())
