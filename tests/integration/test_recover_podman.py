"""recover end to end on real podman (SPEC §5), in an isolated store.

Deploy services with fixed ports, routes, env, volumes and cmd; make podman
lose its state (its database deleted while storage keeps the names, or the
whole store gone); `recover`; every desired container must be back with the
same ports, env, volumes and cmd as podman inspect showed before, and a
second `recover` must find everything already running.
"""
import json
import os
import socket
import unittest
import urllib.request

from agent_env import AgentEnv, toml_str
from podman_env import PodmanEnv, podman_missing_reason


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port, path="/index.html", timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.read().decode()


def wait_fetch(port, path="/index.html", tries=50):
    """The container's httpd may need a moment after podman run returns."""
    last = None
    for _ in range(tries):
        try:
            return fetch(port, path, timeout=1)
        except OSError as e:
            last = e
            import time
            time.sleep(0.1)
    raise AssertionError("nothing answered on port %d: %s" % (port, last))


def essentials(inspect):
    """What recover must reproduce: ports, env we set, mounts, cmd, user, restart."""
    hc, cfg = inspect["HostConfig"], inspect["Config"]
    ports = {k: sorted((b["HostIp"], b["HostPort"]) for b in (v or []))
             for k, v in (hc.get("PortBindings") or {}).items()}
    env = sorted(e for e in cfg.get("Env") or [] if e.split("=", 1)[0] in
                 ("GREETING", "MODE", "PORT", "PORT_HTTP", "PORT_ADMIN"))
    mounts = sorted((m["Source"], m["Destination"]) for m in inspect.get("Mounts") or [])
    return {"ports": ports, "env": env, "mounts": mounts, "cmd": cfg.get("Cmd"),
            "image": inspect.get("ImageName"), "restart": (hc.get("RestartPolicy") or {}).get("Name")}


