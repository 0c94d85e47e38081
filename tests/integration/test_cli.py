"""The mcp-agent command line (SPEC §2), end to end through the binary.

Uses the in-memory fake runtime ([agent] container_runtime = "fake", whose
state lives only for one process) or the scripted fake podman
(tests/fixtures/fakepodman/podman) driven through the C podman runtime: no
real podman is needed."""
import json
import os
import re
import unittest

from agent_env import AgentTestCase, podman_subcommands, sqlite_text_contains, file_bytes

# SPEC §2's commands; "run" (the daemon) has its own test below.
COMMANDS = ["recover", "boot", "eval", "deploy", "start", "stop", "restart", "rm",
            "status", "ls", "snapshot", "check", "version", "help"]
MUTATING = {"run", "rm", "start", "stop"}

WEB_SERVICE = """\
name = "alpha"
active = true

[[components]]
name = "web"
image = "localhost/alpha:1"
network = "mcpnet"
user = "1000:1000"
restart = "unless-stopped"
ports = ["127.0.0.1:18080:8080/tcp"]
volumes = ["/srv/alpha:/data"]
cmd = ["httpd", "-f", "-p", "8080"]
env = ["LOG_LEVEL=debug"]

[[components.routes]]
name = "rest"
port = 8443
mode = "l4"
hostname = "alpha.example.net"
"""

SIMPLE_SERVICE = """\
name = "beta"

[[components]]
name = "beta"
image = "localhost/beta:2"
"""

STOPPED_SERVICE = """\
name = "gamma"

[[components]]
name = "worker"
image = "localhost/gamma:1"
desired_state = "stopped"
"""


def option_values(argv, flag):
    """Values of every `flag VALUE` pair before "--" in a podman argv."""
    out, i = [], 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] == flag and i + 1 < len(argv):
            out.append(argv[i + 1])
            i += 2
        else:
            i += 1
    return out


def create_empty_registry(case):
    """An empty registry, made the way an operator would: deploy, then rm
    (with the in-memory runtime, so no podman call is made)."""
    cfg = case.env.write_config(name="create-registry.toml")
    svc = case.env.write("create-registry.toml.d/zeta.toml", SIMPLE_SERVICE.replace('"beta"', '"zeta"'))
    for args in (["deploy", svc], ["rm", "zeta"]):
        r = case.env.run(*args, config=cfg)
        case.assertEqual(r.rc, 0, r.stderr)
    case.assertTrue(os.path.exists(case.env.db))


class HelpAndVersion(AgentTestCase):
    def test_help_lists_every_command(self):
        for args in (["help"], ["--help"], ["-h"]):
            r = self.env.run(*args, config=None)
            self.assertEqual(r.rc, 0, r.stderr)
            self.assertIn("usage: mcp-agent", r.stdout)
            for cmd in COMMANDS:
                self.assertRegex(r.stdout, r"(?m)^\s+%s\s" % re.escape(cmd))

    def test_command_help_for_every_command(self):
        for cmd in COMMANDS:
            for args in ([cmd, "--help"], [cmd, "-h"], ["help", cmd]):
                if args == ["help", "--help"] or args == ["help", "-h"]:
                    continue  # test_help_help below
                r = self.env.run(*args, config=None)
                self.assertEqual(r.rc, 0, "%s: %s" % (args, r.stderr))
                self.assertTrue(r.stdout.startswith("usage: mcp-agent [-c CONFIG] %s" % cmd),
                                "%s printed:\n%s" % (args, r.stdout))

    def test_run_command_is_listed_and_has_help(self):
        r = self.env.run("help", config=None)
        self.assertRegex(r.stdout, r"(?m)^\s+run\s")
        r = self.env.run("run", "--help", config=None)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("usage: mcp-agent [-c CONFIG] run"), r.stdout)

    def test_help_help(self):
        r = self.env.run("help", "--help", config=None)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("usage: mcp-agent [-c CONFIG] help"), r.stdout)

    def test_help_does_not_need_a_config(self):
        # COMMAND --help answers even when the config is broken or missing
        r = self.env.run("recover", "--help", config=self.env.path("missing.toml"))
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("recover [--dry-run] [--json]", r.stdout)

    def test_version(self):
        for args in (["version"], ["--version"]):
            r = self.env.run(*args, config=None)
            self.assertEqual(r.rc, 0, r.stderr)
            self.assertRegex(r.stdout, r"^mcp-agent \d+\.\d+\.\d+")

    def test_unknown_command_and_option_are_usage_errors(self):
        r = self.env.run("frobnicate", config=None)
        self.assertEqual(r.rc, 2)
        self.assertIn("'frobnicate'", r.stderr)
        r = self.env.run("--frob", "ls", config=None)
        self.assertEqual(r.rc, 2)
        self.assertIn("--frob", r.stderr)
        r = self.env.run(config=None)
        self.assertEqual(r.rc, 2)
        self.assertIn("usage:", r.stderr)
        r = self.env.run("help", "frobnicate", config=None)
        self.assertEqual(r.rc, 2)
        self.assertIn("frobnicate", r.stderr)

    def test_unknown_command_option_is_a_usage_error(self):
        self.env.write_config()
        r = self.env.run("recover", "--frob")
        self.assertEqual(r.rc, 2)
        self.assertIn("--frob", r.stderr)
        r = self.env.run("-c")
        self.assertEqual(r.rc, 2)


