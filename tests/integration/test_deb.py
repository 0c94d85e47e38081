"""The .deb (SPEC §11): `cpack -G DEB` builds it; dpkg-deb shows its
metadata (Depends computed from the binary's libraries) and contents (the
conffile, the unit, man pages, completion, lua/, policies/); unpacked into a
scratch root, the installed binary runs `version --verbose` and `check` from
there with the source tree hidden."""
import os
import re
import subprocess
import unittest

from agent_env import BUILD_DIR, check_health
from install_env import remove, run_hidden, scratch_dir
from test_install import agent_env


def sh(*argv, timeout=300, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, **kw)
    if r.returncode != 0:
        raise AssertionError("%r failed (%d):\n%s" % (argv, r.returncode, r.stdout))
    return r.stdout


class Deb(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = scratch_dir("deb")
        sh("cpack", "--config", os.path.join(BUILD_DIR, "CPackConfig.cmake"), "-G", "DEB",
           "-B", cls.dir, cwd=BUILD_DIR)
        debs = [f for f in os.listdir(cls.dir) if f.endswith(".deb")]
        assert len(debs) == 1, debs
        cls.deb = os.path.join(cls.dir, debs[0])

    @classmethod
    def tearDownClass(cls):
        remove(cls.dir)

    def field(self, name):
        return sh("dpkg-deb", "--field", self.deb, name).strip()

    def test_metadata(self):
        self.assertRegex(os.path.basename(self.deb), r"^mcp-agent_\d+\.\d+\.\d+_amd64\.deb$")
        self.assertEqual(self.field("Package"), "mcp-agent")
        depends = [d.split()[0] for d in self.field("Depends").split(", ")]
        # from dpkg-shlibdeps: the libraries the binary links
        for lib in ("libc6", "liblua5.4-0", "libsqlite3-0", "libuv1",
                    "libnghttp2-14", "libssl3"):
            self.assertIn(lib, depends)
        # what it loads (dlopen on first use) or runs itself
        for pkg in ("libcurl4", "libsystemd0", "libmicrohttpd12", "lua-cjson", "podman"):
            self.assertIn(pkg, depends)

    def test_control_files(self):
        out = os.path.join(self.dir, "control")
        sh("dpkg-deb", "--control", self.deb, out)
        with open(os.path.join(out, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/mcp-agent/mcp-agent.toml"])
        for script in ("postinst", "prerm", "postrm"):
            self.assertTrue(os.access(os.path.join(out, script), os.X_OK), script)
            sh("sh", "-n", os.path.join(out, script))
        with open(os.path.join(out, "postinst")) as f:
            self.assertIn("enable mcp-agent.service", f.read())

    def test_contents(self):
        listing = sh("dpkg-deb", "--contents", self.deb)
        paths = {re.split(r"\s+", line, maxsplit=5)[5].lstrip(".") for line in
                 listing.splitlines() if line.strip()}
        for p in ("/usr/bin/mcp-agent", "/etc/mcp-agent/mcp-agent.toml",
                  "/usr/lib/systemd/system/mcp-agent.service",
                  "/usr/share/man/man8/mcp-agent.8", "/usr/share/man/man5/mcp-agent.toml.5",
                  "/usr/share/man/man7/mcp-agent-policy.7",
                  "/usr/share/bash-completion/completions/mcp-agent",
                  "/usr/share/mcp-agent/lua/mcp/host/cli.lua",
                  "/usr/share/mcp-agent/policies/recover.lua",
                  "/usr/share/doc/mcp-agent/examples/mcp-agent.toml",
                  "/usr/share/doc/mcp-agent/examples/demo/web.toml"):
            self.assertIn(p, paths)
        self.assertFalse([p for p in paths if "/usr/local" in p or BUILD_DIR in p])

    def test_unpacked_binary_runs_from_its_root(self):
        root = os.path.join(self.dir, "root")
        sh("dpkg", "-x", self.deb, root)
        binary = os.path.join(root, "usr", "bin", "mcp-agent")
        with open(os.path.join(root, "usr", "lib", "systemd", "system",
                               "mcp-agent.service")) as f:
            self.assertIn("\nExecStart=/usr/bin/mcp-agent run\n", f.read())
        argv = [binary, "version", "--verbose"]
        r = run_hidden(argv, env=agent_env())
        check_health(argv, r.returncode, r.stderr)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("lua library: %s/usr/share/mcp-agent/lua (relative to the binary)" % root,
                      r.stdout)
        argv = [binary, "-c", os.path.join(root, "etc", "mcp-agent", "mcp-agent.toml"), "check"]
        r = run_hidden(argv, env=agent_env())
        check_health(argv, r.returncode, r.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("built-in policies: %s/usr/share/mcp-agent/policies" % root, r.stdout)
        self.assertIn("test is successful", r.stdout)


if __name__ == "__main__":
    unittest.main()
