"""The operator's policy workflow (issue 13): `mcp-agent test`, typos caught,
deploy previews, `show`, editor annotations, `check --lint` and `--strict`."""
import os
import re
import shutil
import subprocess
import unittest

from agent_env import AgentTestCase, SOURCE_DIR, file_bytes

SERVICE = ('name = "web"\n\n[[components]]\nname = "web"\nimage = "localhost/web:1"\n'
           'ports = ["127.0.0.1:18080:80/tcp"]\n')
TYPO = SERVICE + 'comand = ["serve"]\n'

PASSING_SPEC = '''
local t = require "mcp.testing"
local recover = require "policy.recover"
describe("my recover", function()
    it("recovers web", function()
        local w = t.world{ services = { { name = "web", image = "localhost/web:1" } },
                           images = { "localhost/web:1" } }
        local r = w:run(function(agent) return recover.run(agent, {}) end)
        assert.equal(1, #r.recovered)
    end)
    it("sees the operator's backoff", function()
        assert.equal("mine", require("policy.backoff").WHOSE)
    end)
end)
'''
FAILING_SPEC = '''
describe("broken", function()
    it("fails on purpose", function() assert.equal(1, 2) end)
end)
'''
# An operator's backoff that wraps the built-in one (as the daemon would load it).
BACKOFF = 'local b = require "policy.builtin.backoff"\nb.WHOSE = "mine"\nreturn b\n'


class OperatorTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.policies = os.path.dirname(self.env.write("policies/backoff.lua", BACKOFF))
        os.chmod(self.policies, 0o755)
        self.env.write_config(policy_dir=self.policies)

    def test_runs_the_default_spec_folder_beside_the_policy_dir(self):
        self.env.write("spec/recover_spec.lua", PASSING_SPEC)
        r = self.env.run("test", timeout=120)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertMentions(r.stdout, "2 successes / 0 failures")

    def test_a_failing_spec_exits_1(self):
        self.env.write("spec/recover_spec.lua", PASSING_SPEC)
        failing = self.env.write("other/broken_spec.lua", FAILING_SPEC)
        r = self.env.run("test", failing, timeout=120)
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        self.assertMentions(r.stdout, "0 successes / 1 failure", "fails on purpose")

    def test_filter_passes_through(self):
        self.env.write("spec/recover_spec.lua", PASSING_SPEC)
        r = self.env.run("test", "--filter", "operator's backoff", timeout=120)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertMentions(r.stdout, "1 success / 0 failures")

    def test_busted_missing_exits_2_naming_the_package(self):
        empty = self.env.path("emptybin")
        os.makedirs(empty)
        r = self.env.run("test", env={"PATH": empty})
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertMentions(r.stderr, "busted not found", "lua-busted")

    def test_a_missing_path_is_a_usage_error(self):
        r = self.env.run("test", self.env.path("nowhere"))
        self.assertEqual(r.rc, 2)
        self.assertMentions(r.stderr, "nowhere", "no such file")

    def test_init_writes_starter_specs_that_pass(self):
        r = self.env.run("test", "--init", self.policies)
        self.assertEqual(r.rc, 0, r.stderr)
        spec = self.env.path("spec")
        # the operator's dir has only backoff.lua
        self.assertEqual(sorted(os.listdir(spec)), ["backoff_spec.lua"])
        r = self.env.run("test", timeout=120)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertMentions(r.stdout, "0 failures / 0 errors")
        # a second --init keeps what the operator has written since
        self.env.write("spec/backoff_spec.lua", FAILING_SPEC)
        r = self.env.run("test", "--init", self.policies)
        self.assertMentions(r.stdout, "exists, kept")
        self.assertIn("fails on purpose", open(os.path.join(spec, "backoff_spec.lua")).read())

    def test_init_of_a_dir_without_policies_covers_the_built_in_ones(self):
        other = self.env.path("empty-policies")
        os.makedirs(other)
        r = self.env.run("test", "--init", other)
        self.assertEqual(r.rc, 0, r.stderr)
        names = sorted(os.listdir(self.env.path("spec")))
        self.assertEqual(names, ["backoff_spec.lua", "boot_spec.lua", "recover_spec.lua",
                                 "supervise_spec.lua"])
        r = self.env.run("test", self.env.path("spec"), timeout=120)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertMentions(r.stdout, "9 successes / 0 failures / 0 errors")


class TyposTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.env.write_config()

    def test_unknown_service_key_is_named_once_and_refused(self):
        ok = self.env.run("deploy", self.env.write("db.toml", SERVICE.replace("web", "db")))
        self.assertEqual(ok.rc, 0, ok.stderr)
        before = file_bytes(self.env.db)
        r = self.env.run("deploy", self.env.write("web.toml", TYPO))
        self.assertEqual(r.rc, 2, r.stdout + r.stderr)
        said = (r.stdout + r.stderr).count("unknown key 'components[0].comand' (did you mean 'cmd'?)")
        self.assertEqual(said, 1, r.stdout + r.stderr)
        self.assertMentions(r.stderr, "web.toml:7:1", "nothing stored", "--allow-unknown")
        self.assertEqual(file_bytes(self.env.db), before, "the registry is byte for byte the same")
        r = self.env.run("show", "web")
        self.assertEqual(r.rc, 2)
        self.assertMentions(r.stderr, "no such service: web")

    def test_allow_unknown_stores_it_and_warns_once(self):
        r = self.env.run("deploy", "--allow-unknown", self.env.write("web.toml", TYPO))
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertEqual((r.stdout + r.stderr).count("comand"), 1, r.stdout + r.stderr)
        self.assertMentions(r.stdout, "did you mean 'cmd'?", "ignored")
        self.assertEqual(self.env.run("show", "web").rc, 0)

    def test_config_typo_names_the_key_once_and_strict_fails(self):
        self.env.write_config(extra='\n[monitor]\nintervall = "5s"\n')
        r = self.env.run("check")
        self.assertEqual(r.rc, 0, r.stderr)
        lines = [l for l in r.stderr.splitlines() if "intervall" in l]
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertMentions(lines[0], "key=monitor.intervall", "did_you_mean=monitor.interval")
        r = self.env.run("check", "--strict")
        self.assertEqual(r.rc, 1, r.stderr)
        self.assertMentions(r.stderr, "1 warning, errors under --strict", "test failed")

    def test_strict_passes_a_clean_config(self):
        r = self.env.run("check", "--strict")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertMentions(r.stdout, "test is successful")

    def test_unknown_command_and_flag_suggest_the_nearest(self):
        r = self.env.run("stauts")
        self.assertEqual(r.rc, 2)
        self.assertMentions(r.stderr, "unknown command 'stauts' (did you mean 'status'?)")
        r = self.env.run("deploy", "--dry-rn", "x.toml")
        self.assertEqual(r.rc, 2)
        self.assertMentions(r.stderr, "--dry-rn", "--dry-run")


class PreviewTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.env.write_config()
        r = self.env.run("deploy", self.env.write("web.toml", SERVICE))
        self.assertEqual(r.rc, 0, r.stderr)

    def test_dry_run_new_changed_and_unchanged_touches_nothing(self):
        changed = SERVICE.replace("web:1", "web:2") + 'env = ["A=1"]\n'
        files = [self.env.write("new.toml", SERVICE.replace('"web"', '"api"')),
                 self.env.write("changed.toml", changed), self.env.write("same.toml", SERVICE)]
        before = file_bytes(self.env.db)
        r = self.env.run("deploy", "--dry-run", *files)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        out = r.stdout
        self.assertMentions(out, "service api: new", "component api: new", "would run api from localhost/web:1")
        self.assertMentions(out, "component web: changed", 'image: "localhost/web:1" → "localhost/web:2"',
                            'env: [] → ["A=1"]', "component web: unchanged",
                            "dry run: nothing stored, no container touched")
        self.assertEqual(file_bytes(self.env.db), before, "the registry is byte for byte the same")
        self.assertEqual(self.env.run("show", "api").rc, 2, "api was not stored")

    def test_dry_run_refuses_unknown_keys_too(self):
        r = self.env.run("deploy", "--dry-run", self.env.write("typo.toml", TYPO))
        self.assertEqual(r.rc, 2)
        self.assertMentions(r.stderr, "did you mean 'cmd'?")

    def test_show_prints_a_definition_deploy_accepts_unchanged(self):
        full = os.path.join(SOURCE_DIR, "tests", "fixtures", "services", "metacrypt.toml")
        r = self.env.run("deploy", full)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        first = self.env.run("show", "metacrypt")
        self.assertEqual(first.rc, 0, first.stderr)
        self.assertMentions(first.stdout, 'name = "metacrypt"', "[[components]]", "[[components.routes]]")
        shown = self.env.write("shown.toml", first.stdout)
        r = self.env.run("deploy", "--dry-run", shown)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertNotIn(": changed", r.stdout)
        self.assertIn("component api: unchanged", r.stdout)
        r = self.env.run("deploy", shown)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertEqual(self.env.run("show", "metacrypt").stdout, first.stdout)