class Check(AgentTestCase):
    def test_check_ok_with_builtin_policies(self):
        cfg = self.env.write_config()
        r = self.env.run("check")
        self.assertEqual(r.rc, 0, r.stderr)
        for name in ("recover", "boot", "backoff"):
            self.assertIn("policy %s: ok" % name, r.stdout)
        self.assertIn(cfg, r.stdout)
        self.assertIn("test is successful", r.stdout)

    def test_check_with_the_environment_variable(self):
        cfg = self.env.write_config(name="other.toml")
        r = self.env.run("check", config=None, env={"MCP_AGENT_CONFIG": cfg})
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn(cfg, r.stdout)

    def test_operator_policy_dir_overrides_one_policy(self):
        pol = self.env.path("policies")
        self.env.write("policies/recover.lua",
                       'return { run = function(agent, opts)\n'
                       '  return { recovered = {}, already_running = {}, skipped = {}, failed = {},\n'
                       '           planned = {}, warnings = {"operator policy ran"} }\nend }\n')
        self.env.write_config(policy_dir=pol)
        r = self.env.run("check")
        self.assertEqual(r.rc, 0, r.stderr)
        r = self.env.run("recover")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("operator policy ran", r.stdout)


class DeployStatusFakeRuntime(AgentTestCase):
    """The fake runtime: definitions persist in the registry, containers do not."""

    def setUp(self):
        super().setUp()
        self.env.write_config()
        self.alpha = self.env.write("alpha.toml", WEB_SERVICE)
        self.beta = self.env.write("beta.toml", SIMPLE_SERVICE)

    def deploy(self):
        r = self.env.run("deploy", self.alpha, self.beta)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("alpha-web: started", r.stdout)
        self.assertIn("beta: started", r.stdout)

    def test_deploy_then_status_json(self):
        self.deploy()
        r = self.env.run("status", "--json")
        # a new process has a new, empty fake runtime: desired running, observed missing
        self.assertEqual(r.rc, 1, r.stderr)
        doc = json.loads(r.stdout)
        services = {s["name"]: s for s in doc["services"]}
        self.assertEqual(set(services), {"alpha", "beta"})
        alpha = services["alpha"]
        self.assertIs(alpha["active"], True)
        self.assertEqual(len(alpha["components"]), 1)
        web = alpha["components"][0]
        self.assertEqual(web["name"], "web")
        self.assertEqual(web["container"], "alpha-web")
        self.assertEqual(web["image"], "localhost/alpha:1")
        self.assertEqual(web["desired_state"], "running")
        self.assertEqual(web["observed_state"], "missing")
        self.assertIs(web["ok"], False)
        self.assertIsInstance(web["ports"], list)
        self.assertEqual(len(web["routes"]), 1)
        route = web["routes"][0]
        self.assertEqual((route["name"], route["port"], route["mode"], route["hostname"]),
                         ("rest", 8443, "l4", "alpha.example.net"))
        self.assertTrue(20000 <= route["host_port"] <= 20999, route)
        self.assertIsInstance(alpha["events"], list)
        self.assertTrue(any(e["kind"] == "deployed" for e in alpha["events"]), alpha["events"])
        beta = services["beta"]["components"][0]
        self.assertEqual(beta["container"], "beta")
        self.assertEqual(beta["routes"], [])

    def test_route_port_is_kept_across_deploys(self):
        self.deploy()
        first = json.loads(self.env.run("status", "alpha", "--json").stdout)
        self.deploy()
        again = json.loads(self.env.run("status", "alpha", "--json").stdout)
        port = lambda doc: doc["services"][0]["components"][0]["routes"][0]["host_port"]
        self.assertEqual(port(first), port(again))

    def test_status_of_one_service_and_unknown_service(self):
        self.deploy()
        r = self.env.run("status", "beta")
        self.assertEqual(r.rc, 1, r.stderr)
        self.assertIn("beta", r.stdout)
        self.assertIn("desired=running", r.stdout)
        self.assertNotIn("alpha", r.stdout)
        r = self.env.run("status", "nosuch")
        self.assertEqual(r.rc, 2)
        self.assertIn("nosuch", r.stderr)

    def test_status_json_of_an_empty_registry(self):
        create_empty_registry(self)
        r = self.env.run("status", "--json")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["services"], [])
        r = self.env.run("ls", "--json")
        self.assertEqual(json.loads(r.stdout)["services"], [])

    def test_ls(self):
        self.deploy()
        r = self.env.run("ls")
        self.assertEqual(r.rc, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertIn("SERVICE", lines[0])
        alpha = [l for l in lines if l.startswith("alpha")]
        self.assertEqual(len(alpha), 1, r.stdout)
        self.assertIn("web=missing/running", alpha[0])
        self.assertTrue(any(l.startswith("beta") for l in lines), r.stdout)
        doc = json.loads(self.env.run("ls", "--json").stdout)
        self.assertEqual(sorted(s["name"] for s in doc["services"]), ["alpha", "beta"])

    def test_snapshot_to_a_path(self):
        self.deploy()
        dest = self.env.path("backup.db")
        r = self.env.run("snapshot", dest)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), dest)
        self.assertTrue(file_bytes(dest).startswith(b"SQLite format 3\0"))
        self.assertTrue(sqlite_text_contains(dest, "alpha"))
        self.assertTrue(sqlite_text_contains(dest, "localhost/beta:2"))

    def test_snapshot_default_path(self):
        self.deploy()
        r = self.env.run("snapshot")
        self.assertEqual(r.rc, 0, r.stderr)
        dest = os.path.join(self.env.dir, r.stdout.strip())
        self.assertTrue(os.path.basename(dest).startswith("registry.db.snapshot-"), dest)
        self.assertTrue(sqlite_text_contains(dest, "alpha"))

    def test_snapshot_to_an_unwritable_place_fails_cleanly(self):
        self.deploy()
        r = self.env.run("snapshot", self.env.path("no", "such", "dir", "x.db"))
        self.assertEqual(r.rc, 1, r.stderr)
        self.assertIn("snapshot", r.stderr)

    def test_stopped_component_and_inactive_service(self):
        gamma = self.env.write("gamma.toml", STOPPED_SERVICE)
        r = self.env.run("deploy", gamma)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("gamma-worker: stopped", r.stdout)
        inactive = self.env.write("delta.toml", SIMPLE_SERVICE.replace('"beta"', '"delta"')
                                  .replace('name = "delta"\n', 'name = "delta"\nactive = false\n', 1))
        r = self.env.run("deploy", inactive)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("delta: stored (inactive)", r.stdout)

    def test_rm_forgets_the_service(self):
        self.deploy()
        r = self.env.run("rm", "beta")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("beta: removed", r.stdout)
        doc = json.loads(self.env.run("ls", "--json").stdout)
        self.assertEqual([s["name"] for s in doc["services"]], ["alpha"])
        r = self.env.run("rm", "beta")
        self.assertEqual(r.rc, 2)
        self.assertIn("no such service: beta", r.stderr)


