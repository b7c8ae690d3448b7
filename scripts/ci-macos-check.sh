#!/usr/bin/env bash
# The library and the binary type-check for macOS (x86_64-apple-darwin).
#
#   bash scripts/ci-macos-check.sh
#
# Adds the target's standard library with rustup and runs
# `cargo check --locked --target x86_64-apple-darwin --lib --bins` with the
# default toolchain. `check` needs no macOS linker or SDK: nothing is linked.
# On failure it prints the number of errors and the errors themselves.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

TARGET=x86_64-apple-darwin
WORK=$(mktemp -d "${TMPDIR:-/tmp}/portguard-macos.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
T_START=$(date +%s%3N)

# shellcheck source=scripts/lib/ci.sh
source scripts/lib/ci.sh

command -v rustup >/dev/null 2>&1 || { printf 'FAIL %-14s %s\n' target "rustup is not on PATH"; exit 1; }

t0=$(now_ms)
if ! rustup target add "$TARGET" >"$WORK/rustup.log" 2>&1; then
  printf 'FAIL %-14s %s\n' target "rustup target add $TARGET failed"
  tail -n 20 "$WORK/rustup.log"
  exit 1
fi
pass target "$TARGET for $(rustc --version) ($(secs "$t0" "$(now_ms)"))"

t0=$(now_ms)
if ! cargo check --locked --target "$TARGET" --lib --bins --color never >"$WORK/check.log" 2>&1; then
  errors=$(grep -cE '^error(\[E[0-9]+\])?: ' "$WORK/check.log")
  summary=$(grep -m1 -oE 'could not compile .*' "$WORK/check.log")
  printf 'FAIL %-14s %s\n' check "cargo check --target $TARGET --lib --bins: ${summary:-$errors error(s)} ($(secs "$t0" "$(now_ms)"))"
  # every error with its location and help, warnings left out
  awk '/^(error|warning)/ { show = /^error/ } show' "$WORK/check.log" | cut -c1-300
  exit 1
fi
pass check "cargo check --locked --target $TARGET --lib --bins ($(secs "$t0" "$(now_ms)"))"
echo "PASS ci-macos-check  portguard type-checks for $TARGET ($(secs "$T_START" "$(now_ms)") in all)"
