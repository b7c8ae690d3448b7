#!/usr/bin/env python3
"""portguard discovery benchmark: `portguard who` against ss, lsof and fuser,
plus portguard's start-up and free-port cost and its time-to-free.

Run it through bench/run.sh, which installs the tools and builds the release
binary; bench/README.md describes the method. In short:

* For each load (small, desktop, medium, large) bench/workload.py starts N
  idle processes, S loopback connections and a listener on 127.0.0.1 held by
  K+1 processes. Every tool runs once and must report all K+1 holder pids.
  Then the tools are timed in rounds: each round runs every command once, in
  an order that rotates and reverses from round to round, and each tool's
  time is divided by the time `ss` took in the same round. The table gives
  each command's median wall time and the median of its per-round ratios.
* "startup" times `portguard --version`, `portguard who P` and
  `portguard resolve P` on a free port, each paired with `true`, and the
  time portguard takes to free a port whose holder exits 50 ms after
  SIGTERM, paired with that holder's own shutdown.

Commands are started with posix_spawn and reaped with wait4, timed with
perf_counter_ns around both; their output goes to /dev/null. Everything
binds on 127.0.0.1; each workload is stopped (by pid) when its load is done,
and also when this script ends in any way (its stdin closes).
"""

import argparse
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
K = 4  # holder workers: K+1 holder pids

# name: (N idle processes, S loopback connections, timed rounds)
LOADS = {
    "small": (50, 100, 40),
    "desktop": (300, 150, 30),
    "medium": (500, 5000, 15),
    "large": (2000, 30000, 7),
}
SECTIONS = list(LOADS) + ["startup"]

# The targets of issue 13 (and the RSS bound of issue 6), checked at the end.
WHO_TARGET = {"small": 0.4, "desktop": 0.4, "large": 0.25}
FREE_PORT_TARGET_MS = 1.0
TIME_TO_FREE_TARGET_MS = 20.0
RSS_TARGET_MB = 10.0

STARTUP_PAIRS = 300
TIME_TO_FREE_ROUNDS = 15
HOLDER_EXIT_DELAY_S = 0.05
MARKER = "portguard-bench-holder"  # bench/terminate.toml matches only this

# The stand-in server for time-to-free: listens on 127.0.0.1, prints its
# port, and exits HOLDER_EXIT_DELAY_S after SIGTERM (its own shutdown work).
HOLDER_SOURCE = f"""
import os, signal, socket, sys, time
listener = socket.create_server(("127.0.0.1", 0))
def shut_down(*_):
    time.sleep({HOLDER_EXIT_DELAY_S})
    os._exit(0)
signal.signal(signal.SIGTERM, shut_down)
print(listener.getsockname()[1], flush=True)
time.sleep(60)
"""


def log(message):
    print(message, file=sys.stderr, flush=True)


class Interrupted(Exception):
    """SIGTERM or SIGHUP: unwind so every workload is stopped."""


def interrupted(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


# --------------------------------------------------------------------------
# Timing


class Spawner:
    """Runs a command with its stdio on /dev/null and returns its wall time
    in nanoseconds (posix_spawn to wait4, no shell in between) and the CPU
    time it used (user + system, all its threads, from wait4)."""

    def __init__(self, env):
        self.env = env
        self.actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]

    def time_ns(self, argv):
        start = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, self.env, file_actions=self.actions)
        _, _, usage = os.wait4(pid, 0)
        wall = time.perf_counter_ns() - start
        return wall, round((usage.ru_utime + usage.ru_stime) * 1e9)