class Eval(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.env.write_config()

    def test_eval_e_sees_agent_and_args_and_returns_exit_code(self):
        r = self.env.run("eval", "-e",
                         'print(type(agent), type(agent.registry), type(agent.runtime.run), '
                         'agent.config.db_path); print(arg[0], arg[1], arg[2], #arg, select("#", ...)); '
                         'return 7', "a", "b c")
        self.assertEqual(r.rc, 7, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split("\t"), ["table", "table", "function", self.env.db])
        self.assertEqual(lines[1].split("\t"), ["(eval -e)", "a", "b c", "2", "2"])

    def test_eval_e_return_values(self):
        self.assertEqual(self.env.run("eval", "-e", "return 0").rc, 0)
        self.assertEqual(self.env.run("eval", "-e", "return false").rc, 1)
        self.assertEqual(self.env.run("eval", "-e", "local x = 1").rc, 0)

    def test_eval_script_with_args(self):
        script = self.env.write("script.lua",
                                'local a, b = ...\n'
                                'print(arg[0], arg[1], arg[2], a, b)\n'
                                'print(agent.config.container_runtime)\n'
                                'return tonumber(arg[2])\n')
        r = self.env.run("eval", script, "one", "3")
        self.assertEqual(r.rc, 3, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split("\t"), [script, "one", "3", "one", "3"])
        self.assertEqual(lines[1], "fake")

    def test_eval_script_error_names_file_and_line(self):
        script = self.env.write("boom.lua", "local t = {}\n\nerror('kaboom')\n")
        r = self.env.run("eval", script)
        self.assertEqual(r.rc, 1, r.stderr)
        # Lua shortens long chunk names from the left ("...dir/boom.lua"): the
        # file name and line are what is always there.
        self.assertMentions(r.stderr, "boom.lua:3:", "kaboom", "traceback")

    def test_eval_script_syntax_error_is_a_usage_error(self):
        script = self.env.write("syntax.lua", "local x = \n\nif then\n")
        r = self.env.run("eval", script)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertMentions(r.stderr, "syntax.lua:3:", "near 'if'")

    def test_eval_missing_script_and_missing_code(self):
        r = self.env.run("eval", self.env.path("nope.lua"))
        self.assertEqual(r.rc, 2)
        self.assertIn("nope.lua", r.stderr)
        r = self.env.run("eval", "-e")
        self.assertEqual(r.rc, 2)
        self.assertIn("-e", r.stderr)
        r = self.env.run("eval")
        self.assertEqual(r.rc, 2)
        r = self.env.run("eval", self.env.dir)
        self.assertEqual(r.rc, 2)
        self.assertIn(self.env.dir + ": Is a directory", r.stderr)

    def test_eval_sleep_uses_the_agent_clock(self):
        r = self.env.run("eval", "-e",
                         "local t0 = agent.clock.now(); agent.clock.sleep(0.2); "
                         "print(agent.clock.now() - t0 >= 0.19)")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "true")

    def test_eval_dry_run_does_not_call_podman_run(self):
        create_empty_registry(self)  # a dry run only reads it
        self.env.fake_podman_config()
        code = ('print(#agent.runtime.list()); '
                'print(agent.runtime.run{name="x", image="y"}); '
                'print(agent.runtime.remove("x"))')
        r = self.env.run("eval", "--dry-run", "-e", code)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^would run x from y")
        self.assertRegex(r.stdout, r"(?m)^would remove x")
        subs = podman_subcommands(self.env.podman_calls())
        # the read-only list went through to (fake) podman; nothing mutating did
        self.assertEqual(subs, ["ps"])

    def test_eval_without_dry_run_does_call_podman_run(self):
        # the positive control of the test above: the same code without --dry-run
        self.env.fake_podman_config()
        r = self.env.run("eval", "-e", 'print(agent.runtime.run{name="x", image="y"})')
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertNotIn("would run", r.stdout)
        self.assertEqual(podman_subcommands(self.env.podman_calls()), ["run"])


