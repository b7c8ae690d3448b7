"""Unit tests of the portguard hook in a patched `headroom/cli/wrap.py`.

    PYTHONPATH=<site-packages with the patch applied> python test_portguard_hook.py

Every outcome of `_portguard_prestart`, driven by a fake portguard (this file,
run as a script with FAKE_PORTGUARD_MODE set), with no proxy and no network.
`scripts/e2e-wrap.sh` runs it before its scenarios against the real wrap.
Standard library only (unittest).
"""

import contextlib
import io
import json
import os
import socket
import stat
import sys
import tempfile
import time
import unittest


def report(code, outcome, message, **extra):
    port = {"port": 1, "protocol": "tcp", "outcome": outcome, "message": message, **extra}
    return json.dumps({"exit_code": code, "ports": [port]})


def fake_portguard() -> None:
    """Stands in for portguard: behaves as FAKE_PORTGUARD_MODE says."""
    mode = os.environ["FAKE_PORTGUARD_MODE"]
    with open(os.environ["FAKE_PORTGUARD_LOG"], "a") as log:
        log.write(" ".join(sys.argv[1:]) + "\n")
    if mode == "free":
        print(report(0, "free", "port is free"))
        sys.exit(0)
    if mode == "reuse":
        print(report(3, "reuse", "reuse it (rule live)"))
        sys.exit(3)
    if mode == "refused":
        print(report(4, "refused", "port is held by pid 42 (nginx), leaving it alone"))
        sys.exit(4)
    if mode == "failed":
        print(report(5, "failed", "pid 42 survived SIGKILL", reason="timeout"))
        sys.exit(5)
    if mode == "time_wait":
        print(report(5, "failed", "only TIME_WAIT sockets block the port", reason="time_wait"))
        sys.exit(5)
    if mode == "usage":
        print(json.dumps({"exit_code": 2, "error": "policy error: no such policy"}))
        sys.exit(2)
    if mode == "bug":
        print("internal error", file=sys.stderr)
        sys.exit(70)
    if mode == "garbage":
        print("this is not JSON")
        sys.exit(0)
    if mode == "hang":                      # report on SIGTERM, as portguard does
        import signal

        def stop(*_):
            print(report(5, "failed", "interrupted while waiting for pid 42"))
            sys.exit(5)

        signal.signal(signal.SIGTERM, stop)
        time.sleep(60)
    sys.exit(99)