def round_order(names, r):
    """Round r's order: rotated by r//2 and reversed on odd rounds, so no
    command always runs first, or always right after the same neighbour."""
    shift = (r // 2) % len(names)
    order = names[shift:] + names[:shift]
    return order[::-1] if r % 2 else order


def timed_rounds(spawner, commands, rounds, warmup):
    """({name: [wall ns per round]}, {name: [CPU ns per round]}), every
    command once per round."""
    names = list(commands)
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for r in range(warmup + rounds):
        for name in round_order(names, r):
            w, c = spawner.time_ns(commands[name])
            if r >= warmup:
                wall[name].append(w)
                cpu[name].append(c)
    return wall, cpu


def median_ms(ns_list):
    return statistics.median(ns_list) / 1e6


def quartiles(values):
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def paired_ratio(times, name, base):
    """Median and quartiles of time[name]/time[base], round by round."""
    ratios = [a / b for a, b in zip(times[name], times[base])]
    low, high = quartiles(ratios)
    return statistics.median(ratios), low, high


def paired_delta_ms(times, name, base):
    """Median and quartiles of time[name] - time[base], pair by pair, in ms."""
    deltas = [(a - b) / 1e6 for a, b in zip(times[name], times[base])]
    low, high = quartiles(deltas)
    return statistics.median(deltas), low, high


def peak_rss_mb(argv, env):
    """Peak RSS of one run, from GNU time (wait4 from this process would
    include the Python interpreter's pages: posix_spawn shares them until
    exec). None when /usr/bin/time is missing."""
    if not os.access("/usr/bin/time", os.X_OK):
        return None
    run = subprocess.run(["/usr/bin/time", "-f", "maxrss=%M"] + argv, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found = re.search(r"maxrss=(\d+)", run.stderr)
    return int(found.group(1)) / 1024 if found else None


# --------------------------------------------------------------------------
# Workload


class Workload:
    """bench/workload.py for one load. Its stdin is a pipe from us: when this
    script ends in any way, the pipe closes and the workload stops itself."""

    def __init__(self, idle, conns, log_path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "workload.py"), "-k", str(K),
             "-n", str(idle), "-s", str(conns), "--lifetime", "1800"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 600)
        line = self.proc.stdout.readline() if ready else ""
        if not line.strip():
            self.stop()
            with open(log_path) as f:
                raise SystemExit(f"the workload did not start:\n{f.read()}")
        info = json.loads(line)
        self.port = info["port"]
        self.holders = set(info["holders"])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def host_size():
    """(processes, TCP sockets in use) on the whole host right now."""
    processes = sum(1 for d in os.listdir("/proc") if d.isdigit())
    sockets = 0
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                sockets = int(line.split()[2])
    return processes, sockets


def holders_reported(name, argv, env):
    """Run one tool once; the pids it reports as holding the port."""
    out = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True).stdout
    if name.startswith("portguard"):
        ports = json.loads(out)["ports"]
        return {h["pid"] for p in ports for h in p["holders"] if h.get("pid")}
    if name.startswith("ss"):
        return {int(p) for p in re.findall(r"pid=(\d+)", out)}
    if name.startswith("lsof"):
        return {int(line.split()[1]) for line in out.splitlines()[1:] if line.split()}
    if name.startswith("fuser"):
        return {int(p) for p in out.split()}
    raise ValueError(name)


# --------------------------------------------------------------------------
# Sections


def run_load(load, pg, tools, spawner, env, tmp, rounds_override):
    idle, conns, rounds = LOADS[load]
    rounds = rounds_override or rounds
    log(f"== {load}: starting the workload (N={idle} idle, S={conns} connections, K+1={K + 1})")
    started = time.monotonic()
    w = Workload(idle, conns, os.path.join(tmp, f"workload-{load}.log"))
    try:
        log(f"   ready after {time.monotonic() - started:.1f} s")
        procs, sockets = host_size()
        p = str(w.port)
        commands = {
            "portguard who": [pg, "who", p],
            "ss -Hltnp": [tools["ss"], "-Hltnp", f"sport = :{p}"],
            "lsof": [tools["lsof"], "-nP", f"-iTCP:{p}", "-sTCP:LISTEN"],
            "fuser": [tools["fuser"], f"{p}/tcp"],
            "portguard who --backend procfs": [pg, "who", p, "--backend", "procfs"],
        }
        missed = []
        for name, argv in commands.items():
            check = argv + ["--format", "json"] if name.startswith("portguard") else argv
            got = holders_reported(name, check, env) & w.holders
            if got != w.holders:
                missed.append(f"{load}: {name} found {len(got)}/{len(w.holders)} holders")
        log(f"   {procs} processes, {sockets} TCP sockets; {rounds} rounds of "
            f"{len(commands)} commands")
        times, cpu = timed_rounds(spawner, commands, rounds, warmup=1 if load == "large" else 2)
        rss = peak_rss_mb(commands["portguard who"], env)
    finally:
        log(f"== {load}: stopping the workload")
        w.stop()
    return {
        "load": load, "idle": idle, "conns": conns, "rounds": rounds, "procs": procs,
        "sockets": sockets, "holders": len(w.holders), "times": times, "cpu": cpu, "rss": rss,
        "missed": missed,
    }


