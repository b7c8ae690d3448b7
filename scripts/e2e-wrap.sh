#!/usr/bin/env bash
# End to end: the REAL `headroom wrap` of headroom-ai 0.42.0 with the portguard
# pre-start hook of integrations/headroom/ applied (issue 9).
#
#   PORTGUARD_BIN=target/debug/portguard bash scripts/e2e-wrap.sh   # run by .ci/run
#   bash scripts/e2e-wrap.sh --stock    # the same scenarios against stock wrap
#
# Set-up: the pinned venv of scripts/e2e-headroom.sh (shared installer,
# scripts/lib/headroom-e2e.sh; its cache path is fixed before HOME changes), a
# copy of the venv's `headroom` package with the patch applied (on PYTHONPATH;
# the cached venv stays pristine), a temporary HOME, a clean offline
# environment (env -i), and a stand-in agent: an executable `aider` on PATH that
# records its pid and runs until told to stop. Every wrap is the same command,
# `headroom wrap aider --port N`, with the same environment, so wrap's own
# routing-mismatch logic never restarts a proxy by itself.
#
# Scenarios, chained on one port X (each one's end state is the next one's
# start state; a scenario whose start state is missing, e.g. after a failure,
# rebuilds it) plus a port Y for the foreign listener:
#   1 wrap and its agent are SIGKILLed -> the next wrap replaces the stale proxy on X
#   2 two live sessions share a proxy, the first exits -> a third wrap reuses it,
#     and it is never signalled
#   4 a stopped (SIGSTOP) proxy with live clients -> terminated after the health
#     timeout, new proxy on X
#   3 a stopped proxy without live clients -> freed in under 1 s (SIGCONT after
#     SIGTERM), new proxy on X
#   6 only TIME_WAIT left by the previous proxy -> the new proxy starts on X
#   5 a foreign listener (python3 -m http.server) on Y -> wrap fails fast with
#     portguard's message, the listener is untouched
#   7 HEADROOM_PORTGUARD unset -> the same listener makes wrap hop to Y+1, as stock
# One PASS/FAIL line per scenario with its times; exit 1 when any failed. With
# --stock, the same steps run against unpatched wrap without portguard, and each
# scenario prints what stock 0.42.0 did (STOCK lines), asserting nothing.
#
# Only processes this script started are ever signalled: the wraps, their
# agents and the proxies they launched, and the foreign listener, each tracked
# by pid + start time and stopped on EXIT. Nothing leaves the machine: upstream
# URLs point at 127.0.0.1:9, HEADROOM_OFFLINE/HF_HUB_OFFLINE are set, telemetry
# and the update check are off.
#
# Env: PORTGUARD_BIN (binary to test; otherwise cargo build --release),
# PORTGUARD_E2E_CACHE (venv cache dir), PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
MODE=patched
case ${1:-} in
  --stock) MODE=stock ;;
  "") ;;
  *) echo "usage: $0 [--stock]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/portguard-wrap.XXXXXX")
# shellcheck source=scripts/lib/headroom-e2e.sh
source scripts/lib/headroom-e2e.sh      # before HOME changes: the venv's cache path
PATCH=$ROOT/integrations/headroom/headroom-0.42.0-portguard.patch
READY_TIMEOUT=${PORTGUARD_E2E_READY_TIMEOUT:-120}   # wrap start -> agent running

declare -A WRAP=() AGENT=() T_START=() READY_MS=()
FAILED=()
SUMMARY=()

