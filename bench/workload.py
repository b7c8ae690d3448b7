#!/usr/bin/env python3
"""Synthetic host load for the discovery benchmark (Linux, 127.0.0.1 only).

It starts three kinds of processes and keeps them until it is told to stop:

holders
    A pre-fork server: a "master" process binds a TCP listener on
    127.0.0.1:PORT and forks K workers that inherit the same socket, so the
    port has K+1 holder pids (what gunicorn or `uvicorn --workers` look like).
idle processes
    N `sleep` processes, each with F regular files open: the processes that
    every owner scan has to look through without finding anything.
connections
    S established TCP connections over loopback, so the kernel's socket table
    has about 2*S more entries. They are spread over pairs of processes: one
    owns a listener and the accepted ends, the other the connecting ends, at
    most --per-pair connections per pair (their sockets close with a reset, so
    no TIME_WAIT entries are left behind).

When everything is up it prints one JSON line on stdout:

    {"port": P, "holders": [master, worker, ...], "started": COUNT}

and then waits. It stops when it gets SIGTERM, SIGINT or SIGHUP, when its
standard input reaches end-of-file (the launcher went away), or after
--lifetime seconds, whichever comes first. Stopping sends SIGTERM to every
process it started, by pid, reaps its own children, sends SIGKILL to any that
are still there after a few seconds, and removes its temporary directory.

Every child also asks the kernel for SIGKILL when its parent dies
(PR_SET_PDEATHSIG), and the idle processes are `sleep LIFETIME`, so nothing
outlives the generator by more than the lifetime even if it is killed with
SIGKILL itself. Sizes are bounded (see LIMITS) so a typo cannot exhaust the
machine.

    python3 bench/workload.py -n 300 -s 150    # try it; Ctrl-C stops it
"""

import argparse
import ctypes
import json
import os
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time

LOOPBACK = "127.0.0.1"

# Upper bounds of the parameters: far above what the benchmark uses, far
# below what would exhaust a developer machine.
LIMITS = {
    "workers": 64,
    "idle": 5000,
    "files": 256,
    "conns": 40000,
    "per_pair": 8000,
    "lifetime": 3600,
}

# struct linger {int l_onoff; int l_linger;} = {1, 0}: close() resets the
# connection instead of leaving it in TIME_WAIT for a minute.
RESET_ON_CLOSE = struct.pack("ii", 1, 0)

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)

# How long stopping waits for SIGTERM to work before it sends SIGKILL.
STOP_GRACE_S = 5.0


