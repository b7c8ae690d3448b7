#!/usr/bin/env bash
# The minimum Rust version in Cargo.toml is true: the library and the binary
# build with that toolchain and the locked dependencies.
#
#   bash scripts/ci-msrv.sh        # run by .ci/run
#
# Reads rust-version from Cargo.toml, installs that toolchain with rustup
# (minimal profile; a no-op when it is there) and runs
# `cargo +VER check --locked --lib --bins` in target/msrv, apart from the
# stable build's artifacts. The tests are not checked: the dev-dependencies
# declare a newer Rust (proptest 1.12 and boon's url -> icu 2.4 need 1.88),
# which binds contributors, not users. One PASS/FAIL line per step.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portguard-msrv.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
T_START=$(date +%s%3N)

# shellcheck source=scripts/lib/ci.sh
source scripts/lib/ci.sh

MSRV=$(sed -n 's/^rust-version *= *"\([0-9][0-9.]*\)".*/\1/p' Cargo.toml | head -n 1)
[[ -n $MSRV ]] || fail msrv "no rust-version = \"X.Y\" in Cargo.toml"
command -v rustup >/dev/null 2>&1 || fail toolchain "rustup is not on PATH: cannot install Rust $MSRV"

t0=$(now_ms)
rustup toolchain install "$MSRV" --profile minimal --no-self-update >"$WORK/rustup.log" 2>&1 ||
  fail toolchain "rustup toolchain install $MSRV --profile minimal failed" "$WORK/rustup.log"
rustc_version=$(rustup run "$MSRV" rustc --version 2>&1) ||
  fail toolchain "rustc $MSRV does not run: $rustc_version"
pass toolchain "$rustc_version ($(secs "$t0" "$(now_ms)"))"

t0=$(now_ms)
target=${CARGO_TARGET_DIR:-target}/msrv
cargo "+$MSRV" check --locked --lib --bins --target-dir "$target" >"$WORK/check.log" 2>&1 ||
  fail check "cargo +$MSRV check --locked --lib --bins failed: rust-version $MSRV in Cargo.toml is not true" "$WORK/check.log"
pass check "cargo +$MSRV check --locked --lib --bins ($(secs "$t0" "$(now_ms)"))"

echo "PASS ci-msrv         portguard builds with Rust $MSRV, its rust-version ($(secs "$T_START" "$(now_ms)") in all)"
