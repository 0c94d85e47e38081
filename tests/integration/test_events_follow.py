"""`mcp-agent events --follow` (SPEC §10): with a daemon answering on
[agent] socket it prints the backlog from the registry, then follows the
daemon's WatchEvents stream (core.api.watch, the CLI's streaming gRPC
client); without one it polls the registry.

Fake runtime (`container_runtime = "fake"`), so no podman. Events are caused
through the CLI (deploy, stop, start, restart go to the daemon); every test
checks that what the follower printed is exactly the event log (`events
--json` afterwards): nothing lost or doubled across the switch from backlog to
stream. A killed daemon ends the follower with exit 1 and a message naming
the socket; SIGTERM/SIGINT to the follower end it with exit 0. Run against the
ASan build by pointing MCP_AGENT_BIN at it: every process's stderr is checked
for sanitizer reports.
"""
import json
import os
import queue
import signal
import subprocess
import threading
import time
import unittest

import agent_env
import test_daemon as td

ARRIVAL_S = 10  # bound for one event to reach the follower (noisy shared machine)


WATCH_SCRIPT = """
local core = require "mcp.core"
local sock, nobody = arg[1], arg[2]
local W = "/mcp.agent.v1.AgentService/WatchEvents"
local s <close> = core.api.watch(sock, W, { service = "", since_unix_ms = 1 })
local e = s:next(10)
print("first", e.kind, e.service, e.time_unix_ms > 1.6e12)
local x, why
repeat x, why = s:next(0.3) until not x
print("then", why)
s:close()
print("closed", s:next(1))
local ok, err = pcall(s.next, s, -1)
print("argerr", ok, err:find("timeout must be") ~= nil)
ok, err = pcall(core.api.watch, sock, "/nope.Svc/X", {})
print("badmethod", ok, err:find("not a method") ~= nil)
local bad <close> = core.api.watch(nobody, W, {})
local v, what, status = bad:next(10)
print("nobody", v, what, status)
local one <close> = core.api.watch(sock, "/mcp.agent.v1.AgentService/NodeStatus", {})
local m = one:next(10)
v, what, status = one:next(10)
print("unary", m ~= nil, v, what, status)
"""


class Follower:
    """A background `events --follow --json [SERVICE]`; stdout read line by line."""

    def __init__(self, env, *args, extra_env=None):
        self.proc = env.start("events", "--follow", "--json", *args, env=extra_env)
        self.lines = queue.Queue()
        self.seen = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_event(self, timeout=ARRIVAL_S):
        """The next event printed, as a dict; fails after timeout."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no event within %ss; so far: %r" % (timeout, self.seen))
        if line is None:
            raise AssertionError("the follower ended; so far: %r" % self.seen)
        event = json.loads(line)
        self.seen.append(event)
        return event

    def wait_for(self, kind, service, timeout=ARRIVAL_S):
        """Reads events until one of kind for service; returns it."""
        end = time.monotonic() + timeout
        while True:
            e = self.next_event(max(0.1, end - time.monotonic()))
            if e["kind"] == kind and e["service"] == service:
                return e

    def drain(self, quiet=0.5):
        """Reads what is still coming until quiet seconds without a line."""
        while True:
            try:
                line = self.lines.get(timeout=quiet)
            except queue.Empty:
                return
            if line is None:
                return
            self.seen.append(json.loads(line))

    def finish(self, timeout=15):
        """Waits for the exit; returns (rc, stderr). Kills and fails on timeout."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("events --follow did not exit within %ss" % timeout)
        self.reader.join(5)
        while True:
            line = self.lines.get_nowait() if not self.lines.empty() else None
            if line is None:
                break
            self.seen.append(json.loads(line))
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        agent_env.check_health(self.proc.mcp_argv, rc, err)
        return rc, err


