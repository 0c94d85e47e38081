"""systemd's side of `Type=notify` (SPEC §11): a unix datagram socket as
NOTIFY_SOCKET receives READY=1 only after boot, STATUS= progress,
RELOADING=1/READY=1 around SIGHUP, STOPPING=1 at SIGTERM, and WATCHDOG=1
from the event loop at half of WATCHDOG_USEC — which stop while the loop is
blocked. Fake runtime: no podman."""
import os
import signal
import socket
import time
import unittest

from agent_env import AgentTestCase
from test_daemon import Daemon, daemon_config


class NotifySocket:
    """A bound AF_UNIX datagram socket; messages come back with receive times."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.got = []  # (monotonic time, text)

    def close(self):
        self.sock.close()

    def read_until(self, predicate, timeout=20, on_message=None):
        """Reads messages until predicate(text) holds for one; returns it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                break
            text = data.decode()
            self.got.append((time.monotonic(), text))
            if on_message:
                on_message(text)
            if predicate(text):
                return text
        raise AssertionError("no matching notify message in %ss; got %r"
                             % (timeout, [t for _, t in self.got]))

    def texts(self, skip_watchdog=True):
        return [t for _, t in self.got if not (skip_watchdog and t == "WATCHDOG=1")]


class NotifyCase(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.notify = NotifySocket(self.env.path("notify.sock"))
        self.addCleanup(self.notify.close)
        self.notify_env = {"NOTIFY_SOCKET": self.notify.path}


class DaemonNotifies(NotifyCase):
    def test_ready_after_boot_then_reload_and_stop(self):
        # a stage whose service is not there: boot waits, then times out
        daemon_config(self.env, boot=[("foundation", ["ghost"], "1s", "tcp")])
        d = Daemon(self.env, extra_env=self.notify_env)
        self.addCleanup(d.proc.kill)
        boot_logged_at_ready = []
        self.notify.read_until(
            lambda t: t.startswith("READY=1"),
            on_message=lambda t: t.startswith("READY=1") and boot_logged_at_ready.append(
                "boot finished" in d.log()))
        self.assertEqual(boot_logged_at_ready, [True], d.log())
        texts = self.notify.texts()
        self.assertEqual(texts[:2], ["STATUS=booting", "STATUS=booting: stage foundation"])
        self.assertRegex(texts[2], r"^READY=1\nSTATUS=(booted|boot failed); 0 services; serving ")

        os.kill(d.pid, signal.SIGHUP)
        self.notify.read_until(lambda t: t.startswith("READY=1"))
        reload = self.notify.texts()[3:]
        self.assertRegex(reload[0], r"^RELOADING=1\nMONOTONIC_USEC=\d+$")
        self.assertEqual(reload[1], "READY=1\nSTATUS=policies reloaded")

        os.kill(d.pid, signal.SIGTERM)
        self.notify.read_until(lambda t: t == "STOPPING=1")
        self.assertEqual(d.proc.wait(timeout=20), 0, d.log())
        self.assertNotIn("WATCHDOG=1", self.notify.texts(skip_watchdog=False))  # none asked for

    def test_nothing_is_sent_without_notify_socket(self):
        daemon_config(self.env)
        d = Daemon(self.env).wait_ready()
        self.addCleanup(d.proc.kill)
        os.kill(d.pid, signal.SIGTERM)
        self.assertEqual(d.proc.wait(timeout=20), 0, d.log())
        self.notify.sock.settimeout(0.2)
        with self.assertRaises(socket.timeout):
            self.notify.sock.recv(4096)


# Sleeps (the loop turns), then blocks the loop for a while without
# yielding, then sleeps again; STATUS lines mark the phases.
BLOCKING_SCRIPT = """
local core = require "mcp.core"
agent.clock.sleep(1.2)
core.notify.status("block")
local t = os.clock()
while os.clock() - t < 1.2 do end
core.notify.status("unblock")
-- the loop's clock is stale after the block: a short sleep refreshes it so
-- the next one really lasts 0.8 s
agent.clock.sleep(0.01)
agent.clock.sleep(0.8)
"""


class Watchdog(NotifyCase):
    def test_pings_at_half_the_interval_and_stop_while_the_loop_is_blocked(self):
        self.env.write_config()
        env = dict(self.notify_env, WATCHDOG_USEC="400000")  # pings every 0.2 s
        proc = self.env.start("eval", "-e", BLOCKING_SCRIPT, env=env)
        self.addCleanup(proc.kill)
        self.notify.read_until(lambda t: t == "STATUS=unblock", timeout=20)
        r = self.env.finish(proc)
        self.assertEqual(r.rc, 0, r.stderr)
        self.notify.sock.settimeout(0.1)
        try:
            while True:
                self.notify.got.append((time.monotonic(), self.notify.sock.recv(4096).decode()))
        except socket.timeout:
            pass
        texts = [t for _, t in self.notify.got]
        block, unblock = texts.index("STATUS=block"), texts.index("STATUS=unblock")
        before = [at for at, t in self.notify.got[:block] if t == "WATCHDOG=1"]
        during = [t for t in texts[block:unblock] if t == "WATCHDOG=1"]
        after = [t for t in texts[unblock:] if t == "WATCHDOG=1"]
        # 1.2 s at one ping per 0.2 s (the first at once): about 7
        self.assertGreaterEqual(len(before), 4, texts)
        self.assertLessEqual(len(before), 9, texts)
        # receive times on a loaded machine are rough: the mean gap only
        gaps = [b - a for a, b in zip(before, before[1:])]
        self.assertGreater(sum(gaps) / len(gaps), 0.1, gaps)
        self.assertLess(sum(gaps) / len(gaps), 0.4, gaps)
        self.assertEqual(during, [], texts)
        self.assertGreaterEqual(len(after), 2, texts)

    def test_watchdog_for_another_pid_is_ignored(self):
        self.env.write_config()
        env = dict(self.notify_env, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
        r = self.env.run("eval", "-e", "agent.clock.sleep(0.5)", env=env)
        self.assertEqual(r.rc, 0, r.stderr)
        self.notify.sock.settimeout(0.2)
        with self.assertRaises(socket.timeout):
            self.notify.sock.recv(4096)


if __name__ == "__main__":
    unittest.main()
