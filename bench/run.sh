#!/usr/bin/env bash
# portguard discovery benchmark, one command: bench/run.sh [small] [medium] [large]
# (default: all three). See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools to compare against and to measure with (Debian packages).
need=()
command -v hyperfine >/dev/null 2>&1 || need+=(hyperfine)
command -v lsof >/dev/null 2>&1 || need+=(lsof)
command -v fuser >/dev/null 2>&1 || need+=(psmisc)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
[ -x /usr/bin/time ] || need+=(time)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "installing: ${need[*]}" >&2
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

workload=${WORKLOAD:-../shared/bench/workload.py}
[ -f "$workload" ] || { echo "workload script not found: $workload (set WORKLOAD=...)" >&2; exit 2; }

cargo build --release --quiet
exec python3 bench/bench.py --portguard target/release/portguard --workload "$workload" \
  --policy bench/terminate.toml "$@"
