"""Bad input to the mcp-agent command line (SPEC §2, §9).

Every case asserts the exit code, that stderr names the file, the line (and
column where known) and the offending key or value, and that the agent
finished within a bounded time without a crash or sanitizer report (the
AgentEnv checks those on every run). Fixtures: tests/fixtures/bad/."""
import json
import os
import re
import shutil
import signal
import time
import unittest

from agent_env import (AgentTestCase, FIXTURES, file_bytes, pgrep, podman_subcommands)

BAD = os.path.join(FIXTURES, "bad")
QUICK = 10  # seconds: what any rejection of bad input may take, at most


def bad(name):
    return os.path.join(BAD, name)


class BadConfig(AgentTestCase):
    def check(self, fixture, rc=2):
        path = bad(fixture)
        r = self.env.run("check", config=path, timeout=QUICK)
        self.assertEqual(r.rc, rc, r.stdout + r.stderr)
        return path, r

    def test_malformed_toml_names_line_and_column(self):
        path, r = self.check("config_syntax.toml")
        self.assertMentions(r.stderr, path + ":4:13:", "127.0.0.1:9444")

    def test_malformed_toml_also_stops_other_commands(self):
        path = bad("config_syntax.toml")
        for cmd in (["recover"], ["ls"], ["deploy", bad("svc_good_one.toml")], ["eval", "-e", "return 0"]):
            r = self.env.run(*cmd, config=path, timeout=QUICK)
            self.assertEqual(r.rc, 2, "%s: %s" % (cmd, r.stderr))
            self.assertIn(path + ":4:13:", r.stderr)
        # and nothing was created in the working directory (no registry opened)
        self.assertFalse(os.path.exists(self.env.path("mcp-agent.db")))

    def test_wrong_type(self):
        path, r = self.check("config_port_range_type.toml")
        self.assertMentions(r.stderr, path + ":4:14:", "agent.port_range", "string", "integer")

    def test_wrong_type_in_boot_sequence(self):
        path, r = self.check("config_services_type.toml")
        self.assertMentions(r.stderr, path + ":4:", "boot.sequence[0].services", "array")

    def test_unknown_key_is_a_warning(self):
        path, r = self.check("config_unknown_key.toml", rc=0)
        self.assertIn("test is successful", r.stdout)
        warning = [l for l in r.stderr.splitlines() if "unknown config key" in l]
        self.assertEqual(len(warning), 1, r.stderr)
        self.assertMentions(warning[0], "level=WARN", "file=" + path, "line=5", "key=agent.colour")

    def test_bad_duration(self):
        path, r = self.check("config_bad_duration.toml")
        self.assertMentions(r.stderr, path + ":6:12:", "monitor.interval", '"5 parsecs"')

    def test_unknown_health_method(self):
        path, r = self.check("config_bad_health.toml")
        self.assertMentions(r.stderr, path + ":10:10:", "boot.sequence[1].health", '"ftp"')

    def test_unknown_runtime(self):
        path, r = self.check("config_bad_runtime.toml")
        self.assertMentions(r.stderr, path + ":3:", "agent.container_runtime", '"docker"')

    def test_negative_podman_timeout(self):
        path = self.env.write("neg.toml", '[agent]\npodman_timeout = "-1s"\n')
        r = self.env.run("check", config=path, timeout=QUICK)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertMentions(r.stderr, path + ":2:", "agent.podman_timeout", "-1s")

    def test_missing_config_file(self):
        missing = self.env.path("nowhere", "mcp-agent.toml")
        for cmd in (["check"], ["recover"], ["status"]):
            r = self.env.run(*cmd, config=missing, timeout=QUICK)
            self.assertEqual(r.rc, 2, r.stderr)
            self.assertMentions(r.stderr, missing, "No such file")

    def test_missing_config_file_from_the_environment(self):
        missing = self.env.path("env-missing.toml")
        r = self.env.run("check", config=None, env={"MCP_AGENT_CONFIG": missing}, timeout=QUICK)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertIn(missing, r.stderr)

    def test_config_that_is_a_directory_or_binary(self):
        r = self.env.run("check", config=self.env.dir, timeout=QUICK)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertMentions(r.stderr, self.env.dir, "directory")
        garbage = self.env.write_bytes("garbage.toml", b"[agent]\nnode_name = \"\xff\xfe\x00\x01\"\n")
        r = self.env.run("check", config=garbage, timeout=QUICK)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertMentions(r.stderr, garbage + ":2:")