def note(message):
    """Progress for people; stdout is reserved for the ready line."""
    print(f"workload: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Child side. These run in a freshly forked process and must never return
# into the generator's own code: every path ends in exec or os._exit.


def become_child(parent_pid, keep=()):
    """Set up a forked child: default signal handling, SIGKILL when the
    parent dies, and no descriptors but stdio and `keep`."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    _LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took hold
        os._exit(1)
    # stdin and stdout are the launcher's pipes: not the children's business.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    low = 3
    for fd in sorted(set(keep)):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def idle_until(deadline):
    """Sleep until the deadline (SIGTERM ends the process earlier)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os._exit(0)
        time.sleep(min(left, 60.0))


def fork_child(body):
    """Fork; run body() in the child and exit with its status. Returns the
    child's pid in the parent."""
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        body()
        status = 0
    except BaseException as err:  # report, never fall back into the parent's code
        print(f"workload child {os.getpid()}: {err!r}", file=sys.stderr, flush=True)
    finally:
        os._exit(status)


# --------------------------------------------------------------------------
# Generator side.


class Workload:
    """The processes one load consists of, and how to stop them."""

    def __init__(self, lifetime):
        self.me = os.getpid()
        self.deadline = time.monotonic() + lifetime
        self.lifetime = lifetime
        self.children = []  # pids we forked (we reap these)
        self.grandchildren = []  # holder workers (their master reaps them)
        self.tmpdir = tempfile.mkdtemp(prefix="portguard-workload-")

    # ---- holders

    def start_holders(self, port, workers):
        """The master binds 127.0.0.1:port (0: the kernel picks) and forks
        the workers; returns (port, [master, workers...])."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, port))
        listener.listen(128)
        port = listener.getsockname()[1]
        report_r, report_w = os.pipe()
        deadline = self.deadline
        parent = self.me

        def master():
            become_child(parent, keep=(listener.fileno(), report_w))
            me = os.getpid()
            mine = []

            def worker():
                become_child(me, keep=(listener.fileno(),))
                idle_until(deadline)

            for _ in range(workers):
                mine.append(fork_child(worker))
            os.write(report_w, json.dumps(mine).encode() + b"\n")
            os.close(report_w)

            def stop(_signum, _frame):
                for pid in mine:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                for pid in mine:
                    try:
                        os.waitpid(pid, 0)
                    except ChildProcessError:
                        pass
                os._exit(0)

            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            while time.monotonic() < deadline:
                time.sleep(min(deadline - time.monotonic() + 0.01, 60.0))
            stop(None, None)

        master_pid = fork_child(master)
        self.children.append(master_pid)
        os.close(report_w)
        listener.close()
        with os.fdopen(report_r, "rb") as report:
            line = report.readline()
        try:
            worker_pids = [int(p) for p in json.loads(line)]
        except ValueError:
            raise RuntimeError("the holder master did not start its workers") from None
        self.grandchildren += worker_pids
        return port, [master_pid] + worker_pids

    # ---- idle processes

    def start_idle(self, count, files):
        """`count` sleep processes, each inheriting `files` open descriptors
        (of a handful of small files, opened once here)."""
        if count == 0:
            return
        paths = []
        for i in range(min(files, 8) or 1):
            path = os.path.join(self.tmpdir, f"idle-{i}.txt")
            with open(path, "w") as f:
                f.write("idle process file\n")
            paths.append(path)
        held = [os.open(paths[i % len(paths)], os.O_RDONLY) for i in range(files)]
        sleep = shutil.which("sleep") or "/bin/sleep"
        argv = [sleep, str(self.lifetime)]
        parent = self.me

        def idle():
            become_child(parent, keep=held)
            for fd in held:
                os.set_inheritable(fd, True)
            os.execv(sleep, argv)

        try:
            for _ in range(count):
                check_stop()
                self.children.append(fork_child(idle))
        finally:
            for fd in held:
                os.close(fd)

    # ---- connections

    def start_connections(self, total, per_pair):
        """`total` loopback connections, at most `per_pair` per process pair."""
        left = total
        while left > 0:
            n = min(left, per_pair)
            self._connection_pair(n)
            left -= n

    def _connection_pair(self, n):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((LOOPBACK, 0))
        listener.listen(min(n, 4096))
        address = listener.getsockname()
        accepted, connecting = [], []
        try:
            listener.settimeout(10)
            for _ in range(n):
                check_stop()
                client = socket.create_connection(address, timeout=10)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
                server, _ = listener.accept()
                server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
                connecting.append(client)
                accepted.append(server)
            deadline = self.deadline
            parent = self.me
            for side in ([listener] + accepted, connecting):
                fds = [s.fileno() for s in side]

                def hold(fds=fds):
                    become_child(parent, keep=fds)
                    idle_until(deadline)

                self.children.append(fork_child(hold))
        finally:
            for s in [listener] + accepted + connecting:
                s.close()

    # ---- stopping

    def stop(self):
        """SIGTERM to every process we started, by pid; reap our children,
        SIGKILL (by pid) whatever is still there after STOP_GRACE_S."""
        for pid in self.grandchildren + self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        waiting = set(self.children)
        give_up = time.monotonic() + STOP_GRACE_S
        while waiting and time.monotonic() < give_up:
            for pid in list(waiting):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    waiting.discard(pid)
            if waiting:
                time.sleep(0.02)
        for pid in waiting:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        return len(self.children) + len(self.grandchildren)


class Stop(Exception):
    """A stop request arrived during setup."""


_stop_requested = False


def on_stop_signal(_signum, _frame):
    global _stop_requested
    _stop_requested = True


def check_stop():
    if _stop_requested:
        raise Stop()


def allow_descriptors(needed):
    """Raise the soft RLIMIT_NOFILE to the hard limit when `needed` exceeds it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise SystemExit(f"workload: needs {needed} open descriptors, the limit is {hard}; "
                         f"lower --per-pair")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_for_stop(deadline):
    """Block until a stop signal, EOF (or error) on stdin, or the deadline."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    watched = [wake_r]
    try:
        os.fstat(0)
        watched.append(0)
    except OSError:
        pass
    while not _stop_requested:
        left = deadline - time.monotonic()
        if left <= 0:
            return "lifetime over"
        ready, _, _ = select.select(watched, [], [], min(left, 60.0))
        if 0 in ready and not os.read(0, 4096):
            return "stdin closed"
        if wake_r in ready:
            os.read(wake_r, 64)
    return "signal"


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0,
                    help="the holders' port on 127.0.0.1 (default 0: the kernel picks a free one)")
    ap.add_argument("-k", "--workers", type=int, default=4,
                    help="K: worker processes sharing the master's listener (default 4)")
    ap.add_argument("-n", "--idle", type=int, default=0, help="N: idle processes (default 0)")
    ap.add_argument("-f", "--files", type=int, default=20,
                    help="F: open files per idle process (default 20)")
    ap.add_argument("-s", "--conns", type=int, default=0,
                    help="S: established loopback connections (default 0)")
    ap.add_argument("--per-pair", type=int, default=4000,
                    help="connections per process pair (default 4000)")
    ap.add_argument("--lifetime", type=int, default=900,
                    help="seconds after which everything stops anyway (default 900)")
    a = ap.parse_args(argv)
    if not 0 <= a.port <= 65535:
        ap.error("--port must be 0-65535")
    for name, top in LIMITS.items():
        value = getattr(a, name)
        low = 1 if name in ("per_pair", "lifetime") else 0
        if not low <= value <= top:
            ap.error(f"--{name.replace('_', '-')} must be {low}-{top}")
    return a


def main(argv=None):
    a = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_stop_signal)
    allow_descriptors(2 * min(a.per_pair, a.conns) + a.files + 64)

    started = time.monotonic()
    load = Workload(a.lifetime)
    status = 0
    try:
        port, holders = load.start_holders(a.port, a.workers)
        load.start_idle(a.idle, a.files)
        load.start_connections(a.conns, a.per_pair)
        count = len(load.children) + len(load.grandchildren)
        note(f"ready after {time.monotonic() - started:.1f} s: port {port}, "
             f"{count} processes, holders {holders}")
        print(json.dumps({"port": port, "holders": holders, "started": count}), flush=True)
        why = wait_for_stop(load.deadline)
        note(f"stopping ({why})")
    except Stop:
        note("stopped during setup")
        status = 1
    except Exception as err:  # noqa: BLE001 - report any setup failure, then clean up
        note(f"setup failed: {err!r}")
        status = 1
    finally:
        n = load.stop()
        note(f"stopped {n} processes")
    return status


if __name__ == "__main__":
    sys.exit(main())
