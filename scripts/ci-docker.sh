#!/usr/bin/env bash
# A private Docker daemon for the container tests (issue 11).
#
#   env=$(bash scripts/ci-docker.sh start)   # install, start, build the image
#   eval "$env"                              # DOCKER_HOST, PORTGUARD_TEST_DOCKER_IMAGE, ...
#   trap 'bash scripts/ci-docker.sh stop' EXIT
#   cargo test ...
#
# start  installs Debian's docker.io and busybox-static when they are missing
#        (apt-get update first; needs root), starts
#          dockerd --storage-driver=vfs --iptables=false --ip6tables=false
#        in the background with everything it owns (data root, exec root,
#        pidfile, socket, log) in a fresh directory under $TMPDIR (default
#        /tmp), waits up to $PORTGUARD_DOCKERD_TIMEOUT seconds (default 60) for
#        its socket to answer GET /_ping, and imports the test image (below).
#        On stdout it prints only `export NAME=VALUE` lines, for eval:
#          DOCKER_HOST=unix://DIR/docker.sock   the tests reach the daemon by it
#          PORTGUARD_TEST_DOCKER_IMAGE=portguard-test/busybox:latest
#          PORTGUARD_DOCKERD_DIR=DIR             what `stop` stops
#        Progress and errors go to stderr. If start fails after dockerd came
#        up, it stops that dockerd itself before exiting non-zero.
# stop   stops the dockerd recorded in $PORTGUARD_DOCKERD_DIR by its pid
#        (SIGTERM, then SIGKILL after 20 s), after removing the containers of
#        that private daemon, unmounts what it left under DIR and removes DIR.
#        Safe to call twice, or when start never ran.
# image  (re)imports the test image into the daemon at $DOCKER_HOST.
#
# Why a private socket instead of /var/run/docker.sock: the run owns every
# file of its daemon and removes them all, it never shadows or is shadowed by
# a system daemon's socket, and the tests exercise the DOCKER_HOST path that
# portguard documents. If a daemon already answers at $DOCKER_HOST (or, with
# DOCKER_HOST unset, at /var/run/docker.sock), start uses it instead of
# starting a second one (two daemons would fight over the docker0 bridge), and
# stop leaves it alone.
#
# The image: no registry is reachable, so the rootfs is built here: a tarball
# holding the static /bin/busybox and links to it (sh, httpd, sleep, ...),
# loaded with `docker import`. Tests run it as
#   docker run -d --init -p 127.0.0.1:PORT:80 IMAGE httpd -f -p 80
# (--init because busybox as pid 1 ignores SIGTERM).
set -euo pipefail
# dockerd and docker-proxy live in /usr/sbin, which a CI PATH may lack.
PATH=$PATH:/usr/sbin:/sbin

IMAGE=${PORTGUARD_TEST_DOCKER_IMAGE:-portguard-test/busybox:latest}
DEFAULT_SOCKET=/var/run/docker.sock
TIMEOUT=${PORTGUARD_DOCKERD_TIMEOUT:-60}

log() { printf 'ci-docker: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# GET /_ping on a unix socket, without curl (not on a fresh machine).
ping_socket() {
  python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
try:
    s.connect(sys.argv[1])
    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
    data = b""
    while len(data) < 65536:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except OSError:
    sys.exit(1)
sys.exit(0 if data.startswith(b"HTTP/1.1 200") and data.endswith(b"OK") else 1)
EOF
}

busybox_path() {
  dpkg -L busybox-static 2>/dev/null | grep -m1 -E '/bin/busybox$' || true
}

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v docker >/dev/null 2>&1 || missing+=(docker.io)
  [ -n "$(busybox_path)" ] || missing+=(busybox-static)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "needs root to install ${missing[*]}"
  log "installing ${missing[*]} (apt-get)"
  # policy-rc.d-less machines would start the packaged daemon on install;
  # RUNLEVEL=1 makes invoke-rc.d leave it stopped.
  apt-get update -qq >&2
  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >&2
}

# The socket a daemon already answers on, if any.
running_socket() {
  local host=${DOCKER_HOST:-}
  case $host in
    '') [ -S "$DEFAULT_SOCKET" ] && ping_socket "$DEFAULT_SOCKET" && echo "$DEFAULT_SOCKET" ;;
    unix://*) [ -S "${host#unix://}" ] && ping_socket "${host#unix://}" && echo "${host#unix://}" ;;
    *) die "DOCKER_HOST=$host: only unix:// sockets are supported" ;;
  esac
  return 0
}

