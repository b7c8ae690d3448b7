# Helpers shared by the scripts/ci-*.sh stages: one PASS/FAIL line per step,
# with times. Source it after `cd` to the repository root.

now_ms() { date +%s%3N; }
# the time between two now_ms readings, as "1.234 s"
secs() { local ms=$(( $2 - $1 )); printf '%d.%03d s' $((ms / 1000)) $((ms % 1000)); }
pass() { printf 'PASS %-14s %s\n' "$1" "$2"; }
# fail STEP MESSAGE [LOG]: the FAIL line, then the LOG's errors (compiler
# errors with their context when it has any, else its last lines); exits 1.
STEP_FAILED=0
fail() {
  printf 'FAIL %-14s %s\n' "$1" "$2"
  if [[ -n ${3:-} && -s $3 ]]; then
    echo "---- from $(basename "$3") ----"
    { grep -E -A 12 '^error' "$3" || tail -n 40 "$3"; } | head -n 80 | cut -c1-300
  fi
  STEP_FAILED=1
  exit 1
}
