"""`eval --dry-run` touches nothing (issue #14.6): every mutating primitive
of every area prints what it would do, and the raw core is out of reach."""
import unittest

from agent_env import AgentTestCase, file_bytes

SERVICE = 'name = "web"\n[[components]]\nname = "web"\nimage = "localhost/web:1"\n'

MUTATIONS = """
print(agent.registry.set_desired("web", nil, "stopped"))
print(agent.registry.event("web", nil, "note", "hello"))
print(agent.registry.delete("web"))
print(agent.registry.deploy('name = "x"', "x.toml"))
print(agent.runtime.stop("web", 1))
print(agent.http.request{ method = "POST", url = "http://127.0.0.1:1/hook", body = "x" })
print(#agent.registry.services())
"""


class EvalDryRun(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.env.write_config()
        r = self.env.run("deploy", self.env.write("web.toml", SERVICE))
        self.assertEqual(r.rc, 0, r.stderr)

    def test_mutating_calls_print_and_change_nothing(self):
        before = file_bytes(self.env.db)
        r = self.env.run("eval", "--dry-run", "-e", MUTATIONS)
        self.assertEqual(r.rc, 0, r.stderr)
        for said in ("would set the desired state of web", "would record an event for web",
                     "would remove web from the registry", "would store the service definition",
                     "would stop web", "would send an HTTP request (http://127.0.0.1:1/hook)"):
            self.assertIn(said, r.stdout)
        self.assertEqual(r.stdout.strip().splitlines()[-1], "1", "reads still answer")
        self.assertEqual(file_bytes(self.env.db), before, "the registry is byte for byte the same")

    def test_the_raw_core_is_out_of_reach(self):
        for code in ('require("mcp.core").podman.stop("web", 1)', 'require("mcp.host.agent").build()',
                     'package.loaded["mcp.core"].registry.delete("web")', 'debug.getregistry()'):
            r = self.env.run("eval", "--dry-run", "-e", code)
            self.assertEqual(r.rc, 1, code + "\n" + r.stdout + r.stderr)
        r = self.env.run("status", "web", "--json")
        self.assertIn('"desired_state":"running"', r.stdout)

    def test_without_dry_run_eval_keeps_the_full_environment(self):
        r = self.env.run("eval", "-e", 'print(type(require("mcp.core").registry), type(debug))')
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["table", "table"])


if __name__ == "__main__":
    unittest.main()
