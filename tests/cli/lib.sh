# What the shell tests share: a scratch folder removed on exit, and checks
# that count passes and failures (`finish` reports them and sets the status).
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
passed=0 failed=0

# expect_error NEEDLE COMMAND...: non-zero exit, exactly one stderr line containing NEEDLE.
expect_error() {
  local needle=$1; shift
  "$@" >"$SCRATCH/out" 2>"$SCRATCH/err"
  local status=$? lines
  lines=$(wc -l <"$SCRATCH/err")
  if [[ $status -ne 0 && $lines -eq 1 ]] && grep -qF -- "$needle" "$SCRATCH/err"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $* -> exit $status, $lines stderr lines, expected one containing '$needle':"; cat "$SCRATCH/err"
  fi
}
check() {  # check DESCRIPTION CONDITION...
  local what=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $what"; fi
}
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
}