# What the real agent has, as "area.function" (podman runtime, mc-proxy and
# Metacrypt configured so that every area is there).
LIST_AGENT = '''
local out = {}
for area, t in pairs(agent) do
  if type(t) == "table" and area ~= "config" then
    for name, f in pairs(t) do
      if type(f) == "function" then out[#out + 1] = area .. "." .. name end
    end
  end
end
table.sort(out)
print(table.concat(out, "\\n"))
'''
META = os.path.join(SOURCE_DIR, "lua", "mcp", "meta.lua")
AREAS = {"registry", "runtime", "clock", "task", "log", "probe", "proxy", "certs", "http"}


class AnnotationsTest(AgentTestCase):
    def test_meta_parses(self):
        luac = shutil.which("luac5.4")
        self.assertIsNotNone(luac, "luac5.4 (Debian lua5.4) is needed")
        p = subprocess.run([luac, "-p", META], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(META) as f:
            self.assertTrue(f.readline().startswith("---@meta"))

    def test_meta_names_every_function_of_the_real_agent(self):
        self.env.write_config(runtime="podman", extra='\n[mcproxy]\nsocket = "/nonexistent.sock"\n'
                              '\n[metacrypt]\nserver_url = "https://127.0.0.1:1"\n')
        r = self.env.run("eval", "-e", LIST_AGENT, env={"MCP_AGENT_LOCAL": "1"})
        self.assertEqual(r.rc, 0, r.stderr)
        real = set(r.stdout.split())
        self.assertIn("runtime.pull", real)
        with open(META) as f:
            text = f.read()
        named = {"%s.%s" % m for m in re.findall(r"^function (\w+)\.(\w+)\(", text, re.M)}
        named = {n for n in named if n.split(".")[0] in AREAS}
        self.assertEqual(sorted(real - named), [], "functions the meta file does not name")
        self.assertEqual(sorted(named - real), [], "functions the meta file names that do not exist")
        for cls in ("mcp.Agent", "mcp.BootPolicy", "mcp.RecoverPolicy", "mcp.SupervisePolicy",
                    "mcp.BackoffPolicy", "mcp.testing", "mcp.testing.World"):
            self.assertIn("---@class %s" % cls, text)

    def test_luarc_example_points_at_the_library(self):
        import json
        with open(os.path.join(SOURCE_DIR, "examples", "luarc.json")) as f:
            rc = json.load(f)
        self.assertEqual(rc["runtime.version"], "Lua 5.4")
        self.assertTrue(any(p.endswith("mcp-agent/lua") for p in rc["workspace.library"]))


class LintTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.policies = os.path.dirname(self.env.write(
            "policies/backoff.lua", 'local unused = 1\nreturn require "policy.builtin.backoff"\n'))
        self.env.write_config(policy_dir=self.policies)

    @unittest.skipUnless(shutil.which("luacheck"), "luacheck (Debian lua-check) not installed")
    def test_lint_runs_luacheck_over_the_policy_dir(self):
        r = self.env.run("check", "--lint", timeout=60)
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        self.assertMentions(r.stdout, "backoff.lua:1:7", "unused variable")
        self.env.write("policies/backoff.lua", 'return require "policy.builtin.backoff"\n')
        r = self.env.run("check", "--lint", timeout=60)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertMentions(r.stdout, "no warnings", "test is successful")

    def test_lint_without_luacheck_says_so(self):
        empty = self.env.path("emptybin")
        os.makedirs(empty)
        r = self.env.run("check", "--lint", env={"PATH": empty})
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertMentions(r.stdout, "luacheck is not installed", "lua-check")


if __name__ == "__main__":
    unittest.main()
