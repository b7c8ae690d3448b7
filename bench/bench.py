#!/usr/bin/env python3
"""portguard discovery benchmark: `portguard who` against ss, lsof and fuser.

Run through bench/run.sh, which installs the tools and builds the release
binary. For each load (small, medium, large) it starts ../shared/bench/
workload.py (N idle processes, S loopback connections, a listener held by
K+1 processes), checks that every tool finds all K+1 holders, and times
them with hyperfine in the same run. At the small load it also measures the
free-port path (`portguard resolve P` on a free port against `true`) and
time-to-free (a holder that exits 50 ms after SIGTERM, terminated by
`portguard resolve --policy bench/terminate.toml`); at every load the peak
RSS of `portguard who` (`/usr/bin/time -v`). Everything is on 127.0.0.1; the
workload is stopped (SIGTERM, it cleans up) when a load is done or the
benchmark is interrupted.
"""
import argparse
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

K = 4  # workers: K+1 holder pids
LOADS = {
    # name: (idle processes N, loopback connections S, hyperfine runs)
    "small": (50, 100, 30),
    "medium": (500, 5000, 10),
    "large": (2000, 30000, 5),
}
TARGET_RATIO = {"small": 0.5, "large": 0.35}
MARKER = "portguard-bench-holder"
HOLDER = f"""
import os, signal, socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
def term(*_):
    time.sleep(0.05)   # the holder's own shutdown: 50 ms
    os._exit(0)
signal.signal(signal.SIGTERM, term)
print(s.getsockname()[1], flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.2)
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Workload:
    """workload.py for one load; stopped (SIGTERM, by pid) on exit."""

    def __init__(self, script, idle, conns, tmp):
        self.pids_file = os.path.join(tmp, f"workload-{idle}-{conns}.pids")
        self.err = open(os.path.join(tmp, f"workload-{idle}-{conns}.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, script, "-k", str(K), "-n", str(idle), "-s", str(conns),
             "--lifetime", "900", "--pids-file", self.pids_file, "--die-with-parent"],
            stdout=subprocess.PIPE, stderr=self.err, text=True)
        line = self.proc.stdout.readline()
        if not line.strip():
            self.stop()
            raise SystemExit(f"workload failed to start; see {self.err.name}")
        self.port = int(line)
        self.holders = set()
        with open(self.pids_file) as f:
            for row in f:
                if row.startswith("#"):
                    continue
                pid, role = row.split()
                if role.startswith("holder"):
                    self.holders.add(int(pid))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def host_size():
    procs = sum(1 for d in os.listdir("/proc") if d.isdigit())
    tcp = 0
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                tcp = int(line.split()[2])
    return procs, tcp


def pids_found(name, argv, cwd):
    """Run one tool once and return the holder pids it reports."""
    out = subprocess.run(argv, capture_output=True, text=True, cwd=cwd).stdout
    if name.startswith("portguard who"):
        ports = json.loads(out)["ports"]
        return {h["pid"] for p in ports for h in p["holders"] if h.get("pid")}
    if name.startswith("ss"):
        return {int(p) for p in re.findall(r"pid=(\d+)", out)}
    if name.startswith("lsof"):
        return {int(line.split()[1]) for line in out.splitlines()[1:] if line.split()}
    if name.startswith("fuser"):
        return {int(p) for p in re.findall(r"\d+", out)}
    raise ValueError(name)


def hyperfine(commands, runs, warmup, tmp, cwd):
    """Median seconds of each command, timed together by hyperfine."""
    out = os.path.join(tmp, "hyperfine.json")
    argv = ["hyperfine", "-N", "-i", "--style", "none", "-w", str(warmup), "-r", str(runs),
            "--export-json", out]
    for name, cmd in commands.items():
        argv += ["-n", name, cmd]
    subprocess.run(argv, check=True, cwd=cwd, stdout=subprocess.DEVNULL)
    with open(out) as f:
        results = json.load(f)["results"]
    return {r["command"]: r["median"] for r in results}


def peak_rss_kb(argv, cwd):
    run = subprocess.run(["/usr/bin/time", "-v"] + argv, capture_output=True, text=True, cwd=cwd)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
    return int(m.group(1)) if m else None


def time_to_free(pg, policy, tmp, cwd, rounds=10):
    """Median wall time of `portguard resolve` freeing a holder that takes
    50 ms to exit after SIGTERM, and of the holder's own shutdown when we
    send SIGTERM ourselves (SIGTERM to reaped exit)."""
    script = os.path.join(tmp, "holder.py")
    with open(script, "w") as f:
        f.write(HOLDER)

    def start():
        p = subprocess.Popen([sys.executable, script, MARKER], stdout=subprocess.PIPE, text=True)
        return p, int(p.stdout.readline())

    own, freed = [], []
    for _ in range(rounds):
        holder, _port = start()
        t0 = time.perf_counter()
        holder.send_signal(signal.SIGTERM)
        holder.wait()
        own.append(time.perf_counter() - t0)

        holder, port = start()
        t0 = time.perf_counter()
        run = subprocess.run([pg, "resolve", str(port), "--policy", policy, "-q"],
                             capture_output=True, text=True, cwd=cwd)
        freed.append(time.perf_counter() - t0)
        if run.returncode != 0:
            holder.kill()
            holder.wait()
            raise SystemExit(f"resolve did not free the port (exit {run.returncode}): "
                             f"{run.stderr.strip()}")
        holder.wait(timeout=10)
    return statistics.median(freed), statistics.median(own)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portguard", required=True)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--policy", required=True, help="policy that terminates the stand-in holder")
    ap.add_argument("loads", nargs="*", help=f"any of {', '.join(LOADS)} (default: all)")
    a = ap.parse_args()
    loads = a.loads or list(LOADS)
    for load in loads:
        if load not in LOADS:
            ap.error(f"unknown load {load!r}: expected any of {', '.join(LOADS)}")
    pg = os.path.abspath(a.portguard)
    policy = os.path.abspath(a.policy)

    tmp = tempfile.mkdtemp(prefix="portguard-bench-")
    # No ./portguard.toml, $PORTGUARD_POLICY or user config: the built-in
    # default policy, as on a fresh machine.
    cwd = os.path.join(tmp, "cwd")
    os.makedirs(cwd)
    os.environ.pop("PORTGUARD_POLICY", None)
    os.environ["XDG_CONFIG_HOME"] = os.path.join(tmp, "config")
    has_backend = "--backend" in subprocess.run([pg, "who", "--help"], capture_output=True,
                                                 text=True).stdout

    lines, misses = [], []
    extra = {}
    for load in loads:
        idle, conns, runs = LOADS[load]
        log(f"== {load}: starting workload (N={idle}, S={conns}, K={K}) ...")
        w = Workload(os.path.abspath(a.workload), idle, conns, tmp)
        try:
            procs, tcp = host_size()
            port = w.port
            commands = {
                "portguard who": f"{pg} who {port} --format json",
                "ss -Hltnp": f"ss -Hltnp 'sport = :{port}'",
                "lsof -nP -iTCP:P -sTCP:LISTEN": f"lsof -nP -iTCP:{port} -sTCP:LISTEN",
                "fuser P/tcp": f"fuser {port}/tcp",
            }
            if has_backend:
                commands["portguard who --backend procfs"] = (
                    f"{pg} who {port} --format json --backend procfs")
            found = {}
            for name, cmd in commands.items():
                found[name] = pids_found(name, shlex.split(cmd), cwd)
            log(f"   {procs} processes, {tcp} TCP sockets; timing {len(commands)} commands x {runs} runs")
            medians = hyperfine(commands, runs, 1 if load == "large" else 2, tmp, cwd)
            ss = medians["ss -Hltnp"]
            lines.append(f"\n### {load}: {procs} processes, {tcp} TCP sockets in use "
                         f"(N={idle} idle, S={conns} connections, K+1={K + 1} holders)\n")
            lines.append(f"| command | median | vs ss | holders found |")
            lines.append(f"|---|---:|---:|---|")
            for name in commands:
                got = found[name] & w.holders
                ok = "all" if got == w.holders else "MISSING"
                lines.append(f"| `{name}` | {medians[name] * 1000:.1f} ms | "
                             f"{medians[name] / ss:.2f}x | {ok} {len(got)}/{len(w.holders)} |")
                if got != w.holders:
                    misses.append(f"{load}: {name} found {len(got)}/{len(w.holders)} holders")
            ratio = medians["portguard who"] / ss
            if load in TARGET_RATIO:
                target = TARGET_RATIO[load]
                verdict = "met" if ratio <= target else "MISSED"
                extra[f"who/ss at {load} load <= {target}"] = (f"{ratio:.2f}", verdict)
            rss = peak_rss_kb([pg, "who", str(port)], cwd)
            lines.append(f"\npeak RSS of `portguard who`: {rss / 1024:.1f} MB" if rss else "")
            if load == "large" and rss:
                extra["peak RSS at large load <= 10 MB"] = (
                    f"{rss / 1024:.1f} MB", "met" if rss <= 10 * 1024 else "MISSED")

            if load == "small":
                # Free-port path: hold the number over UDP so no one takes it
                # over TCP during the run.
                hold = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                hold.bind(("127.0.0.1", 0))
                free = hold.getsockname()[1]
                free_med = hyperfine({"portguard resolve (free port)": f"{pg} resolve {free}",
                                      "true": "true"}, 100, 5, tmp, cwd)
                hold.close()
                delta = (free_med["portguard resolve (free port)"] - free_med["true"]) * 1000
                lines.append(f"\nfree port: `portguard resolve P` "
                             f"{free_med['portguard resolve (free port)'] * 1000:.2f} ms, "
                             f"`true` {free_med['true'] * 1000:.2f} ms: +{delta:.2f} ms")
                extra["free-port resolve within 2 ms of true"] = (
                    f"+{delta:.2f} ms", "met" if delta <= 2 else "MISSED")
                ttf, own = time_to_free(pg, policy, tmp, cwd)
                over = (ttf - 0.05) * 1000
                lines.append(f"time-to-free: `portguard resolve --policy bench/terminate.toml` "
                             f"{ttf * 1000:.1f} ms for a holder that exits 50 ms after SIGTERM "
                             f"(+{over:.1f} ms; its own shutdown measured alone: "
                             f"{own * 1000:.1f} ms, so +{(ttf - own) * 1000:.1f} ms over it)")
                extra["time-to-free within 20 ms of the holder's shutdown"] = (
                    f"+{over:.1f} ms", "met" if over <= 20 else "MISSED")
        finally:
            log(f"== {load}: stopping workload")
            w.stop()

    print("\n## portguard discovery benchmark")
    print(f"\n{os.uname().sysname} {os.uname().release}, {os.cpu_count()} cores; "
          f"portguard {pg}")
    print("\n".join(lines))
    if extra:
        print("\n### targets\n")
        print("| target | measured | |")
        print("|---|---:|---|")
        for name, (value, verdict) in extra.items():
            print(f"| {name} | {value} | {verdict} |")
    for m in misses:
        print(f"holder check failed: {m}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