class RecoverThroughFakePodman(AgentTestCase):
    """recover end to end: registry -> Lua policy -> C podman runtime -> fake podman."""

    def setUp(self):
        super().setUp()
        # store the definitions with the fake runtime, then recover against the fake podman
        fake_cfg = self.env.write_config(name="fake.toml")
        alpha = self.env.write("alpha.toml", WEB_SERVICE)
        beta = self.env.write("beta.toml", SIMPLE_SERVICE)
        gamma = self.env.write("gamma.toml", STOPPED_SERVICE)
        r = self.env.run("deploy", alpha, beta, gamma, config=fake_cfg)
        self.assertEqual(r.rc, 0, r.stderr)
        status = json.loads(self.env.run("status", "alpha", "--json", config=fake_cfg).stdout)
        self.route_port = status["services"][0]["components"][0]["routes"][0]["host_port"]
        self.env.fake_podman_config()

    def calls_of(self, sub):
        return [c for c in self.env.podman_calls() if podman_subcommands([c])[0] == sub]

    def test_exited_container_is_recreated_running_one_left_alone(self):
        self.env.podman_containers([("alpha-web", "localhost/alpha:1", "exited"),
                                    ("beta", "localhost/beta:2", "running")])
        r = self.env.run("recover", "--json")
        self.assertEqual(r.rc, 0, r.stderr)
        report = json.loads(r.stdout)
        self.assertEqual([e["container"] for e in report["recovered"]], ["alpha-web"])
        self.assertEqual([e["container"] for e in report["already_running"]], ["beta"])
        self.assertEqual(report["failed"], [])
        self.assertEqual(report["summary"]["recovered"], 1)
        self.assertIs(report["dry_run"], False)

        calls = self.env.podman_calls()
        subs = podman_subcommands(calls)
        # the stale container goes first, then the new one is run
        self.assertEqual([s for s in subs if s in MUTATING], ["rm", "run"])
        rm = calls[subs.index("rm")]
        self.assertEqual(rm[-2:], ["--", "alpha-web"])
        self.assertIn("-f", rm)
        run = calls[subs.index("run")]
        self.assertEqual(run[:3], ["run", "-d", "--pull=never"])
        self.assertEqual(option_values(run, "--name"), ["alpha-web"])
        self.assertEqual(option_values(run, "--network"), ["mcpnet"])
        self.assertEqual(option_values(run, "--user"), ["1000:1000"])
        self.assertIn("--restart=no", run)  # the agent supervises (SPEC §10), never podman
        self.assertEqual(option_values(run, "-p"),
                         ["127.0.0.1:18080:8080/tcp", "127.0.0.1:%d:8443/tcp" % self.route_port])
        self.assertEqual(option_values(run, "-v"), ["/srv/alpha:/data"])
        self.assertEqual(sorted(option_values(run, "-e")),
                         ["LOG_LEVEL=debug", "PORT=8443", "PORT_REST=8443"])
        self.assertEqual(run[run.index("--") + 1:], ["localhost/alpha:1", "httpd", "-f", "-p", "8080"])
        # nothing touched beta or the stopped gamma
        for call in calls:
            self.assertNotIn("beta", call[-1:])
            self.assertFalse(any("gamma" in a for a in call), call)

        # idempotent: a second run changes nothing
        self.env.reset_podman_calls()
        r = self.env.run("recover", "--json")
        self.assertEqual(r.rc, 0, r.stderr)
        report = json.loads(r.stdout)
        self.assertEqual(report["recovered"], [])
        self.assertEqual(sorted(e["container"] for e in report["already_running"]), ["alpha-web", "beta"])
        self.assertFalse(MUTATING & set(podman_subcommands(self.env.podman_calls())))

        # status now sees both running, with the route's port published
        r = self.env.run("status", "--json")
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        doc = json.loads(r.stdout)
        web = [s for s in doc["services"] if s["name"] == "alpha"][0]["components"][0]
        self.assertEqual(web["observed_state"], "running")
        self.assertIn(self.route_port, [p["host_port"] for p in web["ports"]])
        events = [s for s in doc["services"] if s["name"] == "alpha"][0]["events"]
        self.assertTrue(any(e["kind"] == "recovered" for e in events), events)

    def test_missing_container_is_run_without_rm_of_nothing_listed(self):
        self.env.podman_containers([("beta", "localhost/beta:2", "created")])
        r = self.env.run("recover")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^recovered\s+alpha/web \(alpha-web\)")
        self.assertRegex(r.stdout, r"(?m)^recovered\s+beta")
        self.assertIn("recovered 2, already running 0, skipped 0, failed 0", r.stdout)
        runs = [option_values(c, "--name")[0] for c in self.calls_of("run")]
        self.assertEqual(sorted(runs), ["alpha-web", "beta"])
        # the created (not running) beta was removed before it was run again
        self.assertEqual([c[-1] for c in self.calls_of("rm")], ["beta"])

    def test_dry_run_runs_no_mutating_command(self):
        self.env.podman_containers([("alpha-web", "localhost/alpha:1", "exited")])
        r = self.env.run("recover", "--dry-run", "--json")
        self.assertEqual(r.rc, 0, r.stderr)
        report = json.loads(r.stdout)
        self.assertIs(report["dry_run"], True)
        planned = {e["container"]: e["action"] for e in report["planned"]}
        self.assertEqual(planned, {"alpha-web": "recreate", "beta": "run"})
        self.assertEqual(report["recovered"], [])
        subs = podman_subcommands(self.env.podman_calls())
        self.assertIn("ps", subs)
        self.assertFalse(MUTATING & set(subs), subs)
        r = self.env.run("recover", "--dry-run")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^would recreate\s+alpha/web")
        self.assertFalse(MUTATING & set(podman_subcommands(self.env.podman_calls())))

    def test_missing_image_is_skipped_exit_1(self):
        self.env.podman_containers([])
        self.env.podman_images(["localhost/beta:2"])
        r = self.env.run("recover", "--json")
        self.assertEqual(r.rc, 1, r.stderr)
        report = json.loads(r.stdout)
        self.assertEqual([(e["container"], e["reason"]) for e in report["skipped"]],
                         [("alpha-web", "no such image")])
        self.assertEqual([e["container"] for e in report["recovered"]], ["beta"])
        self.assertTrue(any("localhost/alpha:1" in w for w in report["warnings"]), report)
        # recover no longer asks `image exists` first: podman's own refusal of
        # the run (--pull=never) is what marks the image missing
        self.assertEqual(sorted(option_values(c, "--name") for c in self.calls_of("run")),
                         [["alpha-web"], ["beta"]])
        self.assertEqual(self.calls_of("image"), [])

    def test_failing_run_is_reported_exit_1(self):
        self.env.podman_containers([("beta", "localhost/beta:2", "running")])
        self.env.podman_fail({"run": "crun: cannot set up the rootfs"})
        r = self.env.run("recover", "--json")
        self.assertEqual(r.rc, 1, r.stderr)
        report = json.loads(r.stdout)
        self.assertEqual([e["container"] for e in report["failed"]], ["alpha-web"])
        self.assertIn("cannot set up the rootfs", report["failed"][0]["reason"])
        self.assertEqual([e["container"] for e in report["already_running"]], ["beta"])

    def test_deploy_and_stop_start_through_podman(self):
        self.env.podman_containers([])
        r = self.env.run("deploy", self.env.path("beta.toml"))
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("beta: started", r.stdout)
        r = self.env.run("stop", "beta")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("beta: stopped", r.stdout)
        doc = json.loads(self.env.run("status", "beta", "--json").stdout)
        comp = doc["services"][0]["components"][0]
        self.assertEqual((comp["desired_state"], comp["observed_state"]), ("stopped", "exited"))
        r = self.env.run("start", "beta")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("beta: started", r.stdout)
        subs = [s for s in podman_subcommands(self.env.podman_calls()) if s in MUTATING]
        # deploy removes only a container that exists (mcp.lifecycle inspects first);
        # start starts the same container again: its mcp.spec-hash label matches
        self.assertEqual(subs, ["run", "stop", "start"])

    def test_rm_that_podman_refuses_keeps_the_service(self):
        self.env.podman_containers([("beta", "localhost/beta:2", "running")])
        self.env.podman_fail({"rm": "container is busy"})
        r = self.env.run("rm", "beta")
        self.assertEqual(r.rc, 1, r.stderr)
        self.assertMentions(r.stdout, "beta: remove failed", "container is busy")
        self.assertIn("kept in the registry", r.stderr)
        doc = json.loads(self.env.run("ls", "--json").stdout)
        self.assertIn("beta", [s["name"] for s in doc["services"]])

    def test_unknown_target_is_a_usage_error(self):
        for cmd in (["start", "alpha/nosuch"], ["stop", "nosuch"], ["restart"], ["rm", "alpha/web"]):
            r = self.env.run(*cmd)
            self.assertEqual(r.rc, 2, "%s: %s" % (cmd, r.stderr))
            self.assertIn(cmd[0], r.stderr)
        self.assertFalse(MUTATING & set(podman_subcommands(self.env.podman_calls())))


