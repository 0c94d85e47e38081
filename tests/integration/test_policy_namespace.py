"""Policies are required as policy.NAME (SPEC §11): a file in [policy] dir
shadows a built-in policy, never a library or C module; the built-in
version stays reachable as policy.builtin.NAME; a policy that requires
itself is a clear error naming its file."""
import unittest

from agent_env import AgentTestCase

RAISES = 'error("this file must never be loaded: it only shares a module name")\n'

SERVICE = """
name = "db"
[[components]]
name = "db"
image = "localhost/db:1"
"""


class PolicyNamespace(AgentTestCase):
    def test_files_named_like_library_modules_shadow_nothing(self):
        pol = self.env.path("policies")
        for name in ("cjson.lua", "mcp.lua", "lifecycle.lua"):
            self.env.write("policies/" + name, RAISES)
        self.env.write_config(policy_dir=pol, extra='\n[[boot.sequence]]\nname = "f"\nservices = ["db"]\n')
        r = self.env.run("check")
        self.assertEqual(r.rc, 0, r.stderr)
        svc = self.env.write("db.toml", SERVICE)
        r = self.env.run("deploy", svc)
        self.assertEqual(r.rc, 0, r.stderr)
        # the fake runtime forgets its containers between commands: both recreate db
        r = self.env.run("recover")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("db", r.stdout)
        r = self.env.run("boot")
        self.assertEqual(r.rc, 0, r.stderr + r.stdout)
        self.assertIn("boot healthy", r.stdout)
        self.assertNotIn("must never be loaded", r.stderr)

    def test_operator_boot_wraps_the_builtin_one(self):
        pol = self.env.path("policies")
        self.env.write("policies/boot.lua",
                       'local boot = require "policy.builtin.boot"\n'
                       'local M = setmetatable({}, { __index = boot })\n'
                       'M.PROBE_BACKOFF = { base = 0.02, cap = 0.1, jitter = "none" }\n'
                       'function M.run(agent, stages, opts)\n'
                       '  agent.log.info("wrapped boot policy")\n'
                       '  opts = opts or {}\n'
                       '  opts.backoff = opts.backoff or M.PROBE_BACKOFF\n'
                       '  return boot.run(agent, stages, opts)\n'
                       'end\n'
                       'return M\n')
        self.env.write_config(policy_dir=pol)
        r = self.env.run("check")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("policy boot: ok", r.stdout)
        r = self.env.run("boot")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("wrapped boot policy", r.stderr)

    def test_a_policy_that_requires_itself_names_its_file(self):
        pol = self.env.path("policies")
        path = self.env.write("policies/boot.lua",
                              'local boot = require "policy.boot"\nreturn boot\n')
        self.env.write_config(policy_dir=pol)
        r = self.env.run("check")
        self.assertEqual(r.rc, 2)
        self.assertIn(path, r.stderr)
        self.assertIn("requires itself", r.stderr)
        self.assertIn("policy.builtin.boot", r.stderr)
        self.assertNotIn("stack overflow", r.stderr)

    def test_bare_names_are_not_policies(self):
        pol = self.env.path("policies")
        self.env.write("policies/recover.lua",
                       'local ok = pcall(require, "backoff")\n'
                       'assert(not ok, "a bare name must not find the backoff policy")\n'
                       'return require "policy.builtin.recover"\n')
        self.env.write_config(policy_dir=pol)
        r = self.env.run("check")
        self.assertEqual(r.rc, 0, r.stderr)


class PolicySandbox(AgentTestCase):
    """Policies touch the world only through agent (issue #14.9): what reaches
    past it is not in their environment, even at `check`."""

    ESCAPES = (
        ('os.execute("true")', "execute"),
        ('io.popen("true")', "popen"),
        ('package.loadlib("libc.so.6", "puts")', "package"),
        ('debug.getinfo(1)', "debug"),
        ('require("mcp.core")', "not for them"),
        ('require("mcp.host.agent")', "not for them"),
        ('load(string.dump(function() end))', "dump"),
    )

    def test_a_policy_cannot_reach_past_the_agent(self):
        pol = self.env.path("policies")
        self.env.write_config(policy_dir=pol)
        for code, needle in self.ESCAPES:
            self.env.write("policies/recover.lua", code + '\nreturn require "policy.builtin.recover"\n')
            r = self.env.run("check")
            self.assertEqual(r.rc, 2, code + "\n" + r.stdout + r.stderr)
            self.assertIn("policies/recover.lua:1", r.stderr, code)  # Lua shortens long chunk names
            self.assertIn(needle, r.stderr, code)

    def test_what_policies_need_is_there(self):
        pol = self.env.path("policies")
        self.env.write_config(policy_dir=pol)
        self.env.write("policies/recover.lua",
                       'local json = require "mcp.json"\nlocal r = require "mcp.recovery"\n'
                       'assert(type(r.recover) == "function" and json.encode({1}) == "[1]")\n'
                       'assert(os.time() > 0 and math.max(1, 2) == 2 and string.format("%d", 3) == "3")\n'
                       'return require "policy.builtin.recover"\n')
        r = self.env.run("check")
        self.assertEqual(r.rc, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
