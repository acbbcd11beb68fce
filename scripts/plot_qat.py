#!/usr/bin/env python3
"""Loss curves of pbllm-qat runs: the training loss of each step from the
--json reports, one line per run (log scale when the losses span more than
a factor of 20), and the learning rate below.

    plot_qat.py OUT.png [LABEL=]REPORT.json...
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def fail(message):
    print(f"plot_qat.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def read_run(argument):
    # LABEL=PATH, or PATH alone (which may hold "=" itself).
    label, _, path = ("", "", argument) if Path(argument).exists() else argument.partition("=")
    path = Path(path)
    try:
        report = json.loads(path.read_text())
        steps = [(int(s["step"]), float(s["loss"]), float(s["lr"])) for s in report["steps"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        fail(f"{path}: not a pbllm-qat --json report ({error})")
    if not steps:
        fail(f"{path}: the report has no steps")
    return label or path.stem, steps


def main():
    if len(sys.argv) < 3:
        fail("usage: plot_qat.py OUT.png [LABEL=]REPORT.json...")
    runs = [read_run(a) for a in sys.argv[2:]]
    figure, (loss_axis, lr_axis) = plt.subplots(2, 1, figsize=(6.4, 5.6), dpi=100, sharex=True,
                                                gridspec_kw={"height_ratios": [3, 1]})
    losses = [loss for _, steps in runs for _, loss, _ in steps]
    for label, steps in runs:
        loss_axis.plot([s for s, _, _ in steps], [loss for _, loss, _ in steps], marker="." if len(steps) <= 60 else None,
                       label=label)
    if max(losses) > 20 * min(losses):
        loss_axis.set_yscale("log")
    loss_axis.set_ylabel("training loss (next-token NLL)")
    loss_axis.legend()
    loss_axis.grid(alpha=0.3)
    label, steps = runs[0]
    lr_axis.plot([s for s, _, _ in steps], [lr for _, _, lr in steps], color="gray")
    lr_axis.set_ylabel("learning rate")
    lr_axis.set_xlabel("optimizer step")
    lr_axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(sys.argv[1])
    print(f"wrote {sys.argv[1]}")


if __name__ == "__main__":
    main()