# Each command's flags (besides -h, --help, which every command takes).
FLAGS = {"recover": ["--dry-run", "--json"], "boot": ["--dry-run", "--json"],
         "eval": ["--dry-run", "-e CODE"], "status": ["--json"], "ls": ["--json"],
         "events": ["--since DURATION", "--follow", "--json"], "version": ["--verbose", "--json"],
         "deploy": ["--dry-run", "--allow-unknown"], "check": ["--strict", "--lint"],
         "test": ["--filter PATTERN", "--init DIR"]}


def help_flags(text):
    """{flag synopsis: description} from the "flags:" block of COMMAND --help."""
    block = text.split("\nflags:\n", 1)[1].split("\n\n", 1)[0]
    out = {}
    for line in block.splitlines():
        m = re.match(r"^  (\S.*?)\s{2,}(\S.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


class CommandTable(AgentTestCase):
    """One table drives parsing and help: flags with their meaning, suggestions."""

    def test_command_help_lists_every_flag_with_its_meaning(self):
        for cmd in COMMANDS + ["run", "events"]:
            r = self.env.run(cmd, "--help", config=None)
            self.assertEqual(r.rc, 0, r.stderr)
            flags = help_flags(r.stdout)
            want = FLAGS.get(cmd, []) + ["-h, --help"]
            self.assertEqual(sorted(flags), sorted(want), "%s --help:\n%s" % (cmd, r.stdout))
            for flag, meaning in flags.items():
                self.assertGreaterEqual(len(meaning.split()), 2, "%s %s: %r" % (cmd, flag, meaning))
            usage = r.stdout.splitlines()[0]
            for flag in FLAGS.get(cmd, []):
                if flag.startswith("--"):
                    self.assertIn("[%s]" % flag, usage)

    def test_help_command_and_flag_help_agree(self):
        for cmd in ("recover", "events", "eval"):
            self.assertEqual(self.env.run("help", cmd, config=None).stdout,
                             self.env.run(cmd, "-h", config=None).stdout)

    def test_misspelt_command_suggests_the_nearest(self):
        for args in (["stauts"], ["help", "stauts"]):
            r = self.env.run(*args, config=None)
            self.assertEqual(r.rc, 2, r.stderr)
            self.assertIn("unknown command 'stauts' (did you mean 'status'?)", r.stderr)
        r = self.env.run("revocer", config=None)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertIn("did you mean 'recover'?", r.stderr)
        r = self.env.run("frobnicate", config=None)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertNotIn("did you mean", r.stderr)
        r = self.env.run("--confg", "x", "ls", config=None)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertIn("did you mean '--config'?", r.stderr)

    def test_misspelt_flag_suggests_the_nearest(self):
        self.env.write_config()
        for args, near in ((["status", "--jsn"], "--json"), (["recover", "--dry-rn"], "--dry-run"),
                           (["events", "--folow"], "--follow"), (["ls", "--hlep"], "--help")):
            r = self.env.run(*args)
            self.assertEqual(r.rc, 2, "%s: %s" % (args, r.stderr))
            self.assertIn("unknown flag '%s' (did you mean '%s'?)" % (args[1], near), r.stderr)
        # nothing near: the command's flags are listed instead
        r = self.env.run("deploy", "--bogus", self.env.write("x.toml", SIMPLE_SERVICE))
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertMentions(r.stderr, "deploy", "unknown flag '--bogus'",
                            "deploy takes: --dry-run --allow-unknown --help")
        self.assertFalse(os.path.exists(self.env.db), "a refused command opened the registry")

    def test_flag_values_and_argument_counts(self):
        self.env.write_config()
        # --since takes a value, spelt either way: "5m" is not taken for a second SERVICE
        for args in (["events", "web", "--since", "5m"], ["events", "--since=5m", "web", "--follow"]):
            r = self.env.run(*args)
            self.assertEqual(r.rc, 2, r.stderr)
            self.assertMentions(r.stderr, "no registry at", self.env.db)
        r = self.env.run("events", "web", "db")
        self.assertMentions(r.stderr, "unexpected argument 'db'")
        r = self.env.run("events", "--since")
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertIn("--since needs DURATION", r.stderr)
        r = self.env.run("status", "--json=yes")
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertIn("--json takes no value", r.stderr)
        for args, needle in ((["restart"], "missing SERVICE[/COMPONENT]"),
                             (["deploy"], "missing FILE.toml"), (["ls", "x"], "unexpected argument 'x'")):
            r = self.env.run(*args)
            self.assertEqual(r.rc, 2, r.stderr)
            self.assertMentions(r.stderr, needle, "usage: mcp-agent " + args[0])

    def test_eval_flags_stop_at_the_script(self):
        self.env.write_config()
        create_empty_registry(self)
        r = self.env.run("eval", "-e", "print(table.concat(arg, ' '))", "--json", "--help", "--", "x")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "--json --help -- x")
        script = self.env.write("args.lua", "print(#arg, ...)\n")
        r = self.env.run("eval", "--dry-run", script, "--dry-run", "-e")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["2", "--dry-run", "-e"])


