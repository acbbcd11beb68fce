#!/usr/bin/env bash
# Sweeps pbllm-quantize over a grid of --low_frac x --salient_metric x --corrections, here (--jobs N) or as
# a Slurm job array (--slurm), and gathers results.csv, results.md and results.png: scripts/sweep.py --help.
#   scripts/sweep.sh MODEL DATASET METHOD --low_frac 0.5,0.8,0.9,0.95 --salient_metric magnitude,hessian \
#                    [--corrections each] [--eval wikitext2,ptb] [--jobs N] [--slurm ...] [pbllm-quantize flags]
#   scripts/sweep.sh --collect DIR
# The tools come from $BUILD_DIR (default build/, relative to the repository); scripts/setup.sh builds them.
exec python3 "$(dirname "$0")/sweep.py" "$@"
