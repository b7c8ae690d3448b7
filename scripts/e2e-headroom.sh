#!/usr/bin/env bash
# End to end: portguard against the REAL headroom proxy (issue 4, item 8;
# issue 9 for the lifecycle steps).
#
#   bash scripts/e2e-headroom.sh        # run by .ci/run
#
# 1. installs headroom-ai into a venv cached outside the checkout
#    ($PORTGUARD_E2E_CACHE, default ~/.cache/portguard-e2e/venv; reused when it
#    imports, re-created otherwise; shared with scripts/e2e-wrap.sh through
#    scripts/lib/headroom-e2e.sh), 2. builds portguard (cargo build --release),
# 3. starts the proxy detached (own session, parent exits, no client marker:
#    a stale proxy) on a free port of 18787-18887 on 127.0.0.1, and proves:
#    a. --explain plans terminate and leaves it running,
#    b. resolve frees the port (exit 0) and the proxy exits,
#    c. a proxy with a client marker naming a live pid (written exactly as
#       `headroom wrap` writes it) is in use: `headroom` and `headroom-reuse`
#       reuse it (exit 3) and it keeps serving,
#    d. once that client is gone (its marker names a dead pid) the proxy is
#       stale again: `headroom` terminates it, and the marker is left alone,
#    e. nothing is left behind.
# Step c needs the live-clients criterion (issue 9). A binary without it (its
# policy schema does not mention clients) terminates any proxy of yours; then
# step c only checks that --explain plans exactly that, and says so.
# One PASS/FAIL line per step; exit 1 on the first failure. Every process the
# script starts is tracked by pid + start time and killed on EXIT; nothing
# else is ever signalled. Nothing leaves the machine: upstream URLs point at
# 127.0.0.1:9, HEADROOM_OFFLINE/HF_HUB_OFFLINE are set, telemetry is off.
#
# Env: PORTGUARD_E2E_CACHE (cache dir), PORTGUARD_BIN (use this binary instead
# of building), PYTHON (interpreter for the venv, default python3).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}           # the machine's python: venv base and helpers
WORK=$(mktemp -d "${TMPDIR:-/tmp}/portguard-e2e.XXXXXX")
# shellcheck source=scripts/lib/headroom-e2e.sh
source scripts/lib/headroom-e2e.sh
PORT_LO=18787 PORT_HI=18887
LIVEZ_TIMEOUT=${PORTGUARD_E2E_LIVEZ_TIMEOUT:-60}

# Everything the proxy gets: no network beyond 127.0.0.1, state in $WORK.
PROXY_ENV=(HEADROOM_OFFLINE=1 HEADROOM_SKIP_UPSTREAM_CHECK=1 HEADROOM_TELEMETRY=off
           ORT_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
           DO_NOT_TRACK=1 PYTHONSAFEPATH=1 PYTHONIOENCODING=utf-8
           HEADROOM_WORKSPACE_DIR="$WORK/headroom-home")
# Variables that would change what the proxy binds or how it forks.
PROXY_UNSET=(-u HEADROOM_PORT -u HEADROOM_HOST -u HEADROOM_WORKERS
             -u HEADROOM_PROXY_CONFIG_JSON -u HEADROOM_WRAP_OWNED)

# ---------------------------------------------------------------- helpers ---
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
  # the caller's environment says where client markers are: the proxy's workspace
  timeout 60 env HEADROOM_WORKSPACE_DIR="$WORK/headroom-home" "$PG" "$@" \
    >"$WORK/$name.json" 2>"$WORK/$name.err" || PG_RC=$?
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
install_headroom_venv

# ---------------------------------------------------------------- 2. build
find_portguard

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
info "time to free (at_ms of the 'free' step): $free_ms ms (docs/headroom.md: the idle proxy exits within ~400 ms of SIGTERM);" \
  "the process itself was gone $((t2 - t1)) ms after portguard returned"

# ---------------------------------------------------------------- 4c. in use
# A second detached proxy, and a client marker for a live pid (a sleep this
# script starts), written as `headroom wrap` writes its own: orphaned, but in use.
if "$PG" schema | grep -qi client; then LIFECYCLE=clients; else LIFECYCLE=legacy; fi
t0=$(now_ms)
PROXY2=$(start_detached "$PORT" "$WORK/proxy-2.log") || fail in-use "could not launch the second proxy"
track "$PROXY2" || fail in-use "proxy pid $PROXY2 died at once"
wait_livez "$PROXY2" "$PORT" "$WORK/proxy-2.log" || fail in-use "proxy pid $PROXY2 never answered /livez"
sleep 600 >/dev/null 2>&1 &
CLIENT=$!
track "$CLIENT"
MARKER=$WORK/headroom-home/clients/$PORT/$CLIENT.json
mkdir -p "$(dirname "$MARKER")"
"$PY" - "$CLIENT" "$MARKER" <<'EOF' || fail in-use "could not write the client marker"
import json, os, sys, time
pid, path = int(sys.argv[1]), sys.argv[2]
with open(f"/proc/{pid}/stat", "rb") as f:          # headroom._subprocess.proc_identity
    start = float(f.read().rpartition(b")")[2].split()[19])
