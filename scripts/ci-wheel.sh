#!/usr/bin/env bash
# `pip install portguard` works: build the wheel and use it from a fresh venv.
#
#   bash scripts/ci-wheel.sh        # run by .ci/run
#
# 1. installs maturin (pinned) into a throwaway venv,
# 2. builds the release wheel (`bindings = "bin"`, pyproject.toml) into a
#    temporary dist/; cargo reuses target/ (or $CARGO_TARGET_DIR) as usual,
# 3. checks the wheel: one binary in <name>.data/scripts, and metadata that
#    agrees with Cargo.toml (name, version, description, license),
# 4. creates a FRESH venv and pip-installs the wheel file into it offline
#    (--no-index --no-deps),
# 5. with only that venv's bin/ added to PATH, proves `portguard` is the
#    installed entry point and that it works: --version, resolve on a free port
#    (exit 0), --explain on a port held by a listener this script starts
#    (refused, exit 4, the listener named as a holder), and test rules/*.toml.
# One PASS/FAIL line per step; exit 1 on the first failure. The only process
# started is that listener, killed by pid on exit; the temporary directory is
# removed on exit.
#
# Env: PYTHON (interpreter for the venvs, default python3), PORTGUARD_WHEEL_OUT
# (copy the built wheel into this directory).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

MATURIN_VERSION=1.16.0
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/portguard-wheel.XXXXXX") || exit 2
HOLDER=
T_START=$(date +%s%3N)

# shellcheck source=scripts/lib/ci.sh
source scripts/lib/ci.sh   # now_ms, secs, pass, fail (sets STEP_FAILED)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $HOLDER ]] && kill -0 "$HOLDER" 2>/dev/null; then
    kill -TERM "$HOLDER" 2>/dev/null
    wait "$HOLDER" 2>/dev/null
  fi
  if ((rc != 0)) && ((STEP_FAILED == 0)); then
    echo "FAIL ci-wheel       interrupted or unexpected error (exit $rc)"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# mkvenv DIR LOG: a venv with pip. Debian's python3 needs python3-venv for
# that (ensurepip); install it when we can (root with apt-get), as .ci/run
# installs python3 itself.
mkvenv() {
  local dir=$1 log=$2
  "$PY" -m venv "$dir" >>"$log" 2>&1 && "$dir/bin/python" -m pip --version >>"$log" 2>&1 && return 0
  rm -rf "$dir"
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    echo "     $PY cannot create a venv with pip: installing python3-venv" >&2
    { apt-get update -qq && apt-get install -y -qq python3-venv; } >>"$log" 2>&1 || return 1
    "$PY" -m venv "$dir" >>"$log" 2>&1 && "$dir/bin/python" -m pip --version >>"$log" 2>&1 && return 0
  fi
  return 1
}

# ------------------------------------------------------------ 0. the crate
command -v "$PY" >/dev/null 2>&1 || fail setup "no $PY on PATH (set PYTHON)"
cargo metadata --no-deps --format-version 1 >"$WORK/metadata.json" 2>"$WORK/metadata.log" ||
  fail setup "cargo metadata failed" "$WORK/metadata.log"