cleanup() {
  local rc=$? pid left=()
  trap - EXIT INT TERM
  for pid in "${!STARTED[@]}"; do
    alive "$pid" || continue
    kill -TERM "$pid" 2>/dev/null
    kill -CONT "$pid" 2>/dev/null     # a stopped proxy must be able to exit
    left+=("$pid")
  done
  if ((${#left[@]})); then
    for _ in $(seq 50); do      # up to 5 s for SIGTERM, then SIGKILL
      local any=0
      for pid in "${left[@]}"; do alive "$pid" && any=1; done
      ((any)) || break
      sleep 0.1
    done
    for pid in "${left[@]}"; do alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
  fi
  wait 2>/dev/null              # reap our own background children
  if ((rc != 0)) && ((STEP_FAILED == 0)) && ((${#FAILED[@]} == 0)); then
    echo "FAIL e2e-wrap              interrupted or unexpected error (exit $rc)"
  fi
  if ((rc != 0)) && ((${#FAILED[@]} == 0)); then   # unexpected: show the last wrap's output
    local last
    # shellcheck disable=SC2012  # our own file names
    last=$(ls -t "$WORK"/*.out 2>/dev/null | head -n 1)
    [[ -n $last ]] && { echo "---- last lines of $(basename "$last") ----" >&2; tail -n 15 "$last" | cut -c1-300 >&2; }
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# /proc helpers: who listens on a port, a process's state, TIME_WAIT checks.
cat >"$WORK/proc.py" <<'EOF'
import errno, os, socket, sys

def inodes(port, states):
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] in states:
                found.add(f[9])
    return found

cmd, arg = sys.argv[1], int(sys.argv[2])
if cmd == "listeners":          # pids with a LISTEN socket on the port
    want = {f"socket:[{i}]" for i in inodes(arg, {"0A"})}
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in want:
                    pids.add(int(pid))
                    break
            except OSError:
                pass
    print(" ".join(map(str, sorted(pids))))
elif cmd == "state":            # state letter and ppid
    try:
        rest = open(f"/proc/{arg}/stat").read().rsplit(")", 1)[1].split()
        print(rest[0], rest[1])
    except OSError:
        print("- -")
elif cmd == "timewait":         # exit 0 when only TIME_WAIT blocks the port
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in open(table).read().splitlines()[1:]:
                f = line.split()
                if int(f[1].rsplit(":", 1)[1], 16) == arg and f[3] == "06":
                    count += 1
        except OSError:
            pass
    def bind(reuse):
        s = socket.socket()
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", arg))
            return "ok"
        except OSError as e:
            return errno.errorcode.get(e.errno, str(e.errno))
        finally:
            s.close()
    plain, reuse = bind(False), bind(True)
    print(f"{count} TIME_WAIT socket(s) on port {arg}; bind without SO_REUSEADDR: {plain}"
          f" (what wrap's probe does), with SO_REUSEADDR: {reuse}")
    sys.exit(0 if count and plain == "EADDRINUSE" and reuse == "ok" else 1)
elif cmd == "close-first":      # GETs whose server closes first: server-side TIME_WAIT
    import urllib.request
    for _ in range(5):
        with urllib.request.urlopen(f"http://127.0.0.1:{arg}/livez", timeout=5) as r:
            r.read()
EOF
proc() { "$PY" "$WORK/proc.py" "$@"; }
listener() { local p; p=$(proc listeners "$1"); echo "${p%% *}"; }   # first pid, or empty
pstate() { local s; s=$(proc state "$1"); echo "${s%% *}"; }
ppid_of() { local s; s=$(proc state "$1"); echo "${s##* }"; }

# ------------------------------------------------------------------ set-up ---
install_headroom_venv
if [[ $MODE == patched ]]; then
  find_portguard
  t0=$(now_ms)
  site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  [[ -d $site/headroom ]] || fail patch "no headroom package under $VENV/lib"
  mkdir -p "$WORK/site"
  cp -a "$site/headroom" "$WORK/site/" || fail patch "cannot copy $site/headroom"
  rm -f "$WORK"/site/headroom/cli/__pycache__/wrap.*.pyc
  patch -p1 -s -d "$WORK/site" <"$PATCH" >"$WORK/patch.log" 2>&1 ||
    fail patch "$(basename "$PATCH") does not apply to $HEADROOM_SPEC: $(head -c 300 "$WORK/patch.log")"
  pass patch "$(basename "$PATCH") applied to a copy of $site/headroom ($(secs "$t0" "$(now_ms)"))"
  # Every branch of the hook (fallbacks included) against a fake portguard.
  t0=$(now_ms)
  env PYTHONPATH="$WORK/site" "$VENV/bin/python" integrations/headroom/test_portguard_hook.py \
    >"$WORK/hook.log" 2>&1 ||
    fail hook "integrations/headroom/test_portguard_hook.py: $(grep -E '^(FAIL|ERROR):|Error' "$WORK/hook.log" | head -n 3 | tr '\n' ' ')"
  pass hook "$(grep -m1 '^Ran ' "$WORK/hook.log") against a fake portguard: every outcome of the hook ($(secs "$t0" "$(now_ms)"))"
fi

mkdir -p "$WORK/home" "$WORK/bin" "$WORK/agents" "$WORK/project"
cat >"$WORK/bin/aider" <<'EOF'
#!/bin/sh
# stand-in agent: records its pid, runs until $AGENT_DIR/$AGENT_ID.stop exists
echo $$ >"$AGENT_DIR/$AGENT_ID.pid"
while [ ! -e "$AGENT_DIR/$AGENT_ID.stop" ]; do sleep 0.2; done
exit 0
EOF
chmod +x "$WORK/bin/aider"

# The whole environment of every wrap (env -i): offline, upstreams on a closed
# local port, state under the temporary HOME, no port discovery.
BASE_ENV=(HOME="$WORK/home" PATH="$WORK/bin:/usr/local/bin:/usr/bin:/bin" LANG=C.UTF-8
          AGENT_DIR="$WORK/agents"
          HEADROOM_OFFLINE=1 HEADROOM_SKIP_UPSTREAM_CHECK=1 HEADROOM_TELEMETRY=off
          HEADROOM_UPDATE_CHECK=off HEADROOM_PORT_DISCOVERY=0 HF_HUB_OFFLINE=1
          TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 ORT_DISABLE_TELEMETRY=1
          OPENAI_TARGET_API_URL=http://127.0.0.1:9 ANTHROPIC_TARGET_API_URL=http://127.0.0.1:9)
if [[ $MODE == patched ]]; then
  WRAP_ENV=("${BASE_ENV[@]}" PYTHONPATH="$WORK/site" HEADROOM_PORTGUARD="$PG")
  UNSET_ENV=("${BASE_ENV[@]}" PYTHONPATH="$WORK/site")     # scenario 7: hook off
else
  WRAP_ENV=("${BASE_ENV[@]}")
  UNSET_ENV=("${BASE_ENV[@]}")
fi

# Ports: X..X+2 for the chain (stock hops), Y..Y+1 for the foreign listener.
free_run() {   # a random port P with P..P+$1-1 all bindable, in 20000-29999
  local p i ok
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 9990)) ok=1
    for ((i = 0; i < $1; i++)); do bindable $((p + i)) || { ok=0; break; }; done
    ((ok)) && { echo "$p"; return 0; }
  done
  return 1
}
X=$(free_run 3) || fail ports "no 3 consecutive free ports"
Y=$(free_run 2) || fail ports "no 2 consecutive free ports"
while ((Y <= X + 2 && Y + 1 >= X)); do Y=$(free_run 2) || fail ports "no free ports"; done
info "mode $MODE; chain port X=$X, foreign-listener port Y=$Y; HOME=$WORK/home"

# ---------------------------------------------------------------- sessions ---
# session ID PORT [ENVVAR...]: `headroom wrap aider --port PORT` in the background
session_start() {
  local id=$1 port=$2; shift 2
  local env=("${WRAP_ENV[@]}")
  (($#)) && env=("$@")
  (cd "$WORK/project" && exec env -i "${env[@]}" AGENT_ID="$id" \
     "$VENV/bin/headroom" wrap aider --port "$port") >"$WORK/$id.out" 2>&1 </dev/null &
  WRAP[$id]=$!
  T_START[$id]=$(now_ms)
  track "$!"
}
# wait until the session's agent runs (0) or its wrap exits (1); READY_MS[id]
session_ready() {
  local id=$1 deadline=$(( $(now_ms) + READY_TIMEOUT * 1000 )) apid
  while (( $(now_ms) < deadline )); do
    if [[ -s $WORK/agents/$id.pid ]]; then
      READY_MS[$id]=$(( $(now_ms) - T_START[$id] ))
      apid=$(cat "$WORK/agents/$id.pid"); AGENT[$id]=$apid; track "$apid"
      return 0
    fi
    alive "${WRAP[$id]}" || { READY_MS[$id]=$(( $(now_ms) - T_START[$id] )); return 1; }
    sleep 0.1
  done
  READY_MS[$id]=$(( $(now_ms) - T_START[$id] ))
  return 1
}
# the agent exits normally, and so does its wrap (which removes its marker)
session_end() {
  local id=$1 deadline
  [[ -n ${WRAP[$id]:-} ]] || return 0
  touch "$WORK/agents/$id.stop"
  deadline=$(( $(now_ms) + 20000 ))
  while alive "${WRAP[$id]}" && (( $(now_ms) < deadline )); do sleep 0.1; done
  alive "${WRAP[$id]}" && return 1
  wait "${WRAP[$id]}" 2>/dev/null
  unset "WRAP[$id]"
}
# wrap and agent die without cleanup (terminal killed)
session_kill() {
  local id=$1
  kill -KILL "${WRAP[$id]}" "${AGENT[$id]:-}" 2>/dev/null
  wait "${WRAP[$id]}" 2>/dev/null
  unset "WRAP[$id]"
}
live_sessions() { local id; for id in "${!WRAP[@]}"; do alive "${WRAP[$id]}" && echo "$id"; done; }
end_all_sessions() { local id; for id in $(live_sessions); do session_end "$id"; done; }
# wait until PID is gone (bounded, seconds)
wait_gone() {
  local pid=$1 deadline=$(( $(now_ms) + $2 * 1000 ))
  while alive "$pid"; do (( $(now_ms) < deadline )) || return 1; sleep 0.05; done
}
# stop a proxy this script's wraps started (SIGTERM, SIGCONT in case it is stopped)
stop_proxy() {
  [[ -n ${STARTED[$1]:-} ]] || return 1
  kill -TERM "$1" 2>/dev/null; kill -CONT "$1" 2>/dev/null
  wait_gone "$1" 10 || { kill -KILL "$1" 2>/dev/null; wait_gone "$1" 2; }
}
# stop every tracked proxy that listens on PORT
clear_port() { local pid; for pid in $(proc listeners "$1"); do stop_proxy "$pid"; done; }

# What a wrap did, from its output: "reused", "started", "hopped", "failed".
outcome_of() {
  local out=$WORK/$1.out
  if grep -q 'Proxy already running' "$out"; then echo reused
  elif grep -q 'using port [0-9]* instead' "$out"; then echo hopped
  elif grep -q 'Proxy ready' "$out"; then echo started
  else echo failed; fi
}
port_of() {   # the port the session's agent was pointed at
  sed -n 's/.*dashboard: http:\/\/127\.0\.0\.1:\([0-9]*\)\/dashboard.*/\1/p' "$WORK/$1.out" | tail -n 1
}
pg_line() { sed -n 's/^  portguard: //p' "$WORK/$1.out" | head -n 1 | cut -c1-200; }
pg_ms() { pg_line "$1" | sed -n 's/^freed port [0-9]* in \([0-9]*\) ms.*/\1/p'; }
ms() { printf '%d.%01d s' $(($1 / 1000)) $(($1 % 1000 / 100)); }

# Record a scenario: patched mode asserts (PASS/FAIL), stock mode observes.
scenario_result() {   # NUM TITLE T0 ERRORS DETAIL
  local num=$1 title=$2 t0=$3 errs=$4 detail=$5 total
  total=$(ms $(( $(now_ms) - t0 )))
  if [[ $MODE == stock ]]; then
    [[ -n $errs ]] && detail+="${detail:+; }not as the patched wrap: $errs"
    printf 'STOCK %s %-34s %s (scenario %s)\n' "$num" "$title" "$detail" "$total"
    SUMMARY+=("$num|$title|$detail|$total")
  elif [[ -z $errs ]]; then
    printf 'PASS %s %-35s %s (scenario %s)\n' "$num" "$title" "$detail" "$total"
    SUMMARY+=("$num|$title|PASS: $detail|$total")
  else
    printf 'FAIL %s %-35s %s; %s (scenario %s)\n' "$num" "$title" "$errs" "$detail" "$total"
    FAILED+=("$num")
    SUMMARY+=("$num|$title|FAIL: $errs|$total")
  fi
}
# describe what a wrap did with the proxy OLD on port PORT
describe() {   # ID PORT OLD
  local id=$1 port=$2 old=$3 what now
  what=$(outcome_of "$id")
  now=$(listener "$(port_of "$id")" 2>/dev/null)
  case $what in
    reused) printf 'reused proxy pid %s on port %s' "$now" "$(port_of "$id")" ;;
    started) printf 'started proxy pid %s on port %s' "$now" "$(port_of "$id")" ;;
    hopped) printf 'hopped to port %s (proxy pid %s)' "$(port_of "$id")" "$now" ;;
    *) printf 'exited without a proxy: %s' "$(grep -m1 -E 'Error' "$WORK/$id.out" | sed 's/^ *//' | cut -c1-160)" ;;
  esac
  [[ -n $old ]] || return 0
  if alive "$old"; then printf '; old proxy pid %s still there (state %s)' "$old" "$(pstate "$old")"
  else printf '; old proxy pid %s gone' "$old"; fi
}
# start a session on X and wait for it (rebuilding a scenario's start state)
seed() {
  session_start "$1" "$X" && session_ready "$1" || return 1
  # track the proxy the wrap ended up with: stock wrap may have hopped
  local p q; q=$(port_of "$1"); p=$(listener "${q:-$X}"); [[ -n $p ]] && track "$p"
  SEED_PORT=${q:-$X}
  [[ $SEED_PORT == "$X" ]] || return 1
}

# ------------------------------------------------------------- scenario 1 ---
T_ALL=$(now_ms)
t0=$(now_ms) errs=''
if seed s1a; then
  P1=$(listener "$X"); track "$P1"
  session_kill s1a
  info "1: wrap s1a started proxy pid $P1 in $(ms "${READY_MS[s1a]}"); wrap and agent SIGKILLed: proxy's parent is now pid $(ppid_of "$P1"), its client marker names a dead pid"
  session_start s1b "$X"
  session_ready s1b || errs+="wrap s1b did not launch its agent: $(tail -n 2 "$WORK/s1b.out" | tr '\n' ' ')"
  P2=$(listener "$X"); [[ -n $P2 ]] && track "$P2"
  detail="$(describe s1b "$X" "$P1"), ready in $(ms "${READY_MS[s1b]}")"
  [[ -n $(pg_line s1b) ]] && detail+="; portguard: $(pg_line s1b)"
  if [[ -z $errs ]]; then
    [[ $(outcome_of s1b) == started && $(port_of s1b) == "$X" ]] || errs+="no new proxy on port $X; "
    wait_gone "$P1" 2 || errs+="stale proxy pid $P1 still running; "
    [[ -n $P2 && $P2 != "$P1" ]] || errs+="proxy on $X is still pid ${P2:-none}; "
  fi
else
  errs="seed session s1a did not start: $(tail -n 2 "$WORK/s1a.out" | tr '\n' ' ')"
  detail=
fi
sed -n '/^  \(portguard\|Starting Headroom\|Proxy ready\)/p' "$WORK/s1b.out" 2>/dev/null | sed 's/^/     | /'
scenario_result 1 "SIGKILLed session: stale proxy" "$t0" "${errs%; }" "$detail"

# ------------------------------------------------------------- scenario 2 ---
t0=$(now_ms) errs=''
Q=$(listener "$X")
if [[ -z $Q || $(pstate "$Q") == T || $(live_sessions | wc -l) != 1 ]]; then
  info "2: rebuilding the start state (one live session on a running proxy on $X)"
  end_all_sessions; clear_port "$X"; seed s2seed; Q=$(listener "$X")
fi
first=$(live_sessions)
if [[ -n $Q && -n $first ]]; then
  track "$Q"
  session_start s2b "$X"
  session_ready s2b || errs+="wrap s2b did not launch its agent; "
  d1=$(describe s2b "$X" "$Q")
  session_end "$first" || errs+="session $first did not exit; "
  info "2: sessions $first and s2b shared proxy pid $Q; $first exited normally (its proxy's parent: pid $(ppid_of "$Q"))"
  session_start s2c "$X"
  session_ready s2c || errs+="wrap s2c did not launch its agent; "
  detail="second wrap: $d1; third wrap: $(describe s2c "$X" "$Q"), ready in $(ms "${READY_MS[s2c]:-0}")"
  [[ -n $(pg_line s2c) ]] && detail+="; portguard: $(pg_line s2c)"
  [[ $(outcome_of s2b) == reused ]] || errs+="the second wrap did not reuse the proxy; "
  [[ $(outcome_of s2c) == reused && $(port_of s2c) == "$X" ]] || errs+="the third wrap did not reuse the proxy on $X; "
  alive "$Q" || errs+="proxy pid $Q is gone; "
  [[ $(listener "$X") == "$Q" ]] && livez "$X" || errs+="port $X is no longer served by pid $Q; "
else
  errs="could not set up a shared proxy on $X"
fi
scenario_result 2 "shared proxy, first session exits" "$t0" "${errs%; }" "${detail:-}"

# ------------------------------------------------------------- scenario 4 ---
t0=$(now_ms) errs='' detail=''
Q=$(listener "$X")
if [[ -z $Q || $(pstate "$Q") == T || -z $(live_sessions) ]]; then
  info "4: rebuilding the start state (a live session on a running proxy on $X)"
  end_all_sessions; clear_port "$X"; seed s4seed; Q=$(listener "$X")
fi
if [[ -n $Q ]]; then
  track "$Q"
  kill -STOP "$Q"
  info "4: proxy pid $Q stopped (state $(pstate "$Q")); live sessions: $(live_sessions | tr '\n' ' ')"
  session_start s4 "$X"
  session_ready s4 || errs+="wrap s4 did not launch its agent: $(grep -m1 Error "$WORK/s4.out"); "
  P=$(listener "$(port_of s4)"); [[ -n $P ]] && track "$P"
  detail="$(describe s4 "$X" "$Q"), ready in $(ms "${READY_MS[s4]}")"
  [[ -n $(pg_line s4) ]] && detail+="; portguard: $(pg_line s4)"
  [[ $(outcome_of s4) == started && $(port_of s4) == "$X" ]] || errs+="no new proxy on port $X; "
  wait_gone "$Q" 2 || errs+="stopped proxy pid $Q still there; "
else
  errs="could not set up a proxy on $X"
fi
scenario_result 4 "stopped proxy, live client" "$t0" "${errs%; }" "$detail"

# ------------------------------------------------------------- scenario 3 ---
t0=$(now_ms) errs='' detail=''
end_all_sessions
for p in $(proc listeners $((X + 1))) $(proc listeners $((X + 2))); do stop_proxy "$p"; done
Q=$(listener "$X")
if [[ -z $Q ]]; then
  info "3: rebuilding the start state (a proxy on $X without clients)"
  seed s3seed; session_end s3seed; Q=$(listener "$X")
fi
if [[ -n $Q ]]; then
  track "$Q"
  kill -STOP "$Q"
  info "3: every session exited; proxy pid $Q (parent pid $(ppid_of "$Q")) stopped (state $(pstate "$Q"))"
  session_start s3 "$X"
  session_ready s3 || errs+="wrap s3 did not launch its agent: $(grep -m1 Error "$WORK/s3.out"); "
  P=$(listener "$(port_of s3)"); [[ -n $P ]] && track "$P"
  detail="$(describe s3 "$X" "$Q"), ready in $(ms "${READY_MS[s3]}")"
  [[ -n $(pg_line s3) ]] && detail+="; portguard: $(pg_line s3)"
  [[ $(outcome_of s3) == started && $(port_of s3) == "$X" ]] || errs+="no new proxy on port $X; "
  wait_gone "$Q" 2 || errs+="stopped proxy pid $Q still there; "
  freed=$(pg_ms s3)
  [[ -n $freed ]] && ((freed < 1000)) || errs+="port not freed in under 1 s (portguard: ${freed:-?} ms); "
else
  errs="could not set up a proxy on $X"
fi
scenario_result 3 "stopped proxy, no client" "$t0" "${errs%; }" "$detail"

# ------------------------------------------------------------- scenario 6 ---
t0=$(now_ms) errs='' detail='' SEED_PORT=$X
end_all_sessions
for p in $(proc listeners $((X + 1))) $(proc listeners $((X + 2))); do stop_proxy "$p"; done
Q=$(listener "$X")
if [[ -z $Q || $(pstate "$Q") == T ]]; then   # stock leaves the stopped one of 3
  info "6: rebuilding the start state (a running proxy on $X)"
  clear_port "$X"; seed s6seed; session_end s6seed; Q=$(listener "$X")
fi
if [[ -n $Q ]]; then
  track "$Q"
  proc close-first "$X" 2>/dev/null || errs+="proxy pid $Q did not answer /livez; "
  stop_proxy "$Q" || errs+="could not stop proxy pid $Q; "
  if tw=$(proc timewait "$X"); then
    info "6: proxy pid $Q stopped after serving requests it closed first: $tw"
    session_start s6 "$X"
    session_ready s6 || errs+="wrap s6 did not launch its agent: $(grep -m1 Error "$WORK/s6.out"); "
    P=$(listener "$(port_of s6)"); [[ -n $P ]] && track "$P"
    detail="$(describe s6 "$X" ""), ready in $(ms "${READY_MS[s6]}")"
    [[ -n $(pg_line s6) ]] && detail+="; portguard: $(pg_line s6)"
    [[ $(outcome_of s6) == started && $(port_of s6) == "$X" ]] || errs+="no new proxy on port $X; "
  else
    errs+="could not leave port $X with only TIME_WAIT: $tw; "
  fi
elif [[ ${SEED_PORT:-$X} != "$X" ]]; then
  errs="could not set up a proxy on $X: the set-up wrap hopped to port $SEED_PORT (TIME_WAIT from the stopped proxy it replaced)"
else
  errs="could not set up a proxy on $X"
fi
scenario_result 6 "TIME_WAIT only" "$t0" "${errs%; }" "$detail"
end_all_sessions

# ------------------------------------------------------------- scenario 5 ---
t0=$(now_ms) errs='' detail=''
(cd "$WORK" && exec "$PY" -m http.server "$Y" --bind 127.0.0.1) >"$WORK/http.log" 2>&1 </dev/null &
HTTP=$!
track "$HTTP"
for _ in $(seq 100); do [[ $(listener "$Y") == "$HTTP" ]] && break; sleep 0.05; done
HTTP_ST=${STARTED[$HTTP]:-}
if [[ $(listener "$Y") == "$HTTP" ]]; then
  session_start s5 "$Y"
  if session_ready s5; then
    P=$(listener "$(port_of s5)"); [[ -n $P ]] && track "$P"
    detail="$(describe s5 "$Y" ""), ready in $(ms "${READY_MS[s5]}")"
    errs+="wrap ran its agent; "
  else
    wait "${WRAP[s5]}" 2>/dev/null; rc=$?; unset "WRAP[s5]"
    msg=$(grep -m1 'not available to the Headroom proxy' "$WORK/s5.out" | sed 's/^ *//')
    detail="wrap exited $rc after $(ms "${READY_MS[s5]}"): ${msg:-$(grep -m1 Error "$WORK/s5.out" | sed 's/^ *//')}"
    [[ $rc == 1 ]] || errs+="wrap exit $rc (want 1); "
    [[ $msg == *"pid $HTTP"* ]] || errs+="the error does not carry portguard's message naming pid $HTTP; "
    [[ -z $(listener $((Y + 1))) ]] || errs+="a proxy was started on $((Y + 1)); "
  fi
  alive "$HTTP" && [[ $(starttime "$HTTP") == "$HTTP_ST" && $(listener "$Y") == "$HTTP" ]] ||
    errs+="the foreign listener pid $HTTP was disturbed; "
else
  errs="python3 -m http.server did not listen on $Y"
fi
sed -n '/Error\|portguard\|Port [0-9]* is in use/p' "$WORK/s5.out" 2>/dev/null | sed 's/^/     | /'
scenario_result 5 "foreign listener" "$t0" "${errs%; }" "$detail"

# ------------------------------------------------------------- scenario 7 ---
if [[ $MODE == patched ]]; then
  t0=$(now_ms) errs='' detail=''
  session_start s7 "$Y" "${UNSET_ENV[@]}"
  session_ready s7 || errs+="wrap s7 did not launch its agent: $(grep -m1 Error "$WORK/s7.out"); "
  P=$(listener "$(port_of s7)"); [[ -n $P ]] && track "$P"
  detail="$(describe s7 "$Y" ""), ready in $(ms "${READY_MS[s7]}")"
  [[ -z $(pg_line s7) ]] || errs+="portguard ran although HEADROOM_PORTGUARD is unset; "
  grep -q "Port $Y is in use by a non-Headroom service" "$WORK/s7.out" || errs+="no stock 'non-Headroom service' line; "
  [[ $(outcome_of s7) == hopped && $(port_of s7) == $((Y + 1)) ]] || errs+="did not hop to $((Y + 1)); "
  alive "$HTTP" && [[ $(listener "$Y") == "$HTTP" ]] || errs+="the foreign listener pid $HTTP was disturbed; "
  scenario_result 7 "HEADROOM_PORTGUARD unset" "$t0" "${errs%; }" "$detail"
fi
end_all_sessions

# ------------------------------------------------------------------ summary --
echo "     all scenarios: $(secs "$T_ALL" "$(now_ms)")"
for line in "${SUMMARY[@]}"; do
  IFS='|' read -r num title what total <<<"$line"
  printf '     %s  %-34s %s  %s\n' "$num" "$title" "$total" "$what" | cut -c1-240
done
if ((${#FAILED[@]})); then
  echo "FAIL e2e-wrap              scenario(s) ${FAILED[*]} failed (portguard $PG)"
  exit 1
fi
if [[ $MODE == stock ]]; then
  echo "PASS e2e-wrap              recorded what stock $HEADROOM_SPEC does (nothing asserted)"
else
  echo "PASS e2e-wrap              the patched headroom wrap ($HEADROOM_SPEC) with portguard"
fi
