#!/usr/bin/env bash
# End to end: portguard against the REAL headroom proxy (issue 4, item 8).
#
#   bash scripts/e2e-headroom.sh        # run by .ci/run
#
# 1. installs headroom-ai into a venv cached outside the checkout
#    ($PORTGUARD_E2E_CACHE, default ~/.cache/portguard-e2e/venv; reused when it
#    imports, re-created otherwise), 2. builds portguard (cargo build --release),
# 3. starts the proxy detached (own session, parent exits: an orphan, like a
#    stale proxy) on a free port of 18787-18887 on 127.0.0.1, and proves:
#    a. --explain plans terminate and leaves it running,
#    b. resolve frees the port (exit 0) and the proxy exits,
#    c. examples/headroom_prestart.py starts a fresh proxy, and a second call
#       replaces it (policy headroom) or reuses it (rules/headroom-reuse.toml,
#       when that file exists),
#    d. nothing is left behind.
# One PASS/FAIL line per step; exit 1 on the first failure. Every process the
# script starts is tracked by pid + start time and killed on EXIT; nothing
# else is ever signalled. Nothing leaves the machine: upstream URLs point at
# 127.0.0.1:9, HEADROOM_OFFLINE/HF_HUB_OFFLINE are set, telemetry is off.
#
# Env: PORTGUARD_E2E_CACHE (cache dir), PORTGUARD_BIN (use this binary instead
# of building), PYTHON (interpreter for the venv, default python3).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

HEADROOM_SPEC="headroom-ai==0.42.0"
DEPS=(click rich pydantic pyyaml tomlkit truststore filelock tiktoken opentelemetry-api
      'httpx[http2]' fastapi 'uvicorn<1' openai mcp zstandard websockets transformers
      orjson magika)
CACHE=${PORTGUARD_E2E_CACHE:-${HOME:?HOME is not set}/.cache/portguard-e2e}
VENV=$CACHE/venv
STAMP="$HEADROOM_SPEC ${DEPS[*]}"
PY=${PYTHON:-python3}           # the machine's python: venv base and helpers
PORT_LO=18787 PORT_HI=18887
LIVEZ_TIMEOUT=${PORTGUARD_E2E_LIVEZ_TIMEOUT:-60}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/portguard-e2e.XXXXXX")

# Everything the proxy gets: no network beyond 127.0.0.1, state in $WORK.
PROXY_ENV=(HEADROOM_OFFLINE=1 HEADROOM_SKIP_UPSTREAM_CHECK=1 HEADROOM_TELEMETRY=off
           ORT_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
           DO_NOT_TRACK=1 PYTHONSAFEPATH=1 PYTHONIOENCODING=utf-8
           HEADROOM_WORKSPACE_DIR="$WORK/headroom-home")
# Variables that would change what the proxy binds or how it forks.
PROXY_UNSET=(-u HEADROOM_PORT -u HEADROOM_HOST -u HEADROOM_WORKERS
             -u HEADROOM_PROXY_CONFIG_JSON -u HEADROOM_WRAP_OWNED)

# ---------------------------------------------------------------- helpers ---
declare -A STARTED=()           # pid -> start time (field 22 of /proc/PID/stat)
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
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  rest=${stat##*) }             # fields from 3 on (comm may contain spaces)
  read -r -a f <<<"$rest"
  [[ ${f[0]} == Z || ${f[0]} == X ]] && return 0
  echo "${f[19]}"
}
# the very process we started (same pid and start time) is still running
alive() { local st; st=$(starttime "$1"); [[ -n $st && $st == "${STARTED[$1]:-$st}" ]]; }
track() { local st; st=$(starttime "$1"); [[ -n $st ]] && STARTED[$1]=$st; }

