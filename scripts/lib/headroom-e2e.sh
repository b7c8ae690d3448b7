# shellcheck shell=bash
# Shared by scripts/e2e-headroom.sh and scripts/e2e-wrap.sh; sourced, not run.
#
# Source it from the repository root BEFORE changing HOME: the venv's cache path
# is computed here, from the real HOME (or $PORTGUARD_E2E_CACHE).
#
# The caller defines WORK (a scratch directory removed on exit) and PY (the
# machine's python3; replaced by the interpreter's real path). It provides:
#   HEADROOM_SPEC, VENV, PG         the pinned package, its venv, the portguard binary
#   now_ms, secs, pass, fail, info  timing and PASS/FAIL lines (fail exits 1)
#   starttime, track, alive         pids by pid + start time (STARTED map)
#   bindable PORT, livez PORT       SO_REUSEADDR bind on 127.0.0.1; /livez names headroom-proxy
#   install_headroom_venv           step "install": the cached venv (created when missing)
#   find_portguard                  step "build": $PORTGUARD_BIN, else cargo build --release

HEADROOM_SPEC="headroom-ai==0.42.0"
HEADROOM_DEPS=(click rich pydantic pyyaml tomlkit truststore filelock tiktoken opentelemetry-api
               'httpx[http2]' fastapi 'uvicorn<1' openai mcp zstandard websockets transformers
               orjson magika)
HEADROOM_CACHE=${PORTGUARD_E2E_CACHE:-${HOME:?HOME is not set}/.cache/portguard-e2e}
VENV=$HEADROOM_CACHE/venv
HEADROOM_STAMP="$HEADROOM_SPEC ${HEADROOM_DEPS[*]}"

# The interpreter itself, not a pyenv/asdf shim: the helpers below run it often.
PY=$("$PY" -c 'import sys; print(sys.executable)' 2>/dev/null) || PY=python3

declare -A STARTED=()           # pid -> start time (field 22 of /proc/PID/stat)
# shellcheck disable=SC2034  # set by fail; read by the callers' cleanup
STEP_FAILED=0

now_ms() { date +%s%3N; }
secs() { local ms=$(( $2 - $1 )); printf '%d.%03d s' $((ms / 1000)) $((ms % 1000)); }
pass() { printf 'PASS %-22s %s\n' "$1" "$2"; }
fail() {
  printf 'FAIL %-22s %s\n' "$1" "$2"
  STEP_FAILED=1
  exit 1
}
info() { printf '     %s\n' "$*"; }

