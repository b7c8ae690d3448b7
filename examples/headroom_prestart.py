#!/usr/bin/env python3
"""How `headroom wrap` would call portguard before it starts its proxy.

    headroom_prestart.py PORTGUARD PORT POLICY PROXY_CMD [ARG...]

Any of PORTGUARD, PORT, POLICY and PROXY_CMD may instead come from the
environment (PROXY_CMD split like a shell would), e.g. PORTGUARD=portguard
PORT=8787 POLICY=headroom PROXY_CMD="python3 -m headroom.cli proxy --port 8787".

It runs `portguard resolve PORT --policy POLICY --format json` and acts on the
exit code (README "Using it from headroom wrap", SPEC "Exit codes"):

  0     the port is free (it was, or a stale proxy was stopped): start the
        proxy detached in its own session, as `headroom wrap` does
  3     a healthy proxy the policy accepts holds the port: reuse it
  4, 5  refused / failed: show portguard's message and stop
  2, 70 usage or policy error / portguard bug: show its stderr and stop

Exits with portguard's code. The proxy's output goes to $PROXY_LOG (default:
discarded). With PRESTART_STAY=1 it stays the proxy's parent until the proxy
exits, as `headroom wrap` does while the agent runs. Standard library only.
"""
import json
import os
import shlex
import subprocess
import sys


def prestart(portguard: str, port: int, policy: str, proxy_cmd: list) -> int:
    run = subprocess.run(
        [portguard, "resolve", str(port), "--policy", policy, "--format", "json"],
        capture_output=True, text=True, timeout=120,
    )
    if run.returncode == 0:  # free, or a stale proxy was terminated: start ours
        with open(os.environ.get("PROXY_LOG", os.devnull), "ab") as log:
            proxy = subprocess.Popen(proxy_cmd, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log, start_new_session=True)
        print(f"start: port {port} is free, started proxy pid {proxy.pid}", flush=True)
        if os.environ.get("PRESTART_STAY") == "1":
            proxy.wait()  # `headroom wrap` runs the agent here, the proxy's parent
        return 0
    if run.returncode == 3:  # a healthy proxy the policy accepts: use it
        report = json.loads(run.stdout)["ports"][0]
        pids = ", ".join(str(h["pid"]) for h in report["holders"])
        print(f"reuse: proxy pid {pids} already serves port {port}", flush=True)
        return 3
    if run.returncode in (4, 5):  # refused / failed: portguard says who holds it
        message = json.loads(run.stdout)["ports"][0]["message"]
        print(f"stop (exit {run.returncode}): {message}", file=sys.stderr)
        return run.returncode
    print(f"stop (exit {run.returncode}): {run.stderr.strip()}", file=sys.stderr)
    return run.returncode  # 2: usage or policy error, 70: a portguard bug


if __name__ == "__main__":
    args = sys.argv[1:]
    portguard = args.pop(0) if args else os.environ["PORTGUARD"]
    port = int(args.pop(0) if args else os.environ["PORT"])
    policy = args.pop(0) if args else os.environ.get("POLICY", "headroom")
    proxy_cmd = args or shlex.split(os.environ["PROXY_CMD"])
    sys.exit(prestart(portguard, port, policy, proxy_cmd))
