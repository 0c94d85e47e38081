"""The Lua host's own parts end to end through `mcp-agent eval` on the fake
runtime (no podman): the task budget stopping Lua that never yields (naming
where it was) while the other tasks go on, core.hash.sha256, the [monitor]
config as Lua sees it, and the supervision data layer of the registry
(supervision rows, events with exit codes, since/after, trimming).

Every run is bounded by a timeout and checked for sanitizer reports by
AgentEnv.
"""
import hashlib
import time
import unittest

from agent_env import AgentTestCase

SERVICE = """
name = "web"
[[components]]
name = "api"
image = "img:v1"
restart = "on-failure"
ports = ["127.0.0.1:18080:80"]
[components.health]
check = "tcp"
port = 80
interval = "2s"
timeout = "250ms"
failure_threshold = 4
[[components]]
name = "worker"
image = "img:v1"
"""


class HostTestCase(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.env.write_config(runtime="fake", extra='\n[monitor]\ndrift = "fix"\nkeep_events = 4\n')
        self.env.write("web.toml", SERVICE)

    def lua_ok(self, code, *args, timeout=30):
        r = self.env.run("eval", "-e", code, *args, timeout=timeout)
        self.assertEqual(r.rc, 0, "stdout:\n%s\nstderr:\n%s" % (r.stdout, r.stderr))
        return r.stdout

    def lines(self, out):
        return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


class TaskBudget(HostTestCase):
    def test_a_task_spinning_past_its_budget_is_stopped_naming_the_line(self):
        t0 = time.monotonic()
        out = self.lua_ok("""
            local core = require("mcp.core")
            print("default", core.task.budget(0.3))
            local function spin() local n = 0; while true do n = n + 1 end end
            local ticks = 0
            local ticker = agent.task.spawn(function()
                for i = 1, 5 do agent.clock.sleep(0.05); ticks = ticks + 1 end
                return "ticked"
            end)
            local t = agent.task.spawn(function() spin() end)
            local ok, msg = agent.task.wait(t, 10)
            print("spin", tostring(ok), (msg:gsub("\\n.*", "")))
            print("ticker", select(2, agent.task.wait(ticker, 10)))
            -- caught by xpcall (as the agent calls policies), the task goes on
            local caught = select(2, xpcall(spin, function(m) return m end))
            print("caught", (caught:gsub("\\n.*", "")))
            print("later", agent.clock.sleep(0.01))
            print("off", core.task.budget(0))
        """)
        got = self.lines(out)
        self.assertEqual(got["default"], "0.0")
        self.assertRegex(got["spin"], r"^false\t\(eval -e\):4: stopped: ran 0\.\d s without "
                         r"yielding \(task budget 0\.3 s\), in .*defined at line 4$")
        self.assertEqual(got["ticker"], "ticked")
        self.assertRegex(got["caught"], r"^\(eval -e\):4: stopped: ran .*, in .*defined at line 4$")
        self.assertEqual(got["later"], "true")
        self.assertTrue(got["off"].startswith("0.3"))
        self.assertLess(time.monotonic() - t0, 20)

    def test_without_a_budget_long_lua_runs_to_its_end(self):
        out = self.lua_ok("""
            local t0 = agent.clock.now()
            local n = 0
            while agent.clock.now() - t0 < 0.6 do n = n + 1 end
            print("done", n > 0)
        """)
        self.assertEqual(self.lines(out)["done"], "true")

    def test_budget_misuse_is_an_error(self):
        r = self.env.run("eval", "-e", 'require("mcp.core").task.budget(-1)', timeout=30)
        self.assertNotEqual(r.rc, 0)
        self.assertMentions(r.stderr, "budget must be 0..3600 seconds")


class CoreHashAndConfig(HostTestCase):
    def test_sha256_is_lowercase_hex(self):
        out = self.lua_ok("""
            local h = require("mcp.core").hash
            print("empty", h.sha256(""))
            print("text", h.sha256(arg[1]))
            print("nul", h.sha256("a\\0b"))
        """, "image=img:v1 ports=[8080]")
        got = self.lines(out)
        self.assertEqual(got["empty"], hashlib.sha256(b"").hexdigest())
        self.assertEqual(got["text"], hashlib.sha256(b"image=img:v1 ports=[8080]").hexdigest())
        self.assertEqual(got["nul"], hashlib.sha256(b"a\0b").hexdigest())

    def test_monitor_config_reaches_lua(self):
        out = self.lua_ok("""
            local c = require("mcp.core").config
            print("monitor", c.monitor_interval, c.monitor_drift, c.keep_events)
        """)
        self.assertEqual(self.lines(out)["monitor"], "10.0\tfix\t4")

    def test_bad_drift_names_file_line_key(self):
        self.env.write_config(runtime="fake", extra='\n[monitor]\ndrift = "ignore"\n')
        r = self.env.run("check", timeout=30)
        self.assertEqual(r.rc, 2)
        self.assertMentions(r.stderr + r.stdout, "mcp-agent.toml:", "monitor.drift", "ignore")


class SupervisionData(HostTestCase):
    DEPLOY = """
        local r = agent.registry
        local svc = assert(r.deploy(io.open(arg[1]):read("a"), arg[1]))
    """

    def test_health_fields_round_trip_through_deploy(self):
        out = self.lua_ok(self.DEPLOY + """
            local h = r.service("web").components[1].health
            print("health", h.check, h.interval, h.timeout, h.failure_threshold)
            print("restart", r.service("web").components[1].restart, r.service("web").components[2].restart)
        """, self.env.path("web.toml"))
        got = self.lines(out)
        self.assertEqual(got["health"], "tcp\t2.0\t0.25\t4")
        self.assertEqual(got["restart"], "on-failure\tnil")

    def test_supervision_upsert_keeps_absent_fields_and_false_clears(self):
        self.lua_ok(self.DEPLOY + """
            assert(r.set_supervision("web", "api", {restarts = 3, last_exit_code = 137,
                state = "backoff", backoff_until = 1700000000.5, reason = "died",
                started_at = 1699999999.25}))
        """, self.env.path("web.toml"))
        # a second process: the state survived
        out = self.lua_ok("""
            local r = agent.registry
            assert(r.set_supervision("web", "api", {state = "running", backoff_until = false}))
            local s = r.supervision("web", "api")
            print("row", s.restarts, s.last_exit_code, s.state, tostring(s.backoff_until),
                  s.reason, s.started_at, s.updated_at > 1.6e9)
            print("missing", tostring(r.supervision("web", "worker")))
            print("unknown", r.set_supervision("web", "nope", {state = "running"}))
            print("list", #r.supervisions(), r.supervisions()[1].service .. "/" .. r.supervisions()[1].component)
            print("typo", pcall(r.set_supervision, "web", "api", {restart = 1}))
            print("cleared", r.clear_supervision("web", "api"), tostring(r.supervision("web", "api")))
            assert(r.set_supervision("web", "worker", {state = "given up"}))
            print("deleted", r.delete("web"), #r.supervisions())
        """)
        got = self.lines(out)
        self.assertEqual(got["row"], "3\t137\trunning\tnil\tdied\t1699999999.25\ttrue")
        self.assertEqual(got["missing"], "nil")
        self.assertEqual(got["unknown"], "nil\tno such component")
        self.assertEqual(got["list"], "1\tweb/api")
        self.assertTrue(got["typo"].startswith("false\t"))
        self.assertIn("unknown supervision field restart", got["typo"])
        self.assertEqual(got["cleared"], "1\tnil")
        self.assertEqual(got["deleted"], "true\t0")

    def test_events_exit_codes_since_after_and_trim(self):
        out = self.lua_ok(self.DEPLOY + """
            for i = 1, 6 do r.event("web", "api", "died", "exit " .. i, 128 + i) end
            r.event("web", nil, "healthy", "no code")
            local ev = r.events(nil, 100)
            print("kept", #ev)
            print("newest", ev[1].kind, ev[1].message, tostring(ev[1].exit_code), tostring(ev[1].component))
            print("second", ev[2].message, ev[2].exit_code, ev[2].service, ev[2].component)
            print("ids", ev[1].id > ev[2].id, math.type(ev[1].id), ev[1].time > 1.6e9)
            print("since", #r.events("web", 100, ev[4].time), #r.events("web", 100, ev[1].time),
                  #r.events("web", 100, ev[1].time + 3600))
            local after = r.events_after(ev[3].id, "web", 100)
            print("after", #after, after[1].message, after[2].message)
            print("after all", #r.events_after(0, nil, 2), r.events_after(0, nil, 2)[1].id < ev[4].id + 1)
            print("other service", #r.events("nope", 10))
        """, self.env.path("web.toml"))
        got = self.lines(out)
        self.assertEqual(got["kept"], "4")  # [monitor] keep_events = 4
        self.assertEqual(got["newest"], "healthy\tno code\tnil\tnil")
        self.assertEqual(got["second"], "exit 6\t134\tweb\tapi")
        self.assertEqual(got["ids"], "true\tinteger\ttrue")
        since_all, since_newest, since_future = got["since"].split("\t")
        self.assertEqual(since_all, "4")
        self.assertGreaterEqual(int(since_newest), 1)  # events of the same millisecond count too
        self.assertEqual(since_future, "0")
        self.assertEqual(got["after"], "2\texit 6\tno code")
        self.assertEqual(got["after all"], "2\ttrue")
        self.assertEqual(got["other service"], "0")


if __name__ == "__main__":
    unittest.main()
