#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every test suite through CTest. The
# oracle tests run Hugging Face transformers from pip on the same inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j"$(nproc)" "$@"
