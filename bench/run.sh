#!/usr/bin/env bash
# portguard benchmark, one command:
#   bench/run.sh [small] [desktop] [medium] [large] [startup]   (default: all)
# Installs what is missing, builds --release and runs bench/bench.py, which
# prints a Markdown report on stdout. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tools compared against and measured with (Debian packages).
need=()
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

cargo build --release --quiet --bin portguard
exec python3 bench/bench.py --portguard target/release/portguard \
  --policy bench/terminate.toml "$@"