class EventsFollowTest(td.DaemonTestCase):

    def setUp(self):
        super().setUp()
        td.daemon_config(self.env)
        self.files = {name: self.env.write("%s.toml" % name, td.service_toml(name, route=False))
                      for name in ("alpha", "beta")}
        self.followers = []
        self.addCleanup(self._stop_followers)

    def _stop_followers(self):
        for f in self.followers:
            if f.proc.poll() is None:
                f.proc.kill()
                f.proc.wait()
                f.proc.stdout.close()
                f.proc.stderr.close()

    def follower(self, *args, **kw):
        f = Follower(self.env, *args, **kw)
        self.followers.append(f)
        return f

    def cli(self, *args, env=None):
        r = self.env.run(*args, env=env)
        self.assertEqual(r.rc, 0, "%s: %s" % (args, r.stderr))
        return r

    def event_log(self, *args):
        """The whole event log as `events --json` prints it (oldest first)."""
        r = self.cli("events", "--json", *args)
        return [json.loads(line) for line in r.stdout.splitlines()]

    def start_daemon(self):
        return self.daemon().wait_boot_done()

    # ---- tests ----

    def test_watch_binding_answers(self):
        """core.api.watch / stream:next through `eval`: a message, a bounded
        wait that times out, close -> "cancelled", misuse raises, nobody on
        the socket -> "closed" UNAVAILABLE, a unary method is a stream of one."""
        self.start_daemon()
        self.cli("deploy", self.files["alpha"])
        script = self.env.write("watch.lua", WATCH_SCRIPT)
        r = self.cli("eval", script, self.env.socket, self.env.path("nobody.sock"))
        self.assertEqual(r.stdout.splitlines(), [
            "first\tdeployed\talpha\ttrue",
            "then\ttimeout",
            "closed\tnil\tcancelled",
            "argerr\tfalse\ttrue",
            "badmethod\tfalse\ttrue",
            "nobody\tnil\tclosed\t14",
            "unary\ttrue\tnil\tclosed\t0",
        ])

    def test_backlog_then_stream_in_order_exactly_once(self):
        self.start_daemon()
        self.cli("deploy", self.files["alpha"])
        f = self.follower()
        f.wait_for("deployed", "alpha")  # the backlog, from the registry
        self.cli("deploy", self.files["beta"])
        self.assertEqual(f.wait_for("deployed", "beta")["kind"], "deployed")
        self.cli("stop", "alpha")
        stop = f.wait_for("stop", "alpha")
        self.cli("start", "alpha")
        start = f.wait_for("start", "alpha")
        self.cli("restart", "beta")
        restart = f.wait_for("restart", "beta")
        self.assertLessEqual(stop["time"], start["time"])
        self.assertLessEqual(start["time"], restart["time"])
        f.drain()
        self.assertEqual(f.seen, self.event_log())
        f.proc.send_signal(signal.SIGTERM)
        rc, err = f.finish()
        self.assertEqual(rc, 0, err)
        self.assertNotIn("cancelled", err)

    def test_switch_during_a_burst_loses_and_doubles_nothing(self):
        """Followers start while the daemon stores events as fast as the CLI
        makes them: whenever the backlog ends, each ends up printing exactly
        the log (and the SERVICE filter holds across the switch)."""
        self.start_daemon()
        self.cli("deploy", self.files["alpha"], self.files["beta"])
        followers = []
        for i in range(8):
            followers.append(self.follower())
            if i % 2:
                followers.append(self.follower("alpha"))
            self.cli("restart", "alpha" if i % 2 else "beta")
        self.cli("stop", "beta")
        for f in followers:
            f.drain(quiet=1.0)
        log, alpha_log = self.event_log(), self.event_log("alpha")
        self.assertIn("stop", [e["kind"] for e in log])
        for f in followers:
            filtered = "alpha" in f.proc.mcp_argv
            self.assertEqual(f.seen, alpha_log if filtered else log)
            f.proc.send_signal(signal.SIGINT)
            rc, err = f.finish()
            self.assertEqual(rc, 0, err)

    def test_killed_daemon_ends_follow_with_exit_1(self):
        """The daemon is the stream's source: once it is gone the follower
        says so and exits 1 (rather than wait for ever, or fall back to a
        registry nobody writes; run it again once a daemon is back)."""
        d = self.start_daemon()
        self.cli("deploy", self.files["alpha"])
        f = self.follower()
        f.wait_for("deployed", "alpha")
        self.cli("stop", "alpha")
        f.wait_for("stop", "alpha")
        d.kill()
        start = time.monotonic()
        rc, err = f.finish(timeout=ARRIVAL_S)
        self.assertLess(time.monotonic() - start, ARRIVAL_S)
        self.assertEqual(rc, 1, err)
        self.assertIn("events: the daemon on %s ended the stream" % self.env.socket, err)
        self.assertIn("UNAVAILABLE", err)

    def test_stopped_daemon_ends_follow_with_exit_1(self):
        d = self.start_daemon()
        f = self.follower()
        self.cli("deploy", self.files["alpha"])
        f.wait_for("deployed", "alpha")
        self.assertEqual(d.stop(), 0, d.log())
        rc, err = f.finish(timeout=ARRIVAL_S)
        self.assertEqual(rc, 1, err)
        self.assertIn("ended the stream", err)

    def test_without_daemon_follow_polls_the_registry(self):
        local = {"MCP_AGENT_LOCAL": "1"}
        self.cli("deploy", self.files["alpha"], env=local)
        f = self.follower()  # no daemon on the socket: polls
        f.wait_for("deployed", "alpha")
        self.cli("deploy", self.files["beta"], env=local)
        f.wait_for("deployed", "beta")
        self.cli("stop", "beta", env=local)
        f.wait_for("stop", "beta")
        f.drain()
        self.assertEqual(f.seen, self.event_log())
        f.proc.send_signal(signal.SIGTERM)
        rc, err = f.finish()
        self.assertEqual(rc, 0, err)

    def test_sigterm_before_any_event_exits_0(self):
        self.start_daemon()
        f = self.follower()
        time.sleep(0.5)  # connected and waiting on an empty stream
        f.proc.send_signal(signal.SIGTERM)
        rc, err = f.finish()
        self.assertEqual(rc, 0, err)
        self.assertEqual(f.seen, [])


if __name__ == "__main__":
    unittest.main()
