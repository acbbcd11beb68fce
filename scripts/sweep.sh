#!/usr/bin/env bash
# Runs pbllm-quantize over every combination of comma-separated --low_frac and
# --salient_metric values (the other arguments passed as they are), each with
# --eval and a JSON report, then prints one table row per run.
#   scripts/sweep.sh MODEL DATASET METHOD --low_frac 0.5,0.8,0.9,0.95 --salient_metric magnitude,hessian \
#                    [--eval wikitext2,ptb] [--max-windows 20] [other pbllm-quantize flags]
# Reports go to $SWEEP_DIR (default sweep-<date>/); a run already reported there is not run again.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 3 ]] || { sed -n '2,8p' "$0"; exit 2; }
MODEL=$1 DATASET=$2 METHOD=$3
shift 3
FRACS=0.9 METRICS=magnitude EVAL=wikitext2,ptb,c4 PASS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --low_frac|--low-frac) FRACS=$2; shift 2 ;;
    --salient_metric|--salient-metric) METRICS=$2; shift 2 ;;
    --eval) EVAL=$2; shift 2 ;;
    *) PASS+=("$1"); shift ;;
  esac
done
BIN=${BUILD_DIR:-build}/tools/pbllm-quantize
[[ -x "$BIN" ]] || scripts/setup.sh
SWEEP_DIR=${SWEEP_DIR:-sweep-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$SWEEP_DIR"
for frac in ${FRACS//,/ }; do
  for metric in ${METRICS//,/ }; do
    report="$SWEEP_DIR/${METHOD}_${frac}_${metric}.json"
    [[ -f "$report" ]] && continue
    echo "== $METHOD low_frac $frac $metric" >&2
    "$BIN" "$MODEL" "$DATASET" "$METHOD" --low_frac "$frac" --salient_metric "$metric" --eval "$EVAL" \
      --json "$report" --log-level warn "${PASS[@]+"${PASS[@]}"}" >&2
  done
done
python3 - "$SWEEP_DIR" <<'PY'
import glob, json, sys
rows = []
for path in sorted(glob.glob(f"{sys.argv[1]}/*.json")):
    r = json.load(open(path))
    a, ppl = r["arguments"], r.get("perplexity", {})
    cells = [f"{ppl[d]['perplexity']:.2f}" if "perplexity" in ppl.get(d, {}) else "-" for d in sorted(ppl)]
    rows.append((a["salient_metric"], a["low_frac"], cells, r["totals"]["seconds"], sorted(ppl)))
if rows:
    print("| metric | low_frac | " + " | ".join(rows[0][4]) + " | seconds |")
    print("|---|---|" + "---|" * len(rows[0][4]) + "---|")
    for metric, frac, cells, seconds, _ in sorted(rows):
        print(f"| {metric} | {frac} | " + " | ".join(cells) + f" | {seconds:.0f} |")
PY