build_image() {
  local busybox root
  busybox=$(busybox_path)
  [ -n "$busybox" ] || die "busybox-static is not installed"
  root=$(mktemp -d "${TMPDIR:-/tmp}/portguard-rootfs.XXXXXX")
  mkdir -p "$root/bin" "$root/tmp" "$root/www"
  cp "$busybox" "$root/bin/busybox"
  local applet
  for applet in sh httpd sleep cat echo ls kill true; do
    ln -s busybox "$root/bin/$applet"
  done
  echo portguard >"$root/www/index.html"
  if ! tar -C "$root" --numeric-owner --owner=0 --group=0 -c . |
      docker import -c 'CMD ["/bin/sh"]' -c 'WORKDIR /www' - "$IMAGE" >/dev/null; then
    rm -rf "$root"
    return 1
  fi
  rm -rf "$root"
  log "image $IMAGE imported"
}

start() {
  install_packages
  command -v python3 >/dev/null 2>&1 || die "python3 is needed to probe the socket"
  local socket
  socket=$(running_socket)
  if [ -n "$socket" ]; then
    log "a Docker daemon already answers at $socket: using it (stop will leave it running)"
    export DOCKER_HOST=unix://$socket
    docker image inspect "$IMAGE" >/dev/null 2>&1 || build_image
    printf 'export DOCKER_HOST=%q\nexport PORTGUARD_TEST_DOCKER_IMAGE=%q\n' \
      "$DOCKER_HOST" "$IMAGE"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "dockerd needs root"

  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/portguard-dockerd.XXXXXX")
  # The docker group (non-root tests) must reach the socket inside.
  chmod 755 "$dir"
  export PORTGUARD_DOCKERD_DIR=$dir
  socket=$dir/docker.sock
  # From here on a failure (set -e) stops what was started.
  START_OK=0
  trap '[ "$START_OK" = 1 ] || { log "start failed; stopping the daemon"; stop; }' EXIT

  log "starting dockerd (state in $dir)"
  # Not from the checkout: dockerd and every docker-proxy would keep it as cwd.
  cd /
  setsid dockerd \
    --storage-driver=vfs --iptables=false --ip6tables=false \
    --data-root="$dir/data" --exec-root="$dir/exec" --pidfile="$dir/dockerd.pid" \
    --host="unix://$socket" --log-level=warn \
    </dev/null >"$dir/dockerd.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"

  local waited=0
  until [ -S "$socket" ] && ping_socket "$socket"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "dockerd exited during start; its log:"
      tail -n 30 "$dir/dockerd.log" >&2 || true
      false
    fi
    if [ "$waited" -ge $((TIMEOUT * 10)) ]; then
      log "dockerd did not answer on $socket within ${TIMEOUT}s; its log:"
      tail -n 30 "$dir/dockerd.log" >&2 || true
      false
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  log "dockerd pid $pid answers on $socket after $((waited / 10)).$((waited % 10))s"

  export DOCKER_HOST=unix://$socket
  build_image
  START_OK=1
  printf 'export DOCKER_HOST=%q\nexport PORTGUARD_TEST_DOCKER_IMAGE=%q\nexport PORTGUARD_DOCKERD_DIR=%q\n' \
    "$DOCKER_HOST" "$IMAGE" "$dir"
}

stop() {
  local dir=${PORTGUARD_DOCKERD_DIR:-}
  [ -n "$dir" ] || { log "stop: no private daemon recorded (PORTGUARD_DOCKERD_DIR unset)"; return 0; }
  case $dir in
    "${TMPDIR:-/tmp}"/portguard-dockerd.*) ;;
    *) die "stop: refusing to touch $dir (not a directory start created)" ;;
  esac
  [ -d "$dir" ] || return 0
  local pid=''
  [ -f "$dir/pid" ] && pid=$(cat "$dir/pid")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    # Every container of this private daemon is the run's own.
    local ids
    ids=$(DOCKER_HOST=unix://$dir/docker.sock timeout 30 docker ps -aq 2>/dev/null || true)
    if [ -n "$ids" ]; then
      log "removing leftover containers: $(echo "$ids" | tr '\n' ' ')"
      # shellcheck disable=SC2086 # one id per word
      DOCKER_HOST=unix://$dir/docker.sock timeout 60 docker rm -f $ids >/dev/null 2>&1 || true
    fi
    log "stopping dockerd pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    local _
    for _ in $(seq 1 200); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "dockerd pid $pid ignored SIGTERM for 20s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # Whatever dockerd left mounted under DIR (container shm, netns), deepest first.
  local mounts
  mounts=$(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  if [ -n "$mounts" ]; then
    local m
    while IFS= read -r m; do umount -l "$m" 2>/dev/null || true; done <<<"$mounts"
  fi
  rm -rf "$dir" || log "stop: could not remove all of $dir"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  image) build_image ;;
  *) echo "usage: $0 start|stop|image" >&2; exit 2 ;;
esac