read -r NAME VERSION < <("$PY" -c '
import json, sys
p = json.load(open(sys.argv[1]))["packages"][0]
print(p["name"], p["version"])' "$WORK/metadata.json") || fail setup "cannot read cargo metadata"

# ------------------------------------------------------------ 1. maturin
t0=$(now_ms)
TOOLS=$WORK/tools
mkvenv "$TOOLS" "$WORK/tools.log" || fail maturin "cannot create a venv with $PY" "$WORK/tools.log"
"$TOOLS/bin/python" -m pip install -q --disable-pip-version-check --only-binary maturin \
  "maturin==$MATURIN_VERSION" >>"$WORK/tools.log" 2>&1 ||
  fail maturin "pip install maturin==$MATURIN_VERSION failed" "$WORK/tools.log"
pass maturin "maturin $MATURIN_VERSION in a throwaway venv ($(secs "$t0" "$(now_ms)"))"

# ------------------------------------------------------------ 2. build
t0=$(now_ms)
"$TOOLS/bin/maturin" build --release --locked --out "$WORK/dist" >"$WORK/build.log" 2>&1 ||
  fail build "maturin build --release --locked failed" "$WORK/build.log"
shopt -s nullglob
wheels=("$WORK/dist/$NAME-$VERSION-"*.whl)
shopt -u nullglob
((${#wheels[@]} == 1)) || fail build "expected one $NAME-$VERSION-*.whl, found: $(ls "$WORK/dist")"
WHEEL=${wheels[0]}
pass build "$(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB, $(secs "$t0" "$(now_ms)"))"
if [[ -n ${PORTGUARD_WHEEL_OUT:-} ]]; then
  { mkdir -p "$PORTGUARD_WHEEL_OUT" && cp "$WHEEL" "$PORTGUARD_WHEEL_OUT/"; } ||
    fail build "cannot copy the wheel to $PORTGUARD_WHEEL_OUT"
fi

# ------------------------------------------------------------ 3. contents
summary=$("$PY" - "$WHEEL" "$WORK/metadata.json" <<'EOF'
import json, sys, zipfile
from email.parser import HeaderParser
wheel, meta = sys.argv[1], sys.argv[2]
pkg = json.load(open(meta))["packages"][0]
name, version = pkg["name"], pkg["version"]
z = zipfile.ZipFile(wheel)
names = z.namelist()
errs = []
script = f"{name}-{version}.data/scripts/{name}"
if script not in names:
    errs.append(f"no {script} in the wheel")
elif not (z.getinfo(script).external_attr >> 16) & 0o111:
    errs.append(f"{script} is not executable")
extra = [n for n in names if n != script and not n.startswith(f"{name}-{version}.dist-info/")]
if extra:
    errs.append(f"unexpected files: {extra}")
md = HeaderParser().parsestr(z.read(f"{name}-{version}.dist-info/METADATA").decode())
want = {"Name": name, "Version": version, "Summary": pkg["description"],
        "License-Expression": pkg["license"]}
for key, value in want.items():
    if md.get(key) != value:
        errs.append(f"METADATA {key} is {md.get(key)!r}, Cargo.toml says {value!r}")
if errs:
    print("; ".join(errs)); sys.exit(1)
tag = z.read(f"{name}-{version}.dist-info/WHEEL").decode().split("Tag: ", 1)[1].split()[0]
print(f"{script} ({z.getinfo(script).file_size // 1024} KiB), tag {tag},"
      f" Requires-Python {md.get('Requires-Python')}, metadata agrees with Cargo.toml")
EOF
) || fail contents "$summary"
pass contents "$summary"

# ------------------------------------------------------------ 4. install
t0=$(now_ms)
VENV=$WORK/venv
mkvenv "$VENV" "$WORK/venv.log" || fail install "cannot create a fresh venv with $PY" "$WORK/venv.log"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-index --no-deps "$WHEEL" \
  >>"$WORK/venv.log" 2>&1 || fail install "pip install of the wheel into a fresh venv failed" "$WORK/venv.log"
pass install "pip install --no-index $(basename "$WHEEL") into a fresh venv ($(secs "$t0" "$(now_ms)"))"

# ------------------------------------------------------------ 5. use it
# From here on `portguard` is whatever PATH finds: it must be the venv's.
export PATH="$VENV/bin:$PATH"
hash -r
unset PORTGUARD_POLICY
found=$(command -v portguard) || fail entry-point "no portguard on PATH after pip install"
[[ $found == "$VENV/bin/portguard" ]] || fail entry-point "PATH finds $found, not the venv's $VENV/bin/portguard"
[[ -f $found && ! -L $found && -x $found ]] || fail entry-point "$found is not an executable file"
pass entry-point "$found"

out=$(portguard --version 2>&1) || fail version "portguard --version: exit $?: $out"
[[ $out == "$NAME $VERSION" ]] || fail version "portguard --version printed '$out', want '$NAME $VERSION'"
pass version "$out"

# A free port: bind port 0 and close it. Run from $WORK so no ./portguard.toml
# of the checkout is picked up.
PORT=$("$PY" -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()') ||
  fail resolve "cannot find a free port"
rc=0
out=$(cd "$WORK" && portguard resolve "$PORT" --policy headroom --format json 2>&1) || rc=$?
[[ $rc == 0 ]] || fail resolve "portguard resolve $PORT (free): exit $rc, want 0: $out"
outcome=$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["ports"][0]["outcome"])' "$out" 2>&1) ||
  fail resolve "resolve $PORT printed no JSON report: $out"
[[ $outcome == free ]] || fail resolve "resolve $PORT: outcome '$outcome', want 'free': $out"
pass resolve "portguard resolve $PORT: exit 0, outcome free"

# A held port: a listener of ours. The safe policy refuses it; --explain acts
# on nothing either way. The report must name the listener's pid.
"$PY" -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(300)' >"$WORK/holder.port" 2>"$WORK/holder.log" &
HOLDER=$!
for _ in $(seq 100); do [[ -s $WORK/holder.port ]] && break; sleep 0.05; done
HPORT=$(head -n 1 "$WORK/holder.port")
[[ $HPORT =~ ^[0-9]+$ ]] || fail resolve-held "the test listener did not start" "$WORK/holder.log"
rc=0
out=$(cd "$WORK" && portguard resolve "$HPORT" --policy safe --explain --format json 2>/dev/null) || rc=$?
[[ $rc == 4 ]] || fail resolve-held "portguard resolve $HPORT --policy safe --explain: exit $rc, want 4: $out"
holders=$("$PY" -c '
import json, sys
print(" ".join(str(h.get("pid")) for h in json.loads(sys.argv[1])["ports"][0]["holders"]))' "$out" 2>&1) ||
  fail resolve-held "no JSON report: $out"
[[ " $holders " == *" $HOLDER "* ]] || fail resolve-held "holders [$holders] do not include the listener pid $HOLDER"
kill -0 "$HOLDER" 2>/dev/null || fail resolve-held "the listener pid $HOLDER is gone after --explain"
pass resolve-held "--explain on port $HPORT: exit 4 (refused), holder pid $HOLDER found, left running"
kill -TERM "$HOLDER" 2>/dev/null; wait "$HOLDER" 2>/dev/null; HOLDER=

rules=("$ROOT"/rules/*.toml)
[[ -f ${rules[0]} ]] || fail test "no rules/*.toml in $ROOT"
rc=0
out=$(portguard test "${rules[@]}" 2>&1) || rc=$?
[[ $rc == 0 ]] || fail test "portguard test rules/*.toml: exit $rc, want 0: $(tail -n 20 <<<"$out")"
pass test "portguard test rules/*.toml (${#rules[@]} files): $(tail -n 1 <<<"$out")"

echo "PASS ci-wheel        pip install $NAME works from the wheel ($(secs "$T_START" "$(now_ms)") in all)"