with open(path, "w") as f:
    json.dump({"pid": pid, "started_at": time.time(), "cwd": os.getcwd(),
               "start_src": "proc", "start_time": start}, f)
EOF
pass start-2 "proxy pid $PROXY2 (parent pid $(cut -d' ' -f4 "/proc/$PROXY2/stat")) answers /livez; marker $(basename "$MARKER") names live pid $CLIENT ($(secs "$t0" "$(now_ms)"))"

if [[ $LIFECYCLE == clients ]]; then
  for policy in headroom headroom-reuse; do
    t0=$(now_ms)
    portguard "explain-$policy" resolve "$PORT" --policy "$policy" --explain --format json
    [[ $PG_RC == 3 ]] || fail "in-use $policy" "--explain: exit $PG_RC (want 3, reuse): $(head -c 300 "$WORK/explain-$policy.json")"
    summary=$(check_json "$WORK/explain-$policy.json" reuse true "$PROXY2") || fail "in-use $policy" "$summary"
    pass "in-use $policy" "--explain exit 3 ($(secs "$t0" "$(now_ms)")): $summary"
  done
  t0=$(now_ms)
  portguard reuse resolve "$PORT" --policy headroom --format json
  t1=$(now_ms)
  [[ $PG_RC == 3 ]] || fail in-use "resolve: exit $PG_RC (want 3): $(head -c 300 "$WORK/reuse.json")"
  summary=$(check_json "$WORK/reuse.json" reuse false "$PROXY2") || fail in-use "$summary"
  { alive "$PROXY2" && livez "$PORT"; } || fail in-use "the reused proxy pid $PROXY2 is not serving any more"
  pass in-use "resolve exit 3 in $(secs "$t0" "$t1"), proxy pid $PROXY2 untouched and serving: $summary"
else
  portguard explain-legacy resolve "$PORT" --policy headroom --explain --format json
  [[ $PG_RC == 0 ]] || fail in-use "--explain: exit $PG_RC (this binary's headroom policy terminates any proxy of yours)"
  summary=$(check_json "$WORK/explain-legacy.json" freed true "$PROXY2") || fail in-use "$summary"
  printf 'SKIP %-22s %s\n' in-use "this portguard has no live-clients criterion; it plans: $summary"
fi

# ---------------------------------------------------------------- 4d. stale
# The client dies without removing its marker: the proxy is stale again.
kill -KILL "$CLIENT"; wait "$CLIENT" 2>/dev/null
t0=$(now_ms)
portguard stale resolve "$PORT" --policy headroom --format json
t1=$(now_ms)
[[ $PG_RC == 0 ]] || fail stale "exit $PG_RC (want 0): $(head -c 300 "$WORK/stale.err") $(head -c 300 "$WORK/stale.json")"
summary=$(check_json "$WORK/stale.json" freed false "$PROXY2") || fail stale "$summary"
wait_gone "$PROXY2" 2 || fail stale "portguard said freed but proxy pid $PROXY2 is still running 2 s later"
[[ -f $MARKER ]] || fail stale "the client marker was deleted (portguard only reads markers)"
pass stale "client pid $CLIENT dead, its marker left in place: exit 0 in $(secs "$t0" "$t1"): $summary"

# ---------------------------------------------------------------- 4e. cleanup
t0=$(now_ms)
portguard final resolve "$PORT" --policy headroom --format json
[[ $PG_RC == 0 ]] || fail cleanup "portguard resolve of the free port: exit $PG_RC: $(head -c 300 "$WORK/final.err")"
left=()
for pid in "${!STARTED[@]}"; do alive "$pid" && left+=("$pid"); done
((${#left[@]} == 0)) || fail cleanup "still running: pid(s) ${left[*]}"
bindable "$PORT" || fail cleanup "127.0.0.1:$PORT is not bindable"
pass cleanup "every process started is gone (${#STARTED[@]} tracked), port $PORT free ($(secs "$t0" "$(now_ms)"))"
echo "PASS e2e-headroom          portguard vs the real headroom proxy ($HEADROOM_SPEC)"
