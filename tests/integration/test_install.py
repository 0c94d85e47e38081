"""Installing mcp-agent like a system service (SPEC §11): a relocatable
install that finds its lua/ and policies/ beside itself, the unit verified by
systemd-analyze, the example config kept when one exists, and the socket's
runtime directory created when missing."""
import json
import os
import shutil
import signal
import subprocess
import time
import unittest

from agent_env import AgentTestCase, SOURCE_DIR, check_health, sanitizer_env, toml_str
from install_env import install, remove, run_hidden, scratch_dir


def agent_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("MCP_AGENT_CONFIG", "MCP_AGENT_DATADIR")}
    return sanitizer_env(env)


class RelocatableInstall(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = scratch_dir("install")
        cls.first = os.path.join(cls.root, "first")
        install(cls.first)
        # moved after installing: nothing may point back at the first prefix
        cls.prefix = os.path.join(cls.root, "moved")
        os.rename(cls.first, cls.prefix)
        cls.bin = os.path.join(cls.prefix, "bin", "mcp-agent")

    @classmethod
    def tearDownClass(cls):
        remove(cls.root)

    def run_agent(self, *args, env=None):
        argv = [self.bin] + list(args)
        r = run_hidden(argv, env=env or agent_env())
        check_health(argv, r.returncode, r.stderr)
        return r

    def test_layout(self):
        for rel in ("bin/mcp-agent", "share/mcp-agent/lua/mcp/host/cli.lua",
                    "share/mcp-agent/policies/recover.lua", "etc/mcp-agent/mcp-agent.toml",
                    "lib/systemd/system/mcp-agent.service"):
            self.assertTrue(os.path.isfile(os.path.join(self.prefix, rel)), rel)

    def test_version_verbose_names_the_installed_data_dir(self):
        r = self.run_agent("version", "--verbose")
        self.assertEqual(r.returncode, 0, r.stderr)
        lua = os.path.join(self.prefix, "share", "mcp-agent", "lua")
        self.assertIn("lua library: %s (relative to the binary)" % lua, r.stdout)
        self.assertNotIn(SOURCE_DIR, r.stdout)
        self.assertRegex(r.stdout, r"^mcp-agent \d+\.\d+\.\d+ \(commit ([0-9a-f]+|unknown)\)")
        self.assertRegex(r.stdout, r"lua 5\.4\.\d+, sqlite 3\.\d+\.\d+, libuv 1\.\d+\.\d+, podman ")

    def test_version_json(self):
        r = self.run_agent("version", "--json", "--verbose")
        self.assertEqual(r.returncode, 0, r.stderr)
        v = json.loads(r.stdout)
        self.assertLessEqual({"version", "commit", "lua", "sqlite", "libuv", "podman"}, set(v))
        self.assertEqual(v["paths"]["datadir"], os.path.join(self.prefix, "share", "mcp-agent"))
        self.assertEqual(v["paths"]["origin"], "relative to the binary")

    def test_check_with_the_example_config_from_the_installed_tree(self):
        conf = os.path.join(self.prefix, "etc", "mcp-agent", "mcp-agent.toml")
        r = self.run_agent("-c", conf, "check")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        policies = os.path.join(self.prefix, "share", "mcp-agent", "policies")
        self.assertIn("built-in policies: %s" % policies, r.stdout)
        self.assertIn("test is successful", r.stdout)
        self.assertNotIn("warning", r.stderr.lower())

    def test_eval_loads_the_installed_lua(self):
        r = self.run_agent("eval", "-e", 'print(package.searchpath("mcp.host.cli", package.path))')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), os.path.join(
            self.prefix, "share", "mcp-agent", "lua", "mcp", "host", "cli.lua"))

    def test_missing_data_dir_is_named(self):
        other = os.path.join(self.root, "lonely", "bin")
        os.makedirs(other, exist_ok=True)
        shutil.copy(self.bin, other)
        r = run_hidden([os.path.join(other, "mcp-agent"), "check"], env=agent_env())
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(os.path.join(self.root, "lonely", "share", "mcp-agent", "lua"), r.stderr)
        self.assertIn("MCP_AGENT_DATADIR", r.stderr)

    def test_state_directory_matches_the_example_database_path(self):
        with open(os.path.join(self.prefix, "etc", "mcp-agent", "mcp-agent.toml")) as f:
            conf = f.read()
        self.assertIn('path = "/var/lib/mcp-agent/mcp-agent.db"', conf)
        self.assertIn('socket = "/run/mcp-agent/agent.sock"', conf)


