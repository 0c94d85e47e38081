"""`mcp-agent boot` end to end on real podman (SPEC §6), in an isolated store.

Service definitions are stored in the registry without starting anything
(tests/fixtures/boot/store_services.lua through `eval`), so every container
here is started by boot itself. The busybox test image provides httpd, nc,
sh and sleep; a container that must reach another one's pinned host port
uses network = "host" (the host's 127.0.0.1 is then its own).

(a) two stages, stage 2 needs stage 1 listening before it starts;
(b) unknown service, a later stage that times out, a service in no stage;
(c) SIGTERM during an endless foundation wait;
(d) a foundation container that dies during the wait is restarted.
"""
import datetime
import json
import os
import re
import signal
import socket
import threading
import time
import unittest
import urllib.error
import urllib.request

from agent_env import FIXTURES, AgentEnv, check_health, toml_str
from podman_env import PodmanEnv, podman_missing_reason

STORE_SCRIPT = os.path.join(FIXTURES, "boot", "store_services.lua")
LOG_TIME = re.compile(r"^time=(\S+)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port, timeout=2):
    with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=timeout) as r:
        return r.status


def answers_http(port, tries=50):
    """True once something answers HTTP on port (any status, 404 included)."""
    for _ in range(tries):
        try:
            fetch(port, timeout=1)
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.1)
    return False


def parse_time(text):
    """A podman StartedAt or a log time (RFC 3339, up to ns, Z or +hh:mm, or
    podman's "2006-01-02 15:04:05.999 +0000 UTC") as an aware datetime."""
    text = text.strip()
    m = re.match(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?", text)
    if not m:
        raise ValueError("unparsable time %r" % text)
    day, clock, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    dt = datetime.datetime.strptime(day + " " + clock, "%Y-%m-%d %H:%M:%S").replace(microsecond=micro)
    if not zone or zone == "Z":
        return dt.replace(tzinfo=datetime.timezone.utc)
    zone = zone.replace(":", "")
    delta = datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    return dt.replace(tzinfo=datetime.timezone(delta if zone[0] == "+" else -delta))


def log_time_of(stderr, needle):
    """The time= of the first log line of stderr containing needle."""
    for line in stderr.splitlines():
        if needle in line:
            m = LOG_TIME.match(line)
            if m:
                return parse_time(m.group(1))
    raise AssertionError("no log line with %r in:\n%s" % (needle, stderr))


def session_processes(sid):
    """[(pid, comm)] of the processes in session sid (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid:  # state ppid pgrp session …
            found.append((int(entry), comm))
    return found


class LiveAgent:
    """A running agent whose stderr is read line by line as it comes."""

    def __init__(self, agent_env, args, env):
        self.proc = agent_env.start(*args, env=env)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # EOF
            self.cond.notify_all()

    def stderr(self):
        with self.cond:
            return "".join(l for l in self.lines if l is not None)

    def wait_for_log(self, needle, timeout):
        """Blocks until a stderr line contains needle; False on timeout or EOF."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if any(l is not None and needle in l for l in self.lines):
                    return True
                if self.lines and self.lines[-1] is None:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)

    def finish(self, timeout):
        """Waits for exit; returns (rc, stdout, stderr). Kills it on timeout and fails."""
        try:
            self.proc.wait(timeout=timeout)
        except Exception:
            self.proc.kill()
            self.proc.wait()
            self.reader.join(10)
            raise AssertionError("agent did not exit within %ss:\n%s" % (timeout, self.stderr()))
        self.reader.join(10)
        out = self.proc.stdout.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        err = self.stderr()
        check_health(self.proc.mcp_argv, self.proc.returncode, err)
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def service_toml(name, image, cmd, ports=(), network=None, volumes=(), health_port=None):
    lines = ["name = %s" % toml_str(name), "[[components]]", "name = %s" % toml_str(name),
             "image = %s" % toml_str(image),
             "cmd = [%s]" % ", ".join(toml_str(c) for c in cmd)]
    if ports:
        lines.append("ports = [%s]" % ", ".join(toml_str(p) for p in ports))
    if volumes:
        lines.append("volumes = [%s]" % ", ".join(toml_str(v) for v in volumes))
    if network:
        lines.append("network = %s" % toml_str(network))
    if health_port:
        lines += ["[components.health]", 'check = "tcp"', "port = %d" % health_port]
    return "\n".join(lines) + "\n"


def stage_toml(name, services, timeout, health=None):
    lines = ["[[boot.sequence]]", "name = %s" % toml_str(name),
             "services = [%s]" % ", ".join(toml_str(s) for s in services),
             "timeout = %s" % toml_str(timeout)]
    if health:
        lines.append("health = %s" % toml_str(health))
    return "\n".join(lines) + "\n"


