#!/usr/bin/env bash
# Sets up, then evaluates the bundled stories260K model on the bundled
# WikiText-2 and Penn Treebank test sets (c4 is reported as skipped: its
# files are not bundled).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
"${BUILD_DIR:-build}"/tools/pbllm-eval data/stories260K "$@"