class BadServiceFile(AgentTestCase):
    """deploy of an invalid definition: exit 2, file:line:col, key, value; nothing stored."""

    def setUp(self):
        super().setUp()
        # the fake podman records calls: a rejected deploy must make none
        self.env.fake_podman_config()

    def assert_registry_empty(self):
        r = self.env.run("ls", "--json", timeout=QUICK)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["services"], [])

    def deploy_bad(self, fixture, *needles):
        path = bad(fixture)
        r = self.env.run("deploy", path, timeout=QUICK)
        self.assertEqual(r.rc, 2, r.stdout + r.stderr)
        self.assertMentions(r.stderr, path, *needles)
        self.assertEqual(self.env.podman_calls(), [])
        self.assert_registry_empty()
        return r

    def test_toml_syntax_error(self):
        self.deploy_bad("svc_syntax.toml", path_line(bad("svc_syntax.toml"), 5), "]]")

    def test_invalid_service_name(self):
        self.deploy_bad("svc_bad_name.toml", ":2:8:", "key 'name'", '"Bad_Name"')

    def test_duplicate_component_names(self):
        self.deploy_bad("svc_dup_components.toml", ":8:8:", "components[1].name", '"api"', "duplicate")

    def test_bad_port_spec(self):
        self.deploy_bad("svc_bad_port.toml", ":6:38:", "components[0].ports[1]",
                        '"127.0.0.1:99999:8080/tcp"')

    def test_bad_volume_spec(self):
        self.deploy_bad("svc_bad_volume.toml", ":6:31:", "components[0].volumes[1]", '"relative-dst:data"')

    def test_liveness_interval_of_zero(self):
        self.deploy_bad("svc_health_interval_zero.toml", ":9:12:", "components[0].health.interval",
                        "must be positive")

    def test_negative_failure_threshold(self):
        self.deploy_bad("svc_health_negative_threshold.toml", ":9:21:", "components[0].health.failure_threshold",
                        "out of range")

    def test_health_port_that_nothing_publishes(self):
        self.deploy_bad("svc_health_port_unpublished.toml", ":8:8:", "components[0].health.port",
                        "9090 is not published")

    def test_bad_desired_state(self):
        self.deploy_bad("svc_bad_desired_state.toml", ":6:17:", "components[0].desired_state", '"paused"')

    def test_wrong_type_for_cmd(self):
        self.deploy_bad("svc_cmd_type.toml", ":6:7:", "components[0].cmd", "array", "string")

    def test_missing_service_file(self):
        missing = self.env.path("no-such-service.toml")
        r = self.env.run("deploy", missing, timeout=QUICK)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertMentions(r.stderr, missing)
        self.assert_registry_empty()

    def test_directory_and_endless_file(self):
        for path, needle in ((self.env.dir, "Is a directory"), ("/dev/zero", "larger than")):
            r = self.env.run("deploy", path, timeout=QUICK)
            self.assertEqual(r.rc, 2, r.stderr)
            self.assertMentions(r.stderr, path + ": " + needle)
        self.assert_registry_empty()

    def test_one_bad_file_among_several_stores_none(self):
        good1, bad1, good2 = bad("svc_good_one.toml"), bad("svc_bad_port.toml"), bad("svc_good_two.toml")
        r = self.env.run("deploy", good1, bad1, good2, timeout=QUICK)
        self.assertEqual(r.rc, 2, r.stdout + r.stderr)
        self.assertMentions(r.stderr, bad1 + ":6:38:")
        self.assertNotIn("started", r.stdout)
        self.assertEqual(self.env.podman_calls(), [])
        self.assert_registry_empty()
        # the positive control: the good files alone deploy
        r = self.env.run("deploy", good1, good2, timeout=QUICK)
        self.assertEqual(r.rc, 0, r.stderr)
        doc = json.loads(self.env.run("ls", "--json").stdout)
        self.assertEqual(sorted(s["name"] for s in doc["services"]), ["goodone", "goodtwo"])

    def test_bad_redeploy_keeps_the_stored_definition(self):
        good = self.env.write("twice.toml", open(bad("svc_good_one.toml")).read())
        self.assertEqual(self.env.run("deploy", good).rc, 0)
        broken = self.env.write("twice.toml", open(bad("svc_good_one.toml")).read()
                                + 'desired_state = "sideways"\n')
        r = self.env.run("deploy", broken, timeout=QUICK)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertMentions(r.stderr, broken + ":6:", '"sideways"')
        doc = json.loads(self.env.run("status", "goodone", "--json").stdout)
        self.assertEqual(doc["services"][0]["components"][0]["desired_state"], "running")


def path_line(path, line):
    return "%s:%d:" % (path, line)


