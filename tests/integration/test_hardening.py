"""Issue 14 hardening, end to end on the real binary (fake runtime, no podman):

- the lock-out attack: 300 bare TCP connects to the TLS port, then 256
  plaintext connections that send the preface and go idle; the CLI over the
  unix socket still answers within 2 s (item 1);
- a TLS key readable by others is warned about, a policy dir writable by group
  or others is refused (item 8);
- misuse of the primitives raises naming the argument (item 10);
- a registry locked for longer than the busy timeout exits 1 naming the holder
  (item 11).
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest

from agent_env import FIXTURES, AgentTestCase
from test_daemon import DaemonTestCase, certs, daemon_config, free_port

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def connect_many(port, n, payload=None):
    """n TCP connections to 127.0.0.1:port, each sending payload (if any); refused
    or reset ones are fine: the server may close them at once."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
            if payload:
                s.sendall(payload)
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


class LockOutTest(DaemonTestCase):
    def cli_answers_quickly(self):
        start = time.monotonic()
        r = self.env.run("ls", timeout=10)
        took = time.monotonic() - start
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertLess(took, 2.0, "the CLI took %.1f s under the flood" % took)
        return r

    def flood(self, port, payload, n):
        socks = connect_many(port, n, payload)
        self.addCleanup(lambda: [s.close() for s in socks])
        time.sleep(0.5)  # the daemon has accepted (or refused) them all
        return socks

    def test_bare_connects_to_the_tls_port_leave_the_cli_in(self):
        port = free_port()
        daemon_config(self.env, grpc_addr="127.0.0.1:%d" % port, tls=True)
        d = self.daemon()
        self.flood(port, None, 300)
        self.cli_answers_quickly()
        self.assertIn("grpc: refusing connections", d.log())

    def test_idle_plaintext_connections_leave_the_cli_in(self):
        port = free_port()
        daemon_config(self.env, grpc_addr="127.0.0.1:%d" % port, insecure_loopback=True)
        d = self.daemon()
        self.flood(port, PREFACE, 256)
        self.cli_answers_quickly()
        # the TCP port itself still serves another peer address's client
        self.assertIn("per-peer connection limit", d.log())


class PermissionsTest(DaemonTestCase):
    def test_a_readable_tls_key_is_warned_about(self):
        key = self.env.path("server.key")
        shutil.copyfile(os.path.join(certs(), "server.key"), key)
        os.chmod(key, 0o644)
        port = free_port()
        daemon_config(self.env, grpc_addr="127.0.0.1:%d" % port, tls=True)
        text = open(self.env.config).read().replace(os.path.join(certs(), "server.key"), key)
        self.env.write("mcp-agent.toml", text)
        d = self.daemon()
        self.assertTrue(d.wait_log("the private key is readable by group or others", timeout=5),
                        d.log())
        self.assertIn("chmod 600 " + key, d.log())

    def test_a_private_tls_key_is_not_warned_about(self):
        port = free_port()
        daemon_config(self.env, grpc_addr="127.0.0.1:%d" % port, tls=True)
        os.chmod(os.path.join(certs(), "server.key"), 0o600)
        d = self.daemon()
        self.assertNotIn("the private key is readable", d.log())

    def test_the_registry_is_private_whatever_the_umask(self):
        daemon_config(self.env)
        self.env.write("web.toml", 'name = "web"\n[[components]]\nname = "app"\nimage = "nginx:1"\n')
        old = os.umask(0)
        try:
            r = self.local("deploy", self.env.path("web.toml"))
        finally:
            os.umask(old)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(os.stat(self.env.db).st_mode & 0o777, 0o600)


GOOD_POLICY = os.path.join(FIXTURES, "bad", "policy_good.lua")


class PolicyDirTest(AgentTestCase):
    def test_a_group_or_world_writable_policy_dir_is_refused(self):
        pol = self.env.path("policies")
        os.makedirs(pol)
        shutil.copyfile(GOOD_POLICY, os.path.join(pol, "recover.lua"))
        os.chmod(os.path.join(pol, "recover.lua"), 0o644)
        self.env.write_config(policy_dir=pol)
        os.chmod(pol, 0o755)
        r = self.env.run("recover", timeout=20)
        self.assertEqual(r.rc, 0, r.stderr)  # the control: a private dir is fine
        self.assertIn("operator recover policy ran", r.stdout)
        for mode in (0o775, 0o757):
            os.chmod(pol, mode)
            for cmd in ("recover", "check"):
                r = self.env.run(cmd, timeout=20)
                self.assertEqual(r.rc, 2, r.stdout + r.stderr)
                self.assertMentions(r.stderr, pol, "chmod go-w", "%04o" % mode)
                self.assertNotIn("operator recover policy ran", r.stdout)
        os.chmod(pol, 0o755)


