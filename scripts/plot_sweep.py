#!/usr/bin/env python3
"""Plots a sweep's results.csv (scripts/sweep.sh writes it) as a PNG: for each evaluation dataset, the
perplexity (log scale) against low_frac and, where the runs were saved packed, against the Linears' bits
per weight; one line per salient metric and correction; the full-precision perplexity as a dashed line.

  scripts/plot_sweep.py results.csv results.png [--title TEXT]

The figure is PANEL_WIDTH x PANEL_HEIGHT pixels per panel (columns: low_frac, bits/weight; rows: datasets).
"""
import argparse
import csv
import math
import sys
from pathlib import Path

PANEL_WIDTH, PANEL_HEIGHT, DPI = 640, 400, 100
REQUIRED = ("id", "kind", "low_frac", "salient_metric", "corrections")


class PlotError(Exception):
    """A one-line reason the CSV cannot be plotted."""


def number(text, where, column):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise PlotError(f"{where}: {column} '{text}' is not a number") from None
    if not math.isfinite(value):
        raise PlotError(f"{where}: {column} is {text}")
    if column.startswith("ppl_") and value <= 0:
        raise PlotError(f"{where}: {column} {text} is not a perplexity (log scale: it must be positive)")
    return value


def read_results(path):
    """(datasets, full-precision perplexity per dataset, curves {(metric, corrections): [(low_frac, bits,
    {dataset: ppl})]}); every malformed cell is a PlotError naming its line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a BOM, as spreadsheets save it, is not a column
            rows = list(csv.DictReader(f))
            header = rows and list(rows[0].keys()) or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PlotError(f"{path}: unreadable ({e})") from None
    if not rows:
        raise PlotError(f"{path}: no rows")
    missing = [c for c in REQUIRED if c not in header]
    datasets = sorted(c[4:] for c in header if c.startswith("ppl_"))
    if missing or not datasets:
        raise PlotError(f"{path}: not a sweep's results.csv (missing columns: {', '.join(missing) or 'ppl_*'})")
    full, curves = {}, {}
    for line, row in enumerate(rows, 2):
        where = f"{path} line {line}"
        if None in row or None in row.values():
            raise PlotError(f"{where}: {len(header)} columns expected")
        ppl = {d: number(row[f"ppl_{d}"], where, f"ppl_{d}") for d in datasets if row[f"ppl_{d}"] != ""}
        if row["kind"] == "full-precision":
            full.update(ppl)
            continue
        if row["kind"] != "quantize":
            raise PlotError(f"{where}: kind '{row['kind']}' is neither quantize nor full-precision")
        bits = row.get("linear_bits_per_weight", "")
        point = (number(row["low_frac"], where, "low_frac"),
                 number(bits, where, "linear_bits_per_weight") if bits != "" else None, ppl)
        curves.setdefault((row["salient_metric"], row["corrections"]), []).append(point)
    if not curves:
        raise PlotError(f"{path}: no quantized configurations")
    return datasets, full, {key: sorted(points, key=lambda p: p[0]) for key, points in sorted(curves.items())}


def plot(csv_path, png_path, title=None):
    datasets, full, curves = read_results(csv_path)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("matplotlib is not installed (scripts/setup.sh installs it)") from None
    with_bits = any(bits is not None for points in curves.values() for _, bits, _ in points)
    columns = 2 if with_bits else 1
    figure, axes = plt.subplots(len(datasets), columns, squeeze=False, dpi=DPI,
                                figsize=(columns * PANEL_WIDTH / DPI, len(datasets) * PANEL_HEIGHT / DPI))
    # A colour per salient metric, a line style (and marker) per correction: the corrections of one metric
    # read as variations of its line.
    metrics = sorted({metric for metric, _ in curves})
    corrections_seen = sorted({c for _, c in curves}, key=lambda c: (c not in ("", "none"), c))
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v")]
    for row, dataset in enumerate(datasets):
        for column in range(columns):
            ax = axes[row][column]
            for (metric, corrections), points in curves.items():
                xy = [(bits if column else frac, ppl[dataset]) for frac, bits, ppl in points
                      if dataset in ppl and (bits is not None or not column)]
                if xy:
                    label = metric + ("" if corrections in ("", "none") else f" + {corrections}")
                    line, marker = styles[corrections_seen.index(corrections) % len(styles)]
                    ax.plot(*zip(*xy), color=f"C{metrics.index(metric)}", linestyle=line, marker=marker,
                            label=label)
            if dataset in full:
                ax.axhline(full[dataset], color="black", linestyle="--", label=f"full precision {full[dataset]:.2f}")
            ax.set_yscale("log")
            ax.set_xlabel("bits per weight (Linears, packed file)" if column else "low_frac (binarized fraction)")
            ax.set_ylabel(f"{dataset} perplexity")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    tmp = Path(png_path).with_name(Path(png_path).name + ".tmp")
    try:
        figure.savefig(tmp, format="png", dpi=DPI)
        tmp.replace(png_path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise PlotError(f"cannot write {png_path}: {e.strerror or e}") from None
    finally:
        plt.close(figure)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv")
    parser.add_argument("png")
    parser.add_argument("--title")
    args = parser.parse_args(argv)
    try:
        plot(args.csv, args.png, args.title)
    except PlotError as e:
        print(f"plot_sweep: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