class BadPolicy(AgentTestCase):
    """An operator recover.lua in [policy] dir that is broken in some way."""

    def install(self, fixture, mode=0o644):
        pol = self.env.path("policies")
        os.makedirs(pol, exist_ok=True)
        dest = os.path.join(pol, "recover.lua")
        shutil.copyfile(bad(fixture), dest)
        os.chmod(dest, mode)
        self.env.write_config(policy_dir=pol)
        return dest

    def test_good_operator_policy_is_used(self):
        # the positive control for the cases below
        self.install("policy_good.lua")
        r = self.env.run("recover", timeout=QUICK)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("operator recover policy ran", r.stdout)

    def test_syntax_error(self):
        dest = self.install("policy_syntax.lua")
        for cmd in ("recover", "check"):
            r = self.env.run(cmd, timeout=QUICK)
            self.assertEqual(r.rc, 2, r.stdout + r.stderr)
            # Lua shortens long chunk names from the left: the tail is always there
            self.assertMentions(r.stderr, "policies/recover.lua:5:", "near")
        self.assertIn("test failed", r.stderr)

    def test_runtime_error_is_logged_with_traceback(self):
        dest = self.install("policy_raises.lua")
        r = self.env.run("check", timeout=QUICK)
        self.assertEqual(r.rc, 0, r.stderr)  # it loads and has run(): check cannot know
        r = self.env.run("recover", timeout=QUICK)
        self.assertEqual(r.rc, 2, r.stdout + r.stderr)
        self.assertMentions(r.stderr, "level=ERROR", "recover policy failed", "policies/recover.lua:6:",
                            "attempt to index a nil value", "stack traceback")

    def test_group_writable_policy_is_refused(self):
        for mode in (0o664, 0o646):
            dest = self.install("policy_good.lua", mode=mode)
            for cmd in ("recover", "check"):
                r = self.env.run(cmd, timeout=QUICK)
                self.assertEqual(r.rc, 2, r.stdout + r.stderr)
                self.assertMentions(r.stderr, dest, "chmod", "%04o" % mode)
                self.assertNotIn("operator recover policy ran", r.stdout)

    def test_missing_required_function(self):
        self.install("policy_no_run.lua")
        r = self.env.run("check", timeout=QUICK)
        self.assertEqual(r.rc, 2, r.stdout + r.stderr)
        self.assertMentions(r.stderr, "recover", "run", "test failed")

    def test_endless_loop_at_load_is_stopped(self):
        self.install("policy_loops.lua")
        for cmd in ("recover", "check"):
            r = self.env.run(cmd, timeout=30)
            self.assertEqual(r.rc, 2, r.stdout + r.stderr)
            self.assertMentions(r.stderr, "million instructions")
            self.assertLess(r.elapsed, 20)

    def test_endless_loop_at_load_names_the_file(self):
        dest = self.install("policy_loops.lua")
        r = self.env.run("check", timeout=30)
        self.assertEqual(r.rc, 2)
        self.assertIn(dest, r.stderr)


    def test_sigterm_stops_a_policy_spinning_at_run_time(self):
        self.install("policy_spins.lua")
        proc = self.env.start("recover")
        try:
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            r = self.env.finish(proc, timeout=4)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertNotEqual(r.rc, 0)


class BadDatabase(AgentTestCase):
    """A registry file that is not ours: exit 2, clear message, file untouched."""

    COMMANDS = (["ls"], ["status"], ["recover"], ["deploy", bad("svc_good_one.toml")],
                ["snapshot", "snap.db"], ["eval", "-e", "return 0"])

    def assert_refused_untouched(self, db, *needles):
        before = file_bytes(db)
        listing = sorted(os.listdir(self.env.dir))
        self.env.write_config(db=db)
        for cmd in self.COMMANDS:
            r = self.env.run(*cmd, timeout=QUICK)
            self.assertEqual(r.rc, 2, "%s: %s%s" % (cmd, r.stdout, r.stderr))
            self.assertMentions(r.stderr, db, *needles)
            self.assertEqual(file_bytes(db), before, "%s changed the file" % cmd)
        # no journal, WAL or snapshot appeared next to it
        self.assertEqual(sorted(os.listdir(self.env.dir)), sorted(listing + ["mcp-agent.toml"]))

    def test_random_bytes(self):
        db = self.env.write_bytes("random.db", os.urandom(16384))
        self.assert_refused_untouched(db, "not a SQLite database")

    def test_sqlite_header_then_garbage(self):
        db = self.env.write_bytes("truncated.db", b"SQLite format 3\x00" + os.urandom(3000))
        self.assert_refused_untouched(db, "SQLite")

    def test_foreign_sqlite_database(self):
        import sqlite3
        db = self.env.path("shop.db")
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO customers (name) VALUES ('ada'), ('grace')")
        con.commit()
        con.close()
        self.assert_refused_untouched(db, "not an mcp-agent registry", "customers")


