#!/usr/bin/env bash
# The reference's Python (transformers 4.35.2, as hahnyuan/PB-LLM pins; torch from the system's) in a
# venv of its own under the build folder, made on first use; prints the path of its python.
#   scripts/reference-venv.sh   (BUILD_DIR: default build)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BUILD_DIR:-build}/reference-venv
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv --system-site-packages "$VENV" >&2 || { echo "reference-venv: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$VENV/bin/pip" install -q "transformers==4.35.2" >&2
fi
echo "$(cd "$VENV/bin" && pwd)/python"  # not realpath: the link is what makes it the venv