class PrimitiveArgumentsTest(AgentTestCase):
    """Misuse raises luaL_argerror naming the argument, through `eval` (the real bindings)."""

    def setUp(self):
        super().setUp()
        # a podman that is not there: a check that let the call through would say "podman not found"
        self.env.write_config(runtime="podman", podman=self.env.path("no-podman"))

    def eval(self, code):
        self.env.write("s.lua", code + "\n")
        return self.env.run("eval", self.env.path("s.lua"), timeout=20)

    def assertRaisesNaming(self, code, *needles):
        r = self.eval(code)
        self.assertNotEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertNotIn("podman not found", r.stderr)
        self.assertMentions(r.stderr, "bad argument", *needles)

    def test_container_names(self):
        self.assertRaisesNaming('agent.runtime.inspect(string.rep("a", 100000))', "#1", "'inspect'",
                                "container name")
        self.assertRaisesNaming('agent.runtime.start("web\\0app")', "#1", "'start'", "NUL")
        self.assertRaisesNaming('agent.runtime.remove("-rf")', "#1", "'remove'")
        self.assertRaisesNaming('agent.runtime.run({name = "a\\0b", image = "x"})', "#1", "spec.name")
        self.assertRaisesNaming('agent.runtime.run({name = "a", image = "-x"})', "#1", "spec.image")
        self.assertRaisesNaming('agent.runtime.image_exists("nginx latest")', "#1", "image")

    def test_stop_timeout(self):
        self.assertRaisesNaming('agent.runtime.stop("web-app", -1)', "#2", "'stop'", "timeout")

    def test_well_formed_calls_still_reach_the_runtime(self):
        r = self.eval('print(agent.runtime.inspect("web-app"))')
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("podman not found", r.stdout)

    def test_registry_arguments(self):
        self.assertRaisesNaming("agent.registry.set_desired(nil, nil, 5)", "#1", "'set_desired'",
                                "service")
        self.assertRaisesNaming('agent.registry.set_desired("web", nil, 5)', "#3", "state")
        self.assertRaisesNaming('agent.registry.set_desired("Web!", nil, "running")', "#1",
                                "name as in service files")
        self.assertRaisesNaming("agent.registry.event(1, 2, 3, 4)", "#1", "'event'", "service")
        self.assertRaisesNaming('agent.registry.event("web", nil, 3, 4)', "#3", "kind")
        self.assertRaisesNaming('agent.registry.event("web", nil, "note", 4)', "#4", "message")
        r = self.eval('print(agent.registry.event("web", nil, "note", "fine"))\n'
                      'print(agent.registry.service("Not a name"))')
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["true", "nil"])


class LockedRegistryTest(AgentTestCase):
    def test_a_locked_registry_exits_1_naming_the_holder(self):
        self.env.write_config()
        self.env.write("web.toml", 'name = "web"\n[[components]]\nname = "app"\nimage = "nginx:1"\n')
        r = self.env.run("deploy", self.env.path("web.toml"), env={"MCP_AGENT_LOCAL": "1"})
        self.assertEqual(r.rc, 0, r.stderr)
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import sqlite3, sys, time\n"
             "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
             "c.execute('BEGIN EXCLUSIVE')\n"
             "print('locked', flush=True)\n"
             "time.sleep(60)\n", self.env.db],
            stdout=subprocess.PIPE, text=True)
        self.addCleanup(holder.wait)
        self.addCleanup(holder.kill)
        self.assertEqual(holder.stdout.readline().strip(), "locked")
        r = self.env.run("ls", env={"MCP_AGENT_LOCAL": "1"}, timeout=30)
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        self.assertMentions(r.stderr, "database is locked", "pid %d" % holder.pid, "python")


if __name__ == "__main__":
    unittest.main()