def time_to_free(pg, policy, env, tmp):
    """Per round: a holder's own shutdown (we send SIGTERM, it exits 50 ms
    later, we reap it), then `portguard resolve` freeing a fresh holder."""
    script = os.path.join(tmp, "holder.py")
    with open(script, "w") as f:
        f.write(HOLDER_SOURCE)

    def start_holder():
        proc = subprocess.Popen([sys.executable, script, MARKER], stdout=subprocess.PIPE,
                                text=True)
        return proc, int(proc.stdout.readline())

    own, freed = [], []
    for _ in range(TIME_TO_FREE_ROUNDS):
        holder, _ = start_holder()
        t0 = time.perf_counter_ns()
        holder.send_signal(signal.SIGTERM)
        holder.wait()
        own.append(time.perf_counter_ns() - t0)

        holder, port = start_holder()
        t0 = time.perf_counter_ns()
        run = subprocess.run([pg, "resolve", str(port), "--policy", policy, "-q"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        freed.append(time.perf_counter_ns() - t0)
        if run.returncode != 0:
            holder.kill()
            holder.wait()
            raise SystemExit(f"resolve did not free the port (exit {run.returncode}): "
                             f"{run.stderr.strip()}")
        holder.wait(timeout=10)
    return {"resolve": freed, "own": own}


def run_startup(pg, policy, tools, spawner, env, tmp):
    log("== startup: --version, who and resolve on a free port, each paired with true")
    # Keep the free port's number bound over UDP so nothing takes it over TCP.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hold:
        hold.bind(("127.0.0.1", 0))
        port = str(hold.getsockname()[1])
        commands = {
            "portguard --version": [pg, "--version"],
            "portguard who P": [pg, "who", port],
            "portguard resolve P": [pg, "resolve", port],
        }
        pairs = {}
        for name, argv in commands.items():
            pairs[name] = timed_rounds(spawner, {name: argv, "true": [tools["true"]]},
                                       STARTUP_PAIRS, warmup=10)[0]
    log("== startup: time-to-free")
    ttf = time_to_free(pg, policy, env, tmp)
    return {"pairs": pairs, "ttf": ttf}


# --------------------------------------------------------------------------
# Report


def ms(value):
    return f"{value:,.2f} ms" if value < 10 else f"{value:,.1f} ms"


def print_report(pg, results, startup):
    out = []
    out.append("## portguard benchmark\n")
    u = os.uname()
    out.append(f"{u.sysname} {u.release}, {os.cpu_count()} cores; `{pg}`\n")
    targets = []
    missed = []
    if results:
        out.append("| load | processes | TCP sockets | `portguard who` | `ss -Hltnp` | `lsof` "
                   "| `fuser` | who/ss (paired) |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            t = r["times"]
            ratio, _, _ = paired_ratio(t, "portguard who", "ss -Hltnp")
            out.append(
                f"| {r['load']} | {r['procs']:,} | {r['sockets']:,} "
                f"| {ms(median_ms(t['portguard who']))} | {ms(median_ms(t['ss -Hltnp']))} "
                f"| {ms(median_ms(t['lsof']))} | {ms(median_ms(t['fuser']))} | {ratio:.2f}× |")
            if r["load"] in WHO_TARGET:
                goal = WHO_TARGET[r["load"]]
                targets.append((f"who/ss at {r['load']} load ≤ {goal}", f"{ratio:.2f}",
                                ratio <= goal))
            if r["load"] == "large" and r["rss"] is not None:
                targets.append((f"peak RSS of who at large load ≤ {RSS_TARGET_MB:g} MB",
                                f"{r['rss']:.1f} MB", r["rss"] <= RSS_TARGET_MB))
            missed += r["missed"]
        for r in results:
            t = r["times"]
            out.append(f"\n### {r['load']}: {r['procs']:,} processes, {r['sockets']:,} TCP "
                       f"sockets (N={r['idle']} idle, S={r['conns']} connections, "
                       f"K+1={r['holders']} holders), {r['rounds']} rounds\n")
            out.append("| command | median | vs ss, paired (quartiles) | ratio of medians "
                       "| CPU time | CPU vs ss, paired | holders |")
            out.append("|---|---:|---:|---:|---:|---:|---|")
            c = r["cpu"]
            for name in t:
                ratio, low, high = paired_ratio(t, name, "ss -Hltnp")
                naive = median_ms(t[name]) / median_ms(t["ss -Hltnp"])
                cpu_ratio, _, _ = paired_ratio(c, name, "ss -Hltnp")
                found = "MISSED SOME" if any(m.split(": ")[1].startswith(name + " found")
                                             for m in r["missed"]) else "all"
                out.append(f"| `{name}` | {ms(median_ms(t[name]))} | {ratio:.2f}× "
                           f"({low:.2f}-{high:.2f}) | {naive:.2f}× | {ms(median_ms(c[name]))} "
                           f"| {cpu_ratio:.2f}× | {found} |")
            if r["rss"] is not None:
                out.append(f"\npeak RSS of `portguard who`: {r['rss']:.1f} MB")
    if startup:
        out.append(f"\n### start-up and the free port ({STARTUP_PAIRS} pairs each)\n")
        out.append("| command | median | `true` | paired difference (quartiles) |")
        out.append("|---|---:|---:|---:|")
        for name, t in startup["pairs"].items():
            delta, low, high = paired_delta_ms(t, name, "true")
            out.append(f"| `{name}` | {ms(median_ms(t[name]))} | {ms(median_ms(t['true']))} "
                       f"| +{delta:.2f} ms ({low:+.2f} to {high:+.2f}) |")
            if name == "portguard resolve P":
                targets.append((f"free-port resolve ≤ +{FREE_PORT_TARGET_MS:g} ms over true",
                                f"+{delta:.2f} ms", delta <= FREE_PORT_TARGET_MS))
        ttf = startup["ttf"]
        delay_ms = HOLDER_EXIT_DELAY_S * 1000
        over, _, _ = paired_delta_ms(ttf, "resolve", "own")
        out.append(
            f"\ntime-to-free ({TIME_TO_FREE_ROUNDS} rounds): `portguard resolve P --policy "
            f"bench/terminate.toml` {ms(median_ms(ttf['resolve']))} for a holder that exits "
            f"{delay_ms:.0f} ms after SIGTERM; the holder's own shutdown, timed alone: "
            f"{ms(median_ms(ttf['own']))}; paired difference +{over:.1f} ms")
        total_over = median_ms(ttf["resolve"]) - delay_ms
        targets.append((f"time-to-free ≤ {TIME_TO_FREE_TARGET_MS:g} ms over the holder's "
                        f"{delay_ms:.0f} ms", f"+{total_over:.1f} ms",
                        total_over <= TIME_TO_FREE_TARGET_MS))
    if targets:
        out.append("\n### targets\n")
        out.append("| target | measured | |")
        out.append("|---|---:|---|")
        for name, value, met in targets:
            out.append(f"| {name} | {value} | {'met' if met else 'MISSED'} |")
    for m in missed:
        out.append(f"\nholder check failed: {m}")
    print("\n".join(out))
    return 1 if missed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portguard", required=True, help="the binary to measure")
    ap.add_argument("--policy", required=True,
                    help="the policy that terminates the time-to-free stand-in holder")
    ap.add_argument("--rounds", type=int, default=0,
                    help="timed rounds per load (default: per load, 7-40)")
    ap.add_argument("sections", nargs="*",
                    help=f"any of {', '.join(SECTIONS)} (default: all)")
    a = ap.parse_args()
    sections = a.sections or SECTIONS
    for s in sections:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}: expected any of {', '.join(SECTIONS)}")
    if not 0 <= a.rounds <= 1000:
        ap.error("--rounds must be 1-1000 (or 0: each load's default)")
    tools = {}
    for tool in ("ss", "lsof", "fuser", "true"):
        tools[tool] = shutil.which(tool) or ap.error(f"{tool} is not installed")
    pg = os.path.abspath(a.portguard)
    policy = os.path.abspath(a.policy)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    tmp = tempfile.mkdtemp(prefix="portguard-bench-")
    # No ./portguard.toml, $PORTGUARD_POLICY or user config: portguard uses
    # its built-in default policy, as on a fresh machine.
    cwd = os.path.join(tmp, "cwd")
    os.makedirs(cwd)
    os.chdir(cwd)
    env = dict(os.environ)
    env.pop("PORTGUARD_POLICY", None)
    env["XDG_CONFIG_HOME"] = os.path.join(tmp, "config")
    spawner = Spawner(env)

    began = time.monotonic()
    results, startup = [], None
    try:
        for section in sections:
            if section == "startup":
                startup = run_startup(pg, policy, tools, spawner, env, tmp)
            else:
                results.append(run_load(section, pg, tools, spawner, env, tmp, a.rounds))
    except (KeyboardInterrupt, Interrupted) as why:
        log(f"interrupted ({why or 'SIGINT'}); workloads stopped")
        return 130
    finally:
        os.chdir(HERE)
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"== done in {time.monotonic() - began:.0f} s")
    return print_report(pg, results, startup)


if __name__ == "__main__":
    sys.exit(main())
