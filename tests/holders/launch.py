"""Bind a socket for a test holder, report its port, then become the holder.

The integration tests need a process that holds a port the kernel chose (no
race on the port number) and that looks exactly like the program a scenario
is about (argv, executable, cwd). This launcher does the binding, prints
`port N` on stdout, and then `execve`s the requested program in the same
process, so the pid the test knows is the pid of the holder. The bound socket
is handed over as an inherited file descriptor (env `PG_HOLDER_FD`); the
exec'd program (normally `holder.py` under some name) adopts it.

Configuration arrives as JSON in `PG_LAUNCH`:
  proto   "tcp" | "udp"
  addr    "127.0.0.1" | "::1" (IPv6 sockets are made IPv6-only)
  listen  TCP only: call listen() (false leaves a bound, non-listening socket)
  reuseaddr  set SO_REUSEADDR before bind
  exe     the program to execve
  argv    its argv; "{port}" is replaced by the bound port
  env     extra environment for the program
  opts    passed through to holder.py as `PG_HOLDER_OPTS`
  orphaned  start the holder as an orphan: this launcher becomes a child
          subreaper named `systemd` (as a `systemd --user` manager is), forks
          the holder through an intermediate process that exits at once, and
          stays only to reap it; it prints `port N pid H` and exits with the
          holder's status (or dies of its signal). The holder's parent is then
          a subreaper that adopted it, as a stale proxy's is.
"""

import json
import os
import socket
import sys

spec = json.loads(os.environ.pop("PG_LAUNCH"))

family = socket.AF_INET6 if ":" in spec["addr"] else socket.AF_INET
kind = socket.SOCK_DGRAM if spec["proto"] == "udp" else socket.SOCK_STREAM
sock = socket.socket(family, kind)
if family == socket.AF_INET6:
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
if spec.get("reuseaddr"):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((spec["addr"], 0))
if kind == socket.SOCK_STREAM and spec.get("listen", True):
    sock.listen(64)
port = sock.getsockname()[1]
sock.set_inheritable(True)

env = dict(os.environ)
env.update(spec.get("env", {}))
env["PG_HOLDER_FD"] = str(sock.fileno())
env["PG_HOLDER_OPTS"] = json.dumps(spec.get("opts", {}))
argv = [arg.replace("{port}", str(port)) for arg in spec["argv"]]


def become_orphan():
    """Returns in the holder's process; the launcher never returns."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    libc.prctl(15, b"systemd", 0, 0, 0)  # PR_SET_NAME
    pid_r, pid_w = os.pipe()
    go_r, go_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        if os.fork() == 0:
            os.close(pid_r)
            os.close(go_w)
            os.write(pid_w, str(os.getpid()).encode())
            os.close(pid_w)
            os.read(go_r, 1)  # wait until the launcher has reported us
            os.close(go_r)
            return
        os._exit(0)
    sock.close()
    os.close(pid_w)
    os.close(go_r)
    os.waitpid(middle, 0)
    holder = int(os.read(pid_r, 32) or b"0")
    sys.stdout.write(f"port {port} pid {holder}\n")
    sys.stdout.flush()
    os.write(go_w, b"x")
    os.close(go_w)
    _, status = os.waitpid(holder, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


if spec.get("orphaned"):
    become_orphan()
else:
    sys.stdout.write(f"port {port}\n")
    sys.stdout.flush()
os.execve(spec["exe"], argv, env)