@unittest.skipIf(podman_missing_reason(), podman_missing_reason() or "")
class RecoverOnPodman(unittest.TestCase):
    def setUp(self):
        self.pod = PodmanEnv()
        self.addCleanup(self.pod.cleanup)
        self.agent = AgentEnv(self.id())
        self.addCleanup(self.agent.cleanup)
        self.data = self.agent.path("data")
        os.makedirs(self.data)
        with open(os.path.join(self.data, "index.html"), "w") as f:
            f.write("from the volume\n")
        self.api_port = free_port()
        self.range_start = free_port()  # a free spot; the agent skips ports in use
        self.agent.write("mcp-agent.toml", "\n".join([
            "[agent]",
            'container_runtime = "podman"',
            "podman_args = [%s]" % ", ".join(toml_str(a) for a in self.pod.podman_args),
            'podman_timeout = "60s"',
            'port_range = "%d-%d"' % (self.range_start, min(self.range_start + 50, 65535)),
            "[database]",
            "path = %s" % toml_str(self.agent.db),
            "",
        ]))
        img = self.pod.image
        self.agent.write("api.toml", f"""
name = "api"
[[components]]
name = "api"
image = "{img}"
ports = ["127.0.0.1:{self.api_port}:8080/tcp"]
env = ["GREETING=hello", "MODE=test"]
volumes = ["{self.data}:/data:ro"]
cmd = ["httpd", "-f", "-p", "8080", "-h", "/data"]
restart = "no"

[[components]]
name = "web"
image = "{img}"
cmd = ["sh", "-c", "echo routed > /tmp/index.html && exec httpd -f -p $PORT -h /tmp"]
[[components.routes]]
name = "http"
hostname = "web.test.internal"
[[components.routes]]
name = "admin"
port = 9000
""")
        self.agent.write("worker.toml", f"""
name = "worker"
[[components]]
name = "worker"
image = "{img}"
cmd = ["sleep", "3600"]
""")
        self.agent.write("batch.toml", f"""
name = "batch"
[[components]]
name = "batch"
image = "{img}"
cmd = ["sleep", "3600"]
desired_state = "stopped"
""")
        for name in ("api", "api-web", "worker", "batch"):
            self.pod.track(name)

    def run_agent(self, *args, timeout=120):
        return self.agent.run(*args, timeout=timeout, env={"CONTAINERS_CONF": self.pod.conf,
                                                           "TMPDIR": self.pod.env["TMPDIR"]})

    def recover_json(self):
        r = self.run_agent("recover", "--json")
        report = json.loads(r.stdout)
        return r, report

    def names(self, entries):
        return sorted(e["container"] for e in entries)

    def deploy_and_snapshot(self):
        r = self.run_agent("deploy", self.agent.path("api.toml"), self.agent.path("worker.toml"),
                           self.agent.path("batch.toml"))
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        before = {n: self.pod.inspect(n) for n in ("api", "api-web", "worker")}
        for n, i in before.items():
            self.assertIsNotNone(i, n)
            self.assertEqual(i["State"]["Status"], "running", n)
        self.assertIsNone(self.pod.inspect("batch"))
        self.assertEqual(wait_fetch(self.api_port), "from the volume\n")
        status = json.loads(self.run_agent("status", "api", "--json").stdout)
        web = [c for c in status["services"][0]["components"] if c["name"] == "web"][0]
        self.route_ports = {r["name"]: r["host_port"] for r in web["routes"]}
        self.assertEqual(wait_fetch(self.route_ports["http"]), "routed\n")
        return {n: essentials(i) for n, i in before.items()}

    def check_back(self, before):
        for name, want in before.items():
            got = self.pod.inspect(name)
            self.assertIsNotNone(got, name)
            self.assertEqual(got["State"]["Status"], "running", name)
            self.assertEqual(essentials(got), want, name)
        self.assertIsNone(self.pod.inspect("batch"), "desired stopped must stay absent")
        self.assertEqual(wait_fetch(self.api_port), "from the volume\n")
        self.assertEqual(wait_fetch(self.route_ports["http"]), "routed\n")

    def test_recover_after_podman_database_loss(self):
        before = self.deploy_and_snapshot()
        # the route env and mappings are what SPEC §4 says
        web = before["api-web"]
        http, admin = self.route_ports["http"], self.route_ports["admin"]
        self.assertIn("PORT=%d" % http, web["env"])
        self.assertIn("PORT_HTTP=%d" % http, web["env"])
        self.assertIn("PORT_ADMIN=9000", web["env"])
        self.assertEqual(web["ports"]["%d/tcp" % http], [("127.0.0.1", str(http))])
        self.assertEqual(web["ports"]["9000/tcp"], [("127.0.0.1", str(admin))])

        self.pod.wipe_store(keep_storage=True)
        self.assertEqual(self.pod.containers(), [], "podman must have forgotten everything")

        r, report = self.recover_json()
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertEqual(self.names(report["recovered"]), ["api", "api-web", "worker"])
        self.assertEqual(report["failed"], [])
        self.check_back(before)

        r, report = self.recover_json()
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertEqual(report["recovered"], [])
        self.assertEqual(self.names(report["already_running"]), ["api", "api-web", "worker"])

    def test_recover_after_whole_store_loss(self):
        before = self.deploy_and_snapshot()
        self.pod.wipe_store(keep_storage=False)
        r, report = self.recover_json()
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertEqual(self.names(report["recovered"]), ["api", "api-web", "worker"])
        self.check_back(before)

    def test_exited_container_is_recreated_and_dry_run_touches_nothing(self):
        before = self.deploy_and_snapshot()
        self.pod.podman("stop", "-t", "0", "worker")
        old_id = self.pod.inspect("worker")["Id"]
        r = self.run_agent("recover", "--dry-run", "--json")
        plan = json.loads(r.stdout)
        self.assertEqual(self.names(plan["planned"]), ["worker"])
        self.assertEqual(self.pod.inspect("worker")["State"]["Status"], "exited")
        self.assertEqual(self.pod.inspect("worker")["Id"], old_id)
        r, report = self.recover_json()
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertEqual(self.names(report["recovered"]), ["worker"])
        self.assertEqual(self.names(report["already_running"]), ["api", "api-web"])
        self.assertNotEqual(self.pod.inspect("worker")["Id"], old_id)
        self.check_back(before)

    def test_missing_image_is_skipped_with_exit_1(self):
        self.deploy_and_snapshot()
        self.pod.wipe_store(keep_storage=True)
        self.pod.podman("rmi", "-f", self.pod.image)
        r, report = self.recover_json()
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        self.assertEqual(self.names(report["skipped"]), ["api", "api-web", "worker"])
        self.assertTrue(all(e["reason"] == "no such image" for e in report["skipped"]))
        self.assertIn("not found", r.stderr)


if __name__ == "__main__":
    unittest.main()