class DestdirInstall(unittest.TestCase):
    def setUp(self):
        self.root = scratch_dir("destdir")

    def tearDown(self):
        remove(self.root)

    def test_destdir_install_runs_from_the_staging_root(self):
        install("/opt/mcp", destdir=self.root)
        binary = os.path.join(self.root, "opt", "mcp", "bin", "mcp-agent")
        r = run_hidden([binary, "version", "--verbose"], env=agent_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(os.path.join(self.root, "opt", "mcp", "share", "mcp-agent", "lua"),
                      r.stdout)
        with open(os.path.join(self.root, "opt", "mcp", "lib", "systemd", "system",
                               "mcp-agent.service")) as f:
            self.assertIn("ExecStart=/opt/mcp/bin/mcp-agent run", f.read())

    def test_unit_verifies(self):
        prefix = os.path.join(self.root, "unit")
        install(prefix)
        binary = os.path.join(prefix, "bin", "mcp-agent")
        unit = os.path.join(prefix, "lib", "systemd", "system", "mcp-agent.service")
        with open(unit) as f:
            text = f.read()
        for line in ("Type=notify", "ExecStartPre=%s check" % binary,
                     "ExecStart=%s run" % binary, "ExecReload=/bin/kill -HUP $MAINPID",
                     "Restart=always", "RuntimeDirectory=mcp-agent",
                     "StateDirectory=mcp-agent", "WatchdogSec="):
            self.assertIn("\n" + line, text)
        man = os.path.join(prefix, "share", "man")
        env = dict(os.environ)
        argv = ["systemd-analyze", "verify"]
        if os.path.isdir(os.path.join(man, "man8")):
            env["MANPATH"] = man  # Documentation=man:… must resolve too
        else:
            argv.append("--man=no")
        r = subprocess.run(argv + [unit], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertNotIn("mcp-agent.service", r.stdout)  # no complaint about our unit

    def test_an_existing_config_is_kept(self):
        conf = os.path.join(self.root, "opt", "mcp", "etc", "mcp-agent", "mcp-agent.toml")
        os.makedirs(os.path.dirname(conf))
        with open(conf, "w") as f:
            f.write("# mine\n")
        out = install("/opt/mcp", destdir=self.root).stdout
        with open(conf) as f:
            self.assertEqual(f.read(), "# mine\n")
        self.assertIn("Keeping", out)


class RuntimeDirectory(AgentTestCase):
    def serve(self, socket):
        self.env.write_config(extra="")
        with open(self.env.config) as f:
            text = f.read()
        self.env.write("mcp-agent.toml",
                       text.replace("[agent]\n", "[agent]\nsocket = %s\n" % toml_str(socket), 1))
        return self.env.start("run")

    def test_a_missing_socket_directory_is_created_0750(self):
        sock = self.env.path("run", "agent.sock")
        proc = self.serve(sock)
        deadline = time.monotonic() + 20
        while not os.path.exists(sock) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(sock), "no socket appeared")
        self.assertEqual(os.stat(self.env.path("run")).st_mode & 0o777, 0o750)
        proc.send_signal(signal.SIGTERM)
        r = self.env.finish(proc)
        self.assertEqual(r.rc, 0, r.stderr)

    def test_a_directory_that_cannot_be_made_is_said_to_be_missing(self):
        sock = self.env.path("absent", "deeper", "agent.sock")
        r = self.env.finish(self.serve(sock))
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertIn("directory %s" % self.env.path("absent", "deeper"), r.stderr)
        self.assertIn("missing", r.stderr)
        self.assertNotIn("permission denied", r.stderr.lower())


if __name__ == "__main__":
    unittest.main()
