#!/usr/bin/env bash
# Editors check policies with taplo (the engine of Even Better TOML): what
# `portguard init` writes must validate through its `#:schema
# ./policy.schema.json` line, and every rules/*.toml against
# schema/policy.schema.json. taplo runs offline (in a network namespace of
# its own where one can be made), so the schemas are the local files.
#
# Installs @taplo/cli (pinned) with npm into a throwaway directory, and
# nodejs + npm with apt when npm is missing. Uses $PORTGUARD_BIN (default
# target/debug/portguard). Prints the time of each stage.
set -euo pipefail
cd "$(dirname "$0")/.."

TAPLO_CLI_VERSION=0.7.0
portguard=${PORTGUARD_BIN:-target/debug/portguard}
[ -x "$portguard" ] || { echo "ci-taplo: no portguard binary at $portguard" >&2; exit 1; }

t0=$(date +%s%N)
stage() { echo "ci-taplo: $1 ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"; }

work=$(mktemp -d)
holder_pid=""
cleanup() {
  if [ -n "$holder_pid" ]; then kill "$holder_pid" 2>/dev/null || true; wait "$holder_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  stage "installed nodejs $(node --version) and npm $(npm --version) with apt"
fi
npm install --prefix "$work/npm" --no-audit --no-fund --no-save --ignore-scripts \
  --loglevel=error "@taplo/cli@$TAPLO_CLI_VERSION" >/dev/null
taplo="$work/npm/node_modules/.bin/taplo"
stage "installed @taplo/cli $TAPLO_CLI_VERSION ($("$taplo" --version))"

# No network for taplo: a schema it could only fetch fails the check.
offline=()
if unshare -rn true 2>/dev/null; then offline=(unshare -rn); fi
check() { RUST_LOG=warn "${offline[@]}" "$taplo" check --no-auto-config --colors never "$@"; }

# A starter policy, and one with a rule for a real holder of a port.
"$portguard" init --dir "$work/starter" >/dev/null
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(120)
' >"$work/port" &
holder_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
port=$(cat "$work/port")
"$portguard" init --port "$port" --dir "$work/held" >/dev/null
grep -q '^action = "terminate"' "$work/held/portguard.toml" \
  || { echo "ci-taplo: init --port $port wrote no rule for its holder" >&2; cat "$work/held/portguard.toml" >&2; exit 1; }
stage "generated two policies with portguard init"

check "$work/starter/portguard.toml" "$work/held/portguard.toml"
stage "taplo: generated policies valid through #:schema"
check --schema "file://$PWD/schema/policy.schema.json" rules/*.toml
stage "taplo: rules/*.toml valid against schema/policy.schema.json"

# The checks above mean something only if taplo rejects what the schema
# forbids: a misspelled key, in both ways of naming the schema.
mkdir "$work/bad"
cp "$work/held/policy.schema.json" "$work/bad/"
sed 's/^action = "terminate"/acton = "terminate"/' "$work/held/portguard.toml" >"$work/bad/portguard.toml"
# Without its #:schema line: only --schema can find the typo.
sed -e '/^#:schema /d' -e 's/^action = "refuse"/acton = "refuse"/' rules/mine.toml >"$work/bad/mine.toml"
if check "$work/bad/portguard.toml" >/dev/null 2>&1; then
  echo "ci-taplo: taplo accepted a misspelled key through #:schema" >&2; exit 1
fi
if check --schema "file://$PWD/schema/policy.schema.json" "$work/bad/mine.toml" >/dev/null 2>&1; then
  echo "ci-taplo: taplo accepted a misspelled key with --schema" >&2; exit 1
fi
stage "taplo: a misspelled key is rejected both ways"
echo "ci-taplo: ok"