class BadPodman(AgentTestCase):
    """podman missing or hanging: a clean failure within bounded time, no leftovers."""

    def setUp(self):
        super().setUp()
        fake = self.env.write_config(name="fake.toml")
        r = self.env.run("deploy", bad("svc_good_one.toml"), bad("svc_good_two.toml"), config=fake)
        self.assertEqual(r.rc, 0, r.stderr)

    def test_podman_path_missing(self):
        # Observed: exit 1 (the job ran, no container could be brought up). That
        # fits SPEC §2 — a missing binary is the node's state, not bad input.
        self.env.write_config(runtime="podman", podman="/nonexistent/podman", podman_timeout="5s")
        r = self.env.run("recover", "--json", timeout=QUICK)
        self.assertEqual(r.rc, 1, r.stderr)
        self.assertMentions(r.stderr, "/nonexistent/podman", "not found")
        report = json.loads(r.stdout)
        self.assertEqual(len(report["failed"]), 2)
        for entry in report["failed"]:
            self.assertIn("podman not found", entry["reason"])
        r = self.env.run("status", timeout=QUICK)
        self.assertEqual(r.rc, 1, r.stderr)
        self.assertMentions(r.stdout, "cannot list containers", "/nonexistent/podman", "observed=unknown")

    def test_podman_not_in_path(self):
        self.env.write_config(runtime="podman", podman_timeout="5s")
        r = self.env.run("recover", timeout=QUICK, env={"PATH": self.env.path("empty-bin")})
        self.assertEqual(r.rc, 1, r.stderr)
        self.assertMentions(r.stderr, "podman", "not found in PATH")
        self.assertIn("failed 2", r.stdout)

    def test_podman_not_executable(self):
        p = self.env.write("podman-noexec", "#!/bin/sh\necho hi\n", mode=0o644)
        self.env.write_config(runtime="podman", podman=p, podman_timeout="5s")
        r = self.env.run("recover", timeout=QUICK)
        self.assertEqual(r.rc, 1, r.stderr)
        self.assertMentions(r.stderr, p, "not executable")

    def test_podman_garbage_answer(self):
        p = self.env.write("podman-garbage", "#!/bin/sh\necho '{not json'\n", mode=0o755)
        self.env.write_config(runtime="podman", podman=p, podman_timeout="5s")
        r = self.env.run("recover", "--json", timeout=QUICK)
        self.assertEqual(r.rc, 1, r.stderr)
        report = json.loads(r.stdout)
        self.assertEqual(len(report["failed"]), 2)
        self.assertIn("bad answer", report["failed"][0]["reason"])

    def test_hanging_podman_times_out(self):
        hang, marker = self.env.hanging_podman()
        self.env.write_config(runtime="podman", podman=hang, podman_timeout="1s")
        r = self.env.run("recover", "--json", timeout=30)
        self.assertLess(r.elapsed, 10)
        self.assertEqual(r.rc, 1, r.stderr)
        report = json.loads(r.stdout)
        self.assertEqual(len(report["failed"]), 2)
        for entry in report["failed"]:
            self.assertIn("timeout", entry["reason"])
        self.assertIn("timeout", r.stderr)
        self.assert_no_leftovers(marker)

    def test_hanging_podman_status_times_out(self):
        hang, marker = self.env.hanging_podman()
        self.env.write_config(runtime="podman", podman=hang, podman_timeout="1s")
        r = self.env.run("status", timeout=30)
        self.assertLess(r.elapsed, 10)
        self.assertEqual(r.rc, 1, r.stderr)
        self.assertMentions(r.stdout, "cannot list containers", "timeout")
        self.assert_no_leftovers(marker)

    def test_sigterm_while_podman_hangs(self):
        hang, marker = self.env.hanging_podman()
        self.env.write_config(runtime="podman", podman=hang, podman_timeout="60s")
        proc = self.env.start("recover")
        try:
            deadline = time.monotonic() + 10
            while len(pgrep(marker)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)  # until podman and its sleeping child both run
            self.assertGreaterEqual(len(pgrep(marker)), 2, "the hanging podman never started")
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            r = self.env.finish(proc, timeout=20)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertLess(took, 5)
        # Observed: exit 1 ("command cancelled"), the job did not reach its goal.
        self.assertEqual(r.rc, 1, r.stderr)
        self.assertMentions(r.stderr, "SIGTERM", "cancel")
        self.assert_no_leftovers(marker)

    def assert_no_leftovers(self, marker):
        deadline = time.monotonic() + 3  # a killed child may take a moment to be reaped
        while pgrep(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(pgrep(marker), [], "podman processes left behind")


if __name__ == "__main__":
    unittest.main()