class ReadOnlyCommandsCreateNothing(AgentTestCase):
    """Readers on a registry that does not exist: exit 2 naming it, no file made."""

    READERS = (["status"], ["status", "web", "--json"], ["ls"], ["ls", "--json"], ["snapshot"],
               ["snapshot", "copy.db"], ["recover", "--dry-run"], ["recover", "--dry-run", "--json"],
               ["boot", "--dry-run"], ["eval", "--dry-run", "-e", "return 0"], ["events"])

    def assert_readers_refused(self, db):
        listing = sorted(os.listdir(self.env.dir))
        for cmd in self.READERS:
            r = self.env.run(*cmd, timeout=10)
            self.assertEqual(r.rc, 2, "%s: %s%s" % (cmd, r.stdout, r.stderr))
            self.assertMentions(r.stderr, "no registry at " + db, "deploy")
            self.assertEqual(sorted(os.listdir(self.env.dir)), listing, "%s created a file" % cmd)
            self.assertFalse(os.path.exists(db))
        self.assertEqual(self.env.podman_calls(), [])

    def test_missing_registry_file(self):
        self.env.fake_podman_config()
        self.assert_readers_refused(self.env.db)

    def test_missing_registry_directory(self):
        db = self.env.path("var", "lib", "mcp", "registry.db")
        self.env.fake_podman_config(db=db)
        self.assert_readers_refused(db)
        self.assertFalse(os.path.exists(self.env.path("var")))

    def test_default_registry_in_the_working_directory(self):
        # no config at all: ./mcp-agent.db, which status must not create
        listing = sorted(os.listdir(self.env.dir))
        r = self.env.run("status", config=None, env={"MCP_AGENT_CONFIG": ""})
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertMentions(r.stderr, "no registry at ./mcp-agent.db", "deploy")
        self.assertEqual(sorted(os.listdir(self.env.dir)), listing)

    def test_writers_still_create_it(self):
        self.env.write_config()
        for cmd in (["recover"], ["boot"], ["eval", "-e", "return 0"]):
            if os.path.exists(self.env.db):
                os.unlink(self.env.db)
            r = self.env.run(*cmd)
            self.assertEqual(r.rc, 0, "%s: %s" % (cmd, r.stderr))
            self.assertTrue(os.path.exists(self.env.db), cmd)
            r = self.env.run("ls", "--json")
            self.assertEqual(r.rc, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["services"], [])

    def test_check_on_a_fresh_install(self):
        db = self.env.path("srv", "mcp", "mcp.db")
        cfg = self.env.write_config(db=db)
        r = self.env.run("check")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertMentions(r.stdout, cfg, "test is successful")
        self.assertFalse(os.path.exists(self.env.path("srv")), "check created the registry's directory")


if __name__ == "__main__":
    unittest.main()
