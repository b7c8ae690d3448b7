#!/usr/bin/env bash
# `cargo install --locked portguard` works: the crate packages and builds.
#
#   bash scripts/ci-package.sh [--allow-dirty]     # run by .ci/run
#
# 1. `cargo package --list --locked`: the crate carries every rules/*.toml and
#    schema/*.json (the binary embeds the rules with include_str!, the tests
#    read both) and none of the scaffolding Cargo.toml excludes (.ci/, bench/,
#    fuzz/, scripts/);
# 2. `cargo publish --dry-run --locked`: packages the crate, builds the
#    unpacked .crate with its Cargo.lock (what `cargo install --locked` does)
#    and stops before uploading. Needs the crates.io index.
# One PASS/FAIL line per step; exit 1 on the first failure. --allow-dirty
# (for local use with uncommitted changes) is passed on to cargo.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

EXTRA=()
for arg in "$@"; do
  case $arg in
    --allow-dirty) EXTRA+=(--allow-dirty) ;;
    *) echo "usage: $0 [--allow-dirty]" >&2; exit 2 ;;
  esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portguard-package.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
T_START=$(date +%s%3N)

# shellcheck source=scripts/lib/ci.sh
source scripts/lib/ci.sh

# ------------------------------------------------------------ 1. contents
t0=$(now_ms)
cargo package --list --locked "${EXTRA[@]}" >"$WORK/list" 2>"$WORK/list.log" ||
  fail contents "cargo package --list --locked failed" "$WORK/list.log"
missing=()
shopt -s nullglob
wanted=(rules/*.toml schema/*.json)
shopt -u nullglob
((${#wanted[@]} > 0)) || fail contents "no rules/*.toml or schema/*.json in the checkout"
for f in "${wanted[@]}"; do grep -qxF "$f" "$WORK/list" || missing+=("$f"); done
((${#missing[@]} == 0)) || fail contents "the crate lacks ${missing[*]}"
grep -qx 'src/main.rs' "$WORK/list" || fail contents "the crate lacks src/main.rs"
stray=$(grep -E '^(\.ci|bench|fuzz|scripts)/' "$WORK/list" | head -n 5)
[[ -z $stray ]] || fail contents "the crate carries scaffolding: $(tr '\n' ' ' <<<"$stray")"
pass contents "$(wc -l <"$WORK/list") files, with ${wanted[*]} ($(secs "$t0" "$(now_ms)"))"

# ------------------------------------------------------------ 2. publish --dry-run
t0=$(now_ms)
cargo publish --dry-run --locked "${EXTRA[@]}" >"$WORK/publish.log" 2>&1 ||
  fail publish "cargo publish --dry-run --locked failed" "$WORK/publish.log"
size=$(grep -m1 -oE 'Packaged [0-9]+ files?, .*' "$WORK/publish.log")
compiled=$(grep -cE '^ *Compiling ' "$WORK/publish.log")
grep -q 'aborting upload due to dry run' "$WORK/publish.log" ||
  fail publish "cargo publish --dry-run did not get to the upload step" "$WORK/publish.log"
pass publish "cargo publish --dry-run --locked: ${size:-packaged}; the packaged crate builds (compiled $compiled crate(s), $(secs "$t0" "$(now_ms)"))"

echo "PASS ci-package      cargo install --locked works from the packaged crate ($(secs "$T_START" "$(now_ms)") in all)"