class PortguardHook(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import headroom.cli.wrap as wrap

        cls.wrap = wrap
        cls.tmp = tempfile.TemporaryDirectory()
        cls.fake = os.path.join(cls.tmp.name, "portguard")
        with open(cls.fake, "w") as f:
            f.write(f"#!{sys.executable}\nimport runpy, sys\n"
                    f"sys.argv[0] = {os.path.abspath(__file__)!r}\n"
                    f"runpy.run_path(sys.argv[0], run_name='__fake__')\n")
        os.chmod(cls.fake, os.stat(cls.fake).st_mode | stat.S_IXUSR)
        cls.log = os.path.join(cls.tmp.name, "calls.log")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        self.env = dict(os.environ)
        for name in ("HEADROOM_PORTGUARD", "HEADROOM_PORTGUARD_POLICY"):
            os.environ.pop(name, None)
        os.environ["FAKE_PORTGUARD_LOG"] = self.log
        open(self.log, "w").close()
        with socket.socket() as s:          # a free port, released again
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

    def tearDown(self):
        os.environ.clear()
        os.environ.update(self.env)

    def run_hook(self, mode, setting=None):
        os.environ["FAKE_PORTGUARD_MODE"] = mode
        os.environ["HEADROOM_PORTGUARD"] = setting or self.fake
        self.out = io.StringIO()              # kept for tests where the hook raises
        with contextlib.redirect_stdout(self.out):
            result = self.wrap._portguard_prestart(self.port)
        return result, self.out.getvalue()

    def calls(self):
        with open(self.log) as f:
            return f.read().splitlines()

    def test_unset_or_zero_is_stock(self):
        for setting in (None, "", "0"):
            os.environ.pop("HEADROOM_PORTGUARD", None)
            if setting is not None:
                os.environ["HEADROOM_PORTGUARD"] = setting
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                self.assertFalse(self.wrap._portguard_prestart(self.port))
            self.assertEqual(out.getvalue(), "")
        self.assertEqual(self.calls(), [])

    def test_free_starts_on_the_port(self):
        result, out = self.run_hook("free")
        self.assertTrue(result)
        self.assertIn("portguard: port is free", out)
        self.assertEqual(self.calls(), [f"resolve {self.port} --policy headroom --format json"])

    def test_policy_variable(self):
        os.environ["HEADROOM_PORTGUARD_POLICY"] = "headroom-reuse"
        self.run_hook("free")
        self.assertEqual(self.calls(), [f"resolve {self.port} --policy headroom-reuse --format json"])

    def test_free_but_not_bindable_is_stock(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", self.port))
            s.listen()
            result, out = self.run_hook("free")
        self.assertFalse(result)
        self.assertIn(f"Warning: port {self.port} is free but cannot be bound", out)

    def test_reuse_continues_into_wraps_reuse_path(self):
        result, out = self.run_hook("reuse")
        self.assertFalse(result)
        self.assertIn("portguard: reuse it (rule live)", out)

    def test_refused_and_failed_stop_with_portguards_message(self):
        import click

        for mode, text in (("refused", "held by pid 42 (nginx)"), ("failed", "survived SIGKILL")):
            with self.assertRaises(click.ClickException) as caught:
                self.run_hook(mode)
            message = caught.exception.message
            self.assertIn(f"Port {self.port} is not available to the Headroom proxy", message)
            self.assertIn(text, message)
            self.assertEqual(self.out.getvalue(), "")    # said once, by the error

    def test_time_wait_takes_the_stock_path(self):
        result, out = self.run_hook("time_wait")
        self.assertFalse(result)
        self.assertIn("only TIME_WAIT", out)

    def test_errors_warn_and_fall_back(self):
        for mode, text in (("usage", "exited 2"), ("bug", "exited 70: internal error"),
                           ("garbage", "exited 0: this is not JSON")):
            result, out = self.run_hook(mode)
            self.assertFalse(result, mode)
            self.assertIn(f"Warning: portguard {text}", out)
            self.assertIn("continuing without portguard", out)

    def test_missing_binary_warns(self):
        result, out = self.run_hook("free", setting=os.path.join(self.tmp.name, "nope"))
        self.assertFalse(result)
        self.assertIn("Warning: cannot run portguard", out)
        os.environ["PATH"] = self.tmp.name + "-empty"
        result, out = self.run_hook("free", setting="1")
        self.assertFalse(result)
        self.assertIn("portguard is not on PATH", out)

    def test_one_means_portguard_on_path(self):
        os.environ["PATH"] = self.tmp.name + os.pathsep + os.environ.get("PATH", "")
        result, _ = self.run_hook("free", setting="1")
        self.assertTrue(result)

    def test_timeout_sends_sigterm_reads_the_report_and_falls_back(self):
        saved = self.wrap._PORTGUARD_BUILTIN_WAIT_SECONDS
        self.wrap._PORTGUARD_BUILTIN_WAIT_SECONDS = 1
        try:
            t0 = time.monotonic()
            result, out = self.run_hook("hang")
            took = time.monotonic() - t0
        finally:
            self.wrap._PORTGUARD_BUILTIN_WAIT_SECONDS = saved
        self.assertFalse(result)
        self.assertIn("did not finish within 1 s: interrupted while waiting for pid 42", out)
        self.assertLess(took, 10)

    def test_file_policies_get_the_longer_bound(self):
        self.assertEqual(self.wrap._PORTGUARD_BUILTIN_WAIT_SECONDS, 20)
        self.assertGreaterEqual(self.wrap._PORTGUARD_FILE_WAIT_SECONDS, 60)


if __name__ == "__fake__":
    fake_portguard()
elif __name__ == "__main__":
    unittest.main(verbosity=2)