# starttime of a live (non-zombie) pid, empty when gone or a zombie
starttime() {
  local stat rest f
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  rest=${stat##*) }             # fields from 3 on (comm may contain spaces)
  read -r -a f <<<"$rest"
  [[ ${f[0]} == Z || ${f[0]} == X ]] && return 0
  echo "${f[19]}"
}
# the very process we started (same pid and start time) is still running
alive() { local st; st=$(starttime "$1"); [[ -n $st && $st == "${STARTED[$1]:-$st}" ]]; }
track() { local st; st=$(starttime "$1"); [[ -n $st ]] && STARTED[$1]=$st; }

# TCP port is bindable on 127.0.0.1 (SO_REUSEADDR, as portguard verifies "freed")
bindable() {
  "$PY" - "$1" <<'PYEOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PYEOF
}

# GET /livez answers JSON with "service": "headroom-proxy"
livez() {
  "$PY" - "$1" <<'PYEOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/livez", timeout=2) as r:
        ok = json.load(r).get("service") == "headroom-proxy"
except Exception:
    ok = False
sys.exit(0 if ok else 1)
PYEOF
}

venv_ok() {
  [[ -x $VENV/bin/python && -f $VENV/.portguard-e2e && "$(cat "$VENV/.portguard-e2e")" == "$HEADROOM_STAMP" ]] &&
    "$VENV/bin/python" -c 'import headroom.cli, headroom.proxy.server' >/dev/null 2>&1
}

# Step "install": headroom-ai into the cached venv; reused when it imports.
install_headroom_venv() {
  local t0 reason
  t0=$(now_ms)
  mkdir -p "$HEADROOM_CACHE" || fail install "cannot create cache dir $HEADROOM_CACHE"
  exec 9>"$HEADROOM_CACHE/.lock"
  flock -w 900 9 2>/dev/null || true    # one installer at a time (best effort)
  if venv_ok; then
    pass install "reused cached venv $VENV ($HEADROOM_SPEC, $(secs "$t0" "$(now_ms)"))"
  else
    echo "     installing $HEADROOM_SPEC into $VENV (about 45 s and 570 MB on a cold cache)"
    rm -rf "$VENV"
    if ! "$PY" -m venv "$VENV" >"$WORK/venv.log" 2>&1; then
      # Debian without python3-venv: make a pip-less venv, bootstrap pip from outside.
      rm -rf "$VENV"
      "$PY" -m venv --without-pip "$VENV" >>"$WORK/venv.log" 2>&1 &&
        timeout 300 "$PY" -m pip --python "$VENV/bin/python" install -q pip >>"$WORK/venv.log" 2>&1 ||
        fail install "could not create a venv with $PY (python3-venv missing?): $(tail -n 3 "$WORK/venv.log")"
    fi
    local vpip=("$VENV/bin/python" -m pip --disable-pip-version-check)
    if ! timeout 600 "${vpip[@]}" install -q --no-deps "$HEADROOM_SPEC" >"$WORK/pip-headroom.log" 2>&1; then
      reason="pip install $HEADROOM_SPEC failed"
      grep -qiE 'No matching distribution|Could not find a version' "$WORK/pip-headroom.log" &&
        reason="$HEADROOM_SPEC is not available from the package index (not on PyPI, or no wheel for this platform/Python)"
      rm -rf "$VENV"
      fail install "$reason: $(grep -v '^\s*$' "$WORK/pip-headroom.log" | tail -n 1 | cut -c1-300)"
    fi
    if ! timeout 900 "${vpip[@]}" install -q "${HEADROOM_DEPS[@]}" >"$WORK/pip-deps.log" 2>&1; then
      rm -rf "$VENV"
      fail install "pip install of headroom's runtime dependencies failed: $(tail -n 2 "$WORK/pip-deps.log" | tr '\n' ' ')"
    fi
    if ! "$VENV/bin/python" -c 'import headroom.cli, headroom.proxy.server' >"$WORK/import.log" 2>&1; then
      rm -rf "$VENV"
      fail install "headroom installed but does not import: $(tail -n 2 "$WORK/import.log")"
    fi
    echo "$HEADROOM_STAMP" >"$VENV/.portguard-e2e"
    pass install "$HEADROOM_SPEC + deps into $VENV ($(du -sh "$VENV" 2>/dev/null | cut -f1), $(secs "$t0" "$(now_ms)"))"
  fi
  flock -u 9 2>/dev/null; exec 9>&-
  rm -f "$WORK"/pip-*.log "$WORK"/venv.log "$WORK"/import.log
}

# Step "build": PG = $PORTGUARD_BIN (made absolute), else a fresh release build.
find_portguard() {
  local t0
  t0=$(now_ms)
  if [[ -n ${PORTGUARD_BIN:-} ]]; then
    PG=$PORTGUARD_BIN
    [[ $PG == /* ]] || PG=$PWD/$PG
    [[ -x $PG ]] || fail build "PORTGUARD_BIN=$PORTGUARD_BIN is not executable"
    pass build "using PORTGUARD_BIN=$PORTGUARD_BIN"
  else
    cargo build --release --locked --quiet >"$WORK/cargo.log" 2>&1 ||
      fail build "cargo build --release failed: $(grep -m1 -E '^error' "$WORK/cargo.log")"
    PG=${CARGO_TARGET_DIR:-$PWD/target}/release/portguard
    [[ $PG == /* ]] || PG=$PWD/$PG
    [[ -x $PG ]] || fail build "no binary at $PG"
    rm -f "$WORK/cargo.log"
    pass build "$PG ($(secs "$t0" "$(now_ms)"))"
  fi
}
