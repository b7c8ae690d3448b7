"""A stand-in server that holds a port for the portguard integration tests.

The tests copy this file to whatever name and place a scenario needs (a venv
console script `headroom`, a package module `headroom/cli.py`, a look-alike
`proxy.py`, ...) and start it through `launch.py`, which has already bound the
socket and passes it as an inherited fd (`PG_HOLDER_FD`). Behaviour comes from
`PG_HOLDER_OPTS` (JSON), never from argv, so argv can be anything:

  workers         fork this many workers that share the socket (like uvicorn)
  ignore_sigterm  ignore SIGTERM (only SIGKILL ends it)
  exit_after_ms   exit by itself, status 0, this long after start
  term_delay_ms   on SIGTERM keep serving this long, then exit (a draining server)
  guard           [pid, start_ticks] of the test process: exit when it is gone,
                  so a crashed test run leaves nothing behind
  drop_to         [uid, gid]: become this user once the interpreter is loaded
                  (root only; lets a test play another user's process)
  http_status     the status line of its HTTP answer (default 200; 503 plays
                  a headroom proxy whose event loop reported trouble)

Otherwise SIGTERM ends the process at once (default disposition), which frees
the port like the real headroom proxy does when idle. TCP connections are
accepted and answered with a tiny HTTP response (`/livez`-style JSON) so that
health checks succeed; UDP datagrams are echoed.

On start the main process prints `ready [worker pids...]` on stdout.
"""

import json
import os
import signal
import socket
import sys
import threading
import time

FD = int(os.environ.pop("PG_HOLDER_FD"))
OPTS = json.loads(os.environ.pop("PG_HOLDER_OPTS", "{}"))
STARTED = time.monotonic()

BODY = b'{"status":"healthy","service":"headroom-proxy"}'
STATUS = {200: b"200 OK", 503: b"503 Service Unavailable"}.get(
    int(OPTS.get("http_status") or 200), b"200 OK"
)
RESPONSE = (
    b"HTTP/1.0 " + STATUS + b"\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\nConnection: close\r\n\r\n"
    + BODY
)


def start_ticks(pid):
    """Field 22 of /proc/PID/stat, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def answer(conn):
    try:
        conn.settimeout(1.0)
        try:
            conn.recv(4096)
        except OSError:
            pass
        conn.sendall(RESPONSE)
    except OSError:
        pass
    finally:
        conn.close()


def serve_tcp(sock):
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            time.sleep(0.05)
            continue
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


def serve_udp(sock):
    while True:
        try:
            data, peer = sock.recvfrom(65535)
            sock.sendto(data, peer)
        except OSError:
            time.sleep(0.05)


def serve(sock):
    """Answer clients in a thread; the main thread only watches the clock."""
    listening = sock.type == socket.SOCK_STREAM and sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    )
    if listening:
        threading.Thread(target=serve_tcp, args=(sock,), daemon=True).start()
    elif sock.type == socket.SOCK_DGRAM:
        threading.Thread(target=serve_udp, args=(sock,), daemon=True).start()
    guard = OPTS.get("guard")
    exit_after = OPTS.get("exit_after_ms")
    while True:
        time.sleep(0.05)
        if exit_after is not None and (time.monotonic() - STARTED) * 1000 >= exit_after:
            os._exit(0)
        if guard is not None and start_ticks(guard[0]) != guard[1]:
            os._exit(0)


def reap_workers():
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except OSError:
            time.sleep(0.05)


def main():
    sock = socket.socket(fileno=FD)
    if OPTS.get("drop_to"):
        uid, gid = OPTS["drop_to"]
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    if OPTS.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif OPTS.get("term_delay_ms") is not None:
        delay = OPTS["term_delay_ms"] / 1000

        def drain_then_exit(*_):
            threading.Timer(delay, os._exit, args=(0,)).start()

        signal.signal(signal.SIGTERM, drain_then_exit)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    workers = []
    for _ in range(int(OPTS.get("workers", 0))):
        pid = os.fork()
        if pid == 0:
            serve(sock)
        workers.append(pid)
    if workers:
        threading.Thread(target=reap_workers, daemon=True).start()
    sys.stdout.write(" ".join(["ready"] + [str(pid) for pid in workers]) + "\n")
    sys.stdout.flush()
    serve(sock)


main()
