#!/usr/bin/env bash
# cmake --install into a prefix, the prefix moved elsewhere, then the
# installed tools run from there with no PBLLM_DATA: they find the bundled
# data beside their bin/ (not the source tree), and the docs are installed.
#   test_install.sh BUILD_DIR
set -uo pipefail
BUILD=$(realpath "$1")
source "$(dirname "$0")/lib.sh"

cmake --install "$BUILD" --prefix "$SCRATCH/prefix" >"$SCRATCH/install.log" 2>&1
check "cmake --install exits 0" test $? -eq 0
mv "$SCRATCH/prefix" "$SCRATCH/moved"
for file in bin/pbllm-quantize bin/pbllm-eval bin/pbllm-inspect share/pbllm/data/stories260K/model.safetensors \
  share/doc/pbllm/README.md share/doc/pbllm/DESIGN.md share/doc/pbllm/LICENSE; do
  check "installed $file" test -e "$SCRATCH/moved/$file"
done
DATA="$SCRATCH/moved/share/pbllm/data"
env -u PBLLM_DATA "$SCRATCH/moved/bin/pbllm-eval" "$DATA/stories260K" --datasets ptb --max-windows 2 \
  --json "$SCRATCH/eval.json" --log-level info >/dev/null 2>"$SCRATCH/err"
check "the moved pbllm-eval runs (exit $?)" test -s "$SCRATCH/eval.json"
check "... on the installed data" grep -qF "tokens from $DATA/ptb/ptb.test.txt" "$SCRATCH/err"
PBLLM_DATA="$SCRATCH/none" "$SCRATCH/moved/bin/pbllm-eval" "$DATA/stories260K" --datasets ptb --log-level off \
  >/dev/null 2>&1
check "PBLLM_DATA still wins" test $? -ne 0
finish