@unittest.skipIf(podman_missing_reason(), podman_missing_reason() or "")
class BootOnPodman(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.pod = PodmanEnv()
        self.addCleanup(self.pod.cleanup)  # removes every container of the store by name, then the store
        self.agent = AgentEnv(self.id().split(".")[-1])
        self.addCleanup(self.agent.cleanup)
        self.img = self.pod.image
        self.range_start = free_port()
        self.agent_env = {"CONTAINERS_CONF": self.pod.conf, "TMPDIR": self.pod.env["TMPDIR"]}

    # ---- set-up helpers ----

    def configure(self, stages, services):
        """Writes the config with the boot stages and stores the services
        ({name: toml}) in the registry without starting them."""
        self.agent.write("mcp-agent.toml", "\n".join([
            "[agent]",
            'container_runtime = "podman"',
            "podman_args = [%s]" % ", ".join(toml_str(a) for a in self.pod.podman_args),
            'podman_timeout = "60s"',
            'port_range = "%d-%d"' % (self.range_start, min(self.range_start + 50, 65535)),
            "[database]",
            "path = %s" % toml_str(self.agent.db),
            "",
        ]) + "\n" + "\n".join(stages))
        paths = []
        for name, text in services.items():
            self.pod.track(name)
            paths.append(self.agent.write("svc-%s.toml" % name, text))
        r = self.agent.run("eval", STORE_SCRIPT, *paths, timeout=60, env=self.agent_env)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertEqual(sorted(r.stdout.split()), sorted(["stored"] * len(services) + list(services)))
        self.assertEqual(self.pod.containers(), [], "storing must not start anything")

    def boot(self, timeout=90):
        r = self.agent.run("boot", "--json", timeout=timeout, env=self.agent_env)
        try:
            report = json.loads(r.stdout)
        except ValueError:
            self.fail("boot --json printed no JSON (rc %d):\n%s\n%s" % (r.rc, r.stdout, r.stderr))
        return r, report

    def stage(self, report, name):
        for st in report["stages"]:
            if st["name"] == name:
                return st
        self.fail("no stage %r in %s" % (name, report))

    def service(self, stage, name):
        for s in stage["services"]:
            if s["service"] == name:
                return s
        self.fail("no service %r in stage %s" % (name, stage))

    def started_at(self, name):
        info = self.pod.inspect(name)
        self.assertIsNotNone(info, "container %s does not exist" % name)
        return parse_time(info["State"]["StartedAt"])

    def assert_running(self, name):
        info = self.pod.inspect(name)
        self.assertIsNotNone(info, "container %s does not exist" % name)
        self.assertEqual(info["State"]["Status"], "running", "%s: %s" % (name, info["State"]))
        return info

    # ---- (a) ----

    def test_stage_two_starts_only_after_stage_one_is_healthy(self):
        p1, p2 = free_port(), free_port()
        # base listens only after 1 s: "healthy" needs real probing.
        base = service_toml("base", self.img, ["sh", "-c", "sleep 1; exec httpd -f -p 8080"],
                            ports=["127.0.0.1:%d:8080/tcp" % p1], health_port=8080)
        # app exits 1 unless base already answers on the host's loopback.
        check = ("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 %d | grep -q HTTP || exit 1; "
                 "exec httpd -f -p 127.0.0.1:%d" % (p1, p2))
        app = service_toml("app", self.img, ["sh", "-c", check], network="host")
        self.configure([stage_toml("foundation", ["base"], "30s", "tcp"),
                        stage_toml("apps", ["app"], "30s", "tcp")],
                       {"base": base, "app": app})

        r, report = self.boot()
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertTrue(report["healthy"])
        self.assertFalse(report["cancelled"])
        self.assertEqual([s["name"] for s in report["stages"]], ["foundation", "apps"])
        for st in report["stages"]:
            self.assertTrue(st["healthy"], st)
            self.assertFalse(st["timed_out"], st)
            self.assertEqual(st["unknown"], [])
        self.assertTrue(self.stage(report, "foundation")["foundation"])
        self.assertFalse(self.stage(report, "apps")["foundation"])
        b = self.service(self.stage(report, "foundation"), "base")
        a = self.service(self.stage(report, "apps"), "app")
        for s in (a, b):
            self.assertTrue(s["healthy"], s)
            self.assertGreaterEqual(s["attempts"], 1, s)
            self.assertIsInstance(s["time_to_healthy"], (int, float), s)
            self.assertGreaterEqual(s["time_to_healthy"], 0, s)
            self.assertEqual(s["restarts"], 0, s)
        # base needed at least a second before it listened.
        self.assertGreater(b["attempts"], 1, b)
        self.assertGreaterEqual(b["time_to_healthy"], 0.9, b)

        # Order: app's container started after base was healthy (log) and
        # at least the 1 s base sleeps after base started; it is still
        # running (its check passed on the first try) and answers.
        self.assertGreater(log_time_of(r.stderr, "boot stage apps starting"),
                           log_time_of(r.stderr, "boot stage foundation healthy") -
                           datetime.timedelta(milliseconds=1))
        base_healthy = log_time_of(r.stderr, "base is healthy")
        self.assertGreaterEqual(self.started_at("app") + datetime.timedelta(milliseconds=1), base_healthy)
        self.assertGreaterEqual(self.started_at("app") - self.started_at("base"), datetime.timedelta(seconds=1))
        self.assert_running("base")
        info = self.assert_running("app")
        self.assertEqual(info.get("RestartCount", 0), 0)
        self.assertTrue(answers_http(p1), "base does not answer on %d" % p1)
        self.assertTrue(answers_http(p2), "app does not answer on %d" % p2)

    # ---- (b) ----

    def test_unknown_service_timed_out_stage_and_services_in_no_stage(self):
        p1, p3 = free_port(), free_port()
        base = service_toml("base", self.img, ["httpd", "-f", "-p", "8080"],
                            ports=["127.0.0.1:%d:8080/tcp" % p1], health_port=8080)
        # runs, publishes 8080, listens on nothing: never healthy
        never = service_toml("never", self.img, ["sleep", "3600"],
                             ports=["127.0.0.1:%d:8080/tcp" % p3], health_port=8080)
        extra = service_toml("extra", self.img, ["sleep", "3600"])
        self.configure([stage_toml("foundation", ["base"], "30s"),
                        stage_toml("apps", ["ghost", "never"], "2s", "tcp")],
                       {"base": base, "never": never, "extra": extra})

        r, report = self.boot()
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        self.assertFalse(report["healthy"])
        self.assertFalse(report["cancelled"])
        self.assertEqual(report["unknown"], ["ghost"])
        self.assertTrue(self.stage(report, "foundation")["healthy"])
        apps = self.stage(report, "apps")
        self.assertEqual(apps["unknown"], ["ghost"])
        self.assertFalse(apps["healthy"])
        self.assertTrue(apps["timed_out"])
        self.assertGreaterEqual(apps["elapsed"], 1.9)
        self.assertLess(apps["elapsed"], 30, "the 2 s stage timeout was not kept")
        n = self.service(apps, "never")
        self.assertFalse(n["healthy"])
        self.assertGreater(n["attempts"], 1, n)
        self.assertNotIn("time_to_healthy", n)
        self.assertIn("never", n.get("reason", ""), n)
        self.assertMentions(r.stderr, "boot stage apps names unknown service ghost",
                            "boot stage apps not healthy after 2s, proceeding",
                            "boot: starting services in no stage")

        # The service in no stage was started, after the last stage gave up.
        recovered = [e["container"] for e in report["unstaged"]["recovered"]]
        self.assertEqual(recovered, ["extra"])
        self.assertEqual(report["unstaged"]["failed"], [])
        self.assert_running("extra")
        self.assert_running("never")  # not healthy, but left running
        gave_up = log_time_of(r.stderr, "boot stage apps not healthy after")
        self.assertGreaterEqual(self.started_at("extra") + datetime.timedelta(milliseconds=1), gave_up)
        # ... which is the 2 s stage timeout after that stage began
        self.assertGreaterEqual(self.started_at("extra") - log_time_of(r.stderr, "boot stage apps starting"),
                                datetime.timedelta(seconds=1.9))
        # and the later stage's services were not started by the foundation stage
        self.assertGreaterEqual(self.started_at("never") + datetime.timedelta(milliseconds=1),
                                log_time_of(r.stderr, "boot stage foundation healthy"))

    def assertMentions(self, text, *needles):
        for needle in needles:
            self.assertIn(needle, text)

    # ---- (c) ----

    def start_stuck_foundation(self):
        """Config: a foundation that never gets healthy (1 s timeout) and a
        later stage; returns a LiveAgent running `boot --json` that is well
        into the endless foundation wait."""
        port = free_port()
        stuck = service_toml("stuck", self.img, ["sleep", "3600"],
                             ports=["127.0.0.1:%d:8080/tcp" % port], health_port=8080)
        later = service_toml("later", self.img, ["sleep", "3600"])
        self.configure([stage_toml("foundation", ["stuck"], "1s", "tcp"),
                        stage_toml("apps", ["later"], "30s")],
                       {"stuck": stuck, "later": later})
        live = LiveAgent(self.agent, ["boot", "--json"], self.agent_env)
        self.addCleanup(live.kill)
        self.assertTrue(live.wait_for_log("retrying until it is", 60),
                        "the foundation never said it keeps retrying:\n" + live.stderr())
        time.sleep(1.5)  # well into the endless wait (probes, inspects, backoff sleeps)
        self.assertIsNone(live.proc.poll(), "boot gave up on its own:\n" + live.stderr())
        return live

    def test_sigterm_during_an_endless_foundation_wait_exits_promptly_and_cleanly(self):
        live = self.start_stuck_foundation()
        sid = live.proc.pid  # started with start_new_session: its own session
        self.assertIn(sid, [pid for pid, _ in session_processes(sid)])
        t0 = time.monotonic()
        live.proc.send_signal(signal.SIGTERM)
        rc, out, err = live.finish(timeout=30)  # sanitizer reports and crash signals fail here
        after = time.monotonic() - t0
        self.assertLess(after, 5.0, "exited %.2f s after SIGTERM" % after)
        self.assertGreater(rc, 0, "a clean non-zero exit, not a death by signal")
        self.assertIn("signal received: cancelling tasks", err)
        self.assertIn('reason="cancelled by SIGTERM"', err)
        self.assertNotIn("boot stage apps", err)
        self.assertIsNone(self.pod.inspect("later"), "a later stage started after SIGTERM")
        if out.strip():  # no report is printed today (see the test below); never a partial one
            self.assertTrue(json.loads(out)["cancelled"])
        # No podman the agent ran outlives it (conmon and the container
        # itself detach into sessions of their own, as they should).
        time.sleep(0.3)
        left = [(pid, comm) for pid, comm in session_processes(sid) if comm != "conmon"]
        self.assertEqual(left, [], "processes of the agent's session outlive it")
        self.assert_running("stuck")  # boot leaves its containers alone when stopped

    def test_a_boot_stopped_by_sigterm_still_prints_its_report(self):
        live = self.start_stuck_foundation()
        live.proc.send_signal(signal.SIGTERM)
        rc, out, err = live.finish(timeout=30)
        self.assertGreater(rc, 0)
        report = json.loads(out)
        self.assertTrue(report["cancelled"])
        self.assertFalse(report["healthy"])
        self.assertEqual([s["name"] for s in report["stages"]], ["foundation"])

    # ---- (d) ----

    def test_a_foundation_container_that_dies_during_the_wait_is_restarted(self):
        port = free_port()
        marker_dir = self.agent.path("marker")
        os.makedirs(marker_dir)
        # First start: leave a marker, die after 1 s without listening.
        # Any later start (the marker is in a host volume): listen.
        script = ("if [ -e /m/started ]; then exec httpd -f -p 8080; fi; "
                  "touch /m/started; sleep 1; exit 3")
        flaky = service_toml("flaky", self.img, ["sh", "-c", script],
                             ports=["127.0.0.1:%d:8080/tcp" % port], volumes=["%s:/m" % marker_dir],
                             health_port=8080)
        self.configure([stage_toml("foundation", ["flaky"], "30s", "tcp")], {"flaky": flaky})

        r, report = self.boot()
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertTrue(report["healthy"])
        self.assertTrue(os.path.exists(os.path.join(marker_dir, "started")))
        f = self.service(self.stage(report, "foundation"), "flaky")
        self.assertTrue(f["healthy"], f)
        self.assertGreaterEqual(f["restarts"], 1, f)
        self.assertGreaterEqual(f["time_to_healthy"], 0.9, f)
        # podman may still say "stopped" (before its cleanup) or already "exited"
        said = [line for line in r.stderr.splitlines() if re.search(
            r'msg="flaky is not running \(container (exited|stopped)\), restarting it"', line)]
        self.assertEqual(len(said), 1, r.stderr)  # the first time warns; repeats are debug
        self.assertIn("exit_code=3", said[0])
        self.assert_running("flaky")
        self.assertTrue(answers_http(port))
        # the restart was recorded as an event in the registry
        ev = self.agent.run("eval", "-e",
                            "for _, e in ipairs(agent.registry.events('flaky', 50)) do print(e.kind) end",
                            env=self.agent_env)
        self.assertIn("restarted", ev.stdout.split(), ev.stdout + ev.stderr)


if __name__ == "__main__":
    unittest.main()