cleanup() {
  local rc=$? pid left=()
  trap - EXIT INT TERM
  for pid in "${!STARTED[@]}"; do
    alive "$pid" && { kill -TERM "$pid" 2>/dev/null; left+=("$pid"); }
  done
  if ((${#left[@]})); then
    for _ in $(seq 50); do      # up to 5 s for SIGTERM, then SIGKILL
      local any=0
      for pid in "${left[@]}"; do alive "$pid" && any=1; done
      ((any)) || break
      sleep 0.1
    done
    for pid in "${left[@]}"; do alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
    echo "     cleanup: stopped leftover pid(s) ${left[*]}" >&2
  fi
  wait 2>/dev/null              # reap our own background children
  if ((rc != 0)) && ((STEP_FAILED == 0)); then
    echo "FAIL e2e-headroom         interrupted or unexpected error (exit $rc)"
  fi
  if ((rc != 0)); then
    for log in "$WORK"/*.log; do
      [[ -s $log ]] || continue
      echo "---- last lines of $(basename "$log") ----" >&2
      tail -n 25 "$log" | cut -c1-300 >&2
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# TCP port is bindable on 127.0.0.1 (SO_REUSEADDR, as portguard verifies "freed")
bindable() {
  "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

# GET /livez answers JSON with "service": "headroom-proxy"
livez() {
  "$PY" - "$1" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/livez", timeout=2) as r:
        ok = json.load(r).get("service") == "headroom-proxy"
except Exception:
    ok = False
sys.exit(0 if ok else 1)
EOF
}

# wait (bounded) until the proxy PID answers /livez on PORT; LOG for diagnostics
wait_livez() {
  local pid=$1 port=$2 log=$3 deadline=$(( $(now_ms) + LIVEZ_TIMEOUT * 1000 ))
  while (( $(now_ms) < deadline )); do
    livez "$port" && return 0
    alive "$pid" || { info "proxy pid $pid exited before answering /livez"; return 1; }
    sleep 0.25
  done
  info "no /livez answer from port $port within ${LIVEZ_TIMEOUT} s"
  return 1
}

# wait (bounded, seconds) until PID is gone (exited or a zombie nobody reaps)
wait_gone() {
  local pid=$1 deadline=$(( $(now_ms) + $2 * 1000 ))
  while alive "$pid"; do (( $(now_ms) < deadline )) || return 1; sleep 0.05; done
}

# how /proc shows a process, and its children (do workers share the socket?)
describe() {
  "$PY" - "$1" "$2" <<'EOF'
import os, sys
pid, port = sys.argv[1], int(sys.argv[2])
def rd(p):
    try:
        with open(p, "rb") as f: return f.read()
    except OSError: return b""
stat = rd(f"/proc/{pid}/stat").decode()
ppid = stat.rsplit(")", 1)[1].split()[1] if stat else "?"
print(f"     proxy pid {pid}: ppid {ppid}, exe {os.path.realpath(f'/proc/{pid}/exe')}")
print("     cmdline: " + rd(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode().strip())
print(f"     threads: {len(os.listdir(f'/proc/{pid}/task'))}")
kids = [d for d in os.listdir("/proc") if d.isdigit()
        and rd(f"/proc/{d}/stat").decode().rsplit(")", 1)[-1].split()[1:2] == [pid]]
print(f"     children: {', '.join(kids) or 'none'}")
EOF
}

# start the proxy exactly as `headroom wrap` does (Popen(start_new_session=True))
# from a launcher that exits at once: the proxy is orphaned like a stale one.
# Prints the proxy's pid.
start_detached() {
  local port=$1 log=$2
  env "${PROXY_UNSET[@]}" "${PROXY_ENV[@]}" "$PY" - "$log" "${PROXY_CMD[@]}" <<'EOF'
import subprocess, sys
with open(sys.argv[1], "ab") as log:
    p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True)
print(p.pid)
EOF
}

# run portguard, bounded; JSON on $WORK/$name.json, stderr on $WORK/$name.err
PG_RC=0
portguard() {
  local name=$1; shift
  PG_RC=0
  timeout 60 "$PG" "$@" >"$WORK/$name.json" 2>"$WORK/$name.err" || PG_RC=$?
}

# check a portguard JSON report with python; prints a one-line summary or the reason
check_json() {
  "$PY" - "$@" <<'EOF'
import json, sys
path, want_outcome, want_dry, pid = sys.argv[1], sys.argv[2], sys.argv[3] == "true", sys.argv[4]
try:
    doc = json.load(open(path))
    p = doc["ports"][0]
except Exception as e:
    print(f"no JSON report ({e}): {open(path).read()[:300]!r}"); sys.exit(1)
errs = []
if p.get("outcome") != want_outcome: errs.append(f"outcome {p.get('outcome')!r} != {want_outcome!r}")
if p.get("dry_run") is not want_dry: errs.append(f"dry_run {p.get('dry_run')!r} != {want_dry}")
if want_outcome in ("freed",) and p.get("rule") != "stale-headroom-proxy":
    errs.append(f"rule {p.get('rule')!r} != 'stale-headroom-proxy'")
holders = [h.get("pid") for h in p.get("holders") or []]
if pid != "-" and int(pid) not in holders: errs.append(f"proxy pid {pid} not among holders {holders}")
if errs:
    print("; ".join(errs) + f" — message: {p.get('message')!r}"); sys.exit(1)
def step(s):
    what = " ".join(str(s[k]) for k in ("pid", "signal") if s.get(k) is not None)
    return f"{s['event']}{' ' + what if what else ''} @{s['at_ms']} ms"
steps = ", ".join(step(s) for s in p.get("steps") or [])
print(f"rule {p.get('rule')}, action {p.get('action')}, holders {holders}"
      + (f"; steps: {steps}" if steps else "") + f" — {p.get('message')}")
EOF
}

# ---------------------------------------------------------------- 1. install
t0=$(now_ms)
venv_ok() {
  [[ -x $VENV/bin/python && -f $VENV/.portguard-e2e && "$(cat "$VENV/.portguard-e2e")" == "$STAMP" ]] &&
    "$VENV/bin/python" -c 'import headroom.cli, headroom.proxy.server' >/dev/null 2>&1
}
mkdir -p "$CACHE" || fail install "cannot create cache dir $CACHE"
exec 9>"$CACHE/.lock"
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
  VPIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
  if ! timeout 600 "${VPIP[@]}" install -q --no-deps "$HEADROOM_SPEC" >"$WORK/pip-headroom.log" 2>&1; then
    reason="pip install $HEADROOM_SPEC failed"
    grep -qiE 'No matching distribution|Could not find a version' "$WORK/pip-headroom.log" &&
      reason="$HEADROOM_SPEC is not available from the package index (not on PyPI, or no wheel for this platform/Python)"
    rm -rf "$VENV"
    fail install "$reason: $(grep -v '^\s*$' "$WORK/pip-headroom.log" | tail -n 1 | cut -c1-300)"
  fi
  if ! timeout 900 "${VPIP[@]}" install -q "${DEPS[@]}" >"$WORK/pip-deps.log" 2>&1; then
    rm -rf "$VENV"
    fail install "pip install of headroom's runtime dependencies failed: $(tail -n 2 "$WORK/pip-deps.log" | tr '\n' ' ')"
  fi
  if ! "$VENV/bin/python" -c 'import headroom.cli, headroom.proxy.server' >"$WORK/import.log" 2>&1; then
    rm -rf "$VENV"
    fail install "headroom installed but does not import: $(tail -n 2 "$WORK/import.log")"
  fi
  echo "$STAMP" >"$VENV/.portguard-e2e"
  pass install "$HEADROOM_SPEC + deps into $VENV ($(du -sh "$VENV" 2>/dev/null | cut -f1), $(secs "$t0" "$(now_ms)"))"
fi
flock -u 9 2>/dev/null; exec 9>&-
rm -f "$WORK"/pip-*.log "$WORK"/venv.log "$WORK"/import.log

# ---------------------------------------------------------------- 2. build
t0=$(now_ms)
if [[ -n ${PORTGUARD_BIN:-} ]]; then
  PG=$PORTGUARD_BIN
  [[ -x $PG ]] || fail build "PORTGUARD_BIN=$PG is not executable"
  pass build "using PORTGUARD_BIN=$PG"
else
  cargo build --release --locked --quiet >"$WORK/cargo.log" 2>&1 ||
    fail build "cargo build --release failed: $(grep -m1 -E '^error' "$WORK/cargo.log")"
  PG=${CARGO_TARGET_DIR:-$ROOT/target}/release/portguard
  [[ $PG == /* ]] || PG=$ROOT/$PG
  [[ -x $PG ]] || fail build "no binary at $PG"
  rm -f "$WORK/cargo.log"
  pass build "$PG ($(secs "$t0" "$(now_ms)"))"
fi

# ---------------------------------------------------------------- 3. start
PORT=
for i in $(seq 0 $((PORT_HI - PORT_LO))); do       # start at a pid-dependent offset
  p=$(( PORT_LO + ($$ + i) % (PORT_HI - PORT_LO + 1) ))
  if bindable "$p"; then PORT=$p; break; fi
done
[[ -n $PORT ]] || fail start "no free port in $PORT_LO-$PORT_HI on 127.0.0.1"

PROXY_CMD=("$VENV/bin/python" -m headroom.cli proxy --host 127.0.0.1 --port "$PORT" --workers 1
           --anthropic-api-url http://127.0.0.1:9 --openai-api-url http://127.0.0.1:9 --no-telemetry)

t0=$(now_ms)
PROXY=$(start_detached "$PORT" "$WORK/proxy-1.log") || fail start "could not launch the proxy"
track "$PROXY" || fail start "proxy pid $PROXY died at once"
wait_livez "$PROXY" "$PORT" "$WORK/proxy-1.log" || fail start "proxy pid $PROXY never answered /livez"
pass start "proxy pid $PROXY answers /livez on 127.0.0.1:$PORT ($(secs "$t0" "$(now_ms)"))"
describe "$PROXY" "$PORT"

# ---------------------------------------------------------------- 4a. explain
t0=$(now_ms)
portguard explain resolve "$PORT" --policy headroom --explain --format json
t1=$(now_ms)
[[ $PG_RC == 0 ]] || fail explain "exit $PG_RC (want 0): $(head -c 300 "$WORK/explain.err")"
summary=$(check_json "$WORK/explain.json" freed true "$PROXY") || fail explain "$summary"
alive "$PROXY" || fail explain "the proxy pid $PROXY is gone after --explain"
livez "$PORT" || fail explain "the proxy no longer answers /livez after --explain"
pass explain "exit 0, dry run plans: $summary ($(secs "$t0" "$t1")); proxy still up"

# ---------------------------------------------------------------- 4b. resolve
t0=$(now_ms)
portguard resolve resolve "$PORT" --policy headroom --format json
t1=$(now_ms)
[[ $PG_RC == 0 ]] || fail resolve "exit $PG_RC (want 0): $(head -c 300 "$WORK/resolve.err") $(head -c 300 "$WORK/resolve.json")"
summary=$(check_json "$WORK/resolve.json" freed false "$PROXY") || fail resolve "$summary"
bindable "$PORT" || fail resolve "portguard said freed but 127.0.0.1:$PORT is not bindable"
wait_gone "$PROXY" 2 || fail resolve "portguard said freed but proxy pid $PROXY is still running 2 s later"
t2=$(now_ms)
free_ms=$("$PY" -c 'import json, sys
print(next((s["at_ms"] for s in json.load(open(sys.argv[1]))["ports"][0]["steps"] if s["event"] == "free"), "?"))' "$WORK/resolve.json")
pass resolve "exit 0 in $(secs "$t0" "$t1"): $summary; pid $PROXY gone, port bindable"
info "time to free (at_ms of the 'free' step): $free_ms ms (SPEC: the idle proxy exits within ~400 ms of SIGTERM);" \
  "the process itself was gone $((t2 - t1)) ms after portguard returned"

# ---------------------------------------------------------------- 4c. snippet
REUSE_POLICY=$ROOT/rules/headroom-reuse.toml
if [[ -f $REUSE_POLICY ]]; then POLICY=$REUSE_POLICY; MODE=reuse; else POLICY=headroom; MODE=replace; fi
info "prestart path: $MODE (policy $POLICY$([[ $MODE == replace ]] && echo '; rules/headroom-reuse.toml not shipped yet'))"
SNIPPET=("$PY" "$ROOT/examples/headroom_prestart.py" "$PG" "$PORT" "$POLICY")

# First call, port free: exit 0 -> start. It stays the proxy's parent, like wrap.
t0=$(now_ms)
PROXY_LOG=$WORK/proxy-2.log PRESTART_STAY=1 env "${PROXY_UNSET[@]}" "${PROXY_ENV[@]}" \
  "${SNIPPET[@]}" "${PROXY_CMD[@]}" >"$WORK/prestart-1.out" 2>&1 &
WRAP=$!
track "$WRAP"
for _ in $(seq 300); do                    # up to 30 s for the "start:" line
  grep -q '^start: ' "$WORK/prestart-1.out" && break
  alive "$WRAP" || break
  sleep 0.1
done
PROXY2=$(sed -n 's/^start: .*started proxy pid \([0-9]*\).*/\1/p' "$WORK/prestart-1.out")
[[ -n $PROXY2 ]] || fail prestart-start "no 'start:' line from the snippet: $(head -c 300 "$WORK/prestart-1.out")"
track "$PROXY2"
wait_livez "$PROXY2" "$PORT" "$WORK/proxy-2.log" || fail prestart-start "fresh proxy pid $PROXY2 never answered /livez"
pass prestart-start "snippet exit-0 path started proxy pid $PROXY2 (parent: pid $WRAP), /livez OK ($(secs "$t0" "$(now_ms)"))"

# Second call, against the running fresh proxy.
t0=$(now_ms)
rc=0
PROXY_LOG=$WORK/proxy-3.log env "${PROXY_UNSET[@]}" "${PROXY_ENV[@]}" \
  timeout 120 "${SNIPPET[@]}" "${PROXY_CMD[@]}" >"$WORK/prestart-2.out" 2>&1 || rc=$?
t1=$(now_ms)
out=$(tr '\n' ' ' <"$WORK/prestart-2.out")
if [[ $MODE == reuse ]]; then
  [[ $rc == 3 ]] || fail prestart-reuse "exit $rc (want 3): $out"
  grep -q "^reuse: proxy pid $PROXY2 " "$WORK/prestart-2.out" || fail prestart-reuse "does not name pid $PROXY2: $out"
  alive "$PROXY2" && livez "$PORT" || fail prestart-reuse "the reused proxy pid $PROXY2 is not serving any more"
  pass prestart-reuse "exit 3 in $(secs "$t0" "$t1"): $out"

  # The wrapper dies (terminal closed): the proxy is orphaned, and is replaced.
  kill -TERM "$WRAP"; wait "$WRAP" 2>/dev/null
  t0=$(now_ms)
  rc=0
  PROXY_LOG=$WORK/proxy-3.log env "${PROXY_UNSET[@]}" "${PROXY_ENV[@]}" \
    timeout 120 "${SNIPPET[@]}" "${PROXY_CMD[@]}" >"$WORK/prestart-3.out" 2>&1 || rc=$?
  t1=$(now_ms)
  out=$(tr '\n' ' ' <"$WORK/prestart-3.out")
  [[ $rc == 0 ]] || fail prestart-orphan "orphaned proxy: exit $rc (want 0): $out"
  step=orphan-replace
else
  [[ $rc == 0 ]] || fail prestart-replace "exit $rc (want 0): $out"
  step=prestart-replace
fi
PROXY3=$(sed -n 's/^start: .*started proxy pid \([0-9]*\).*/\1/p' "$WORK/prestart-$([[ $MODE == reuse ]] && echo 3 || echo 2).out")
[[ -n $PROXY3 ]] || fail $step "no 'start:' line: $out"
track "$PROXY3"
wait_gone "$PROXY2" 1 || fail $step "old proxy pid $PROXY2 is still running"
wait_livez "$PROXY3" "$PORT" "$WORK/proxy-3.log" || fail $step "new proxy pid $PROXY3 never answered /livez"
pass $step "exit 0 in $(secs "$t0" "$t1"): old proxy pid $PROXY2 terminated, new proxy pid $PROXY3 answers /livez ($(secs "$t0" "$(now_ms)"))"
wait "$WRAP" 2>/dev/null                    # the first snippet returns with its proxy

# ---------------------------------------------------------------- 4d. cleanup
t0=$(now_ms)
portguard final resolve "$PORT" --policy headroom --format json
[[ $PG_RC == 0 ]] || fail cleanup "portguard resolve of the last proxy: exit $PG_RC: $(head -c 300 "$WORK/final.err")"
wait_gone "$PROXY3" 1 || fail cleanup "proxy pid $PROXY3 still running after portguard freed the port"
left=()
for pid in "${!STARTED[@]}"; do alive "$pid" && left+=("$pid"); done
((${#left[@]} == 0)) || fail cleanup "still running: pid(s) ${left[*]}"
bindable "$PORT" || fail cleanup "127.0.0.1:$PORT is not bindable"
pass cleanup "every process started is gone (${#STARTED[@]} tracked), port $PORT free ($(secs "$t0" "$(now_ms)"))"
echo "PASS e2e-headroom          portguard vs the real headroom proxy ($HEADROOM_SPEC)"
