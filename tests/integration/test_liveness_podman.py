"""Liveness, readiness and drift on real podman (SPEC §10), with the fake
mc-proxy of the routes tests: a container whose httpd stops answering while
its process lives is restarted after failure_threshold probes, its route
withdrawn and restored; a container recreated by hand is reported drifted,
and with [monitor] drift = "fix" recreated from the registry's spec."""
import json
import time
import unittest

from agent_env import toml_str
from podman_daemon import PodmanDaemonTest
from podman_env import podman_missing_reason
from test_boot_podman import free_port
from test_routes_podman import Peers

STOPS_ANSWERING = "httpd -f -p 8080 & pid=$!; sleep 3; kill $pid; sleep 3600"


@unittest.skipIf(podman_missing_reason(), podman_missing_reason() or "")
class LivenessOnPodman(PodmanDaemonTest):
    maxDiff = None

    def setUp(self):
        super().setUp()
        self.range_start = free_port()

    def start_daemon(self, drift="report", extra=""):
        self.drift = drift
        return self.run_daemon(
            agent=['port_range = "%d-%d"' % (self.range_start, min(self.range_start + 50, 65535))],
            sections=["[monitor]", 'interval = "2s"', "drift = %s" % toml_str(drift), extra])

    def deploy(self, name, text):
        self.pod.track(name)
        r = self.cli("deploy", self.agent.write(name + ".toml", text))
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)

    def kinds(self, service):
        r = self.cli("events", service, "--json")
        return [json.loads(l)["kind"] for l in r.stdout.splitlines() if l.strip()]

    def wait_for_kinds(self, service, wanted, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.kinds(service)
            it = iter(got)
            if all(k in it for k in wanted):  # in this order
                return got
            time.sleep(0.2)
        self.fail("events of %s never had %s in order: %s" % (service, wanted, self.kinds(service)))

    def test_a_container_that_stops_answering_is_restarted_and_its_route_follows(self):
        peers = Peers(self, self.agent)
        peers.start_proxy()
        live = self.start_daemon(extra=peers.config())
        self.deploy("hw", "\n".join([
            'name = "hw"', "[[components]]", 'name = "hw"', "image = %s" % toml_str(self.pod.image),
            "cmd = [\"sh\", \"-c\", %s]" % toml_str(STOPS_ANSWERING),
            "[components.health]", 'check = "tcp"', "port = 8080", 'interval = "1s"', 'timeout = "1s"',
            "failure_threshold = 2",
            "[[components.routes]]", 'name = "http"', "port = 8080", 'mode = "l4"', 'hostname = "hw.test"',
            ""]))
        started = self.pod.inspect("hw")["State"]["StartedAt"]
        got = self.wait_for_kinds("hw", ["unhealthy", "route-withdrawn", "restarted", "route-restored"], 30)
        self.assertNotIn("died", got[:got.index("restarted")], "the process never died: liveness found it")
        info = self.pod.inspect("hw")
        self.assertEqual(info["State"]["Status"], "running")
        self.assertNotEqual(info["State"]["StartedAt"], started, "it was restarted")
        methods = [c["method"] for c in peers.proxy_calls("RemoveRoute") + peers.proxy_calls("AddRoute")]
        self.assertIn("RemoveRoute", methods)
        self.assertEqual([r["hostname"] for r in peers.routes()], ["hw.test"])
        live.proc.terminate()
        live.finish(30)

    def hand_made(self, live, name):
        """Replaces the agent's container by one made by hand, with other
        env, while the daemon is down (running, it would restart its own at
        once); returns the daemon started again."""
        live.proc.terminate()
        live.finish(30)
        self.pod.podman("rm", "-f", "-t", "0", name)
        self.pod.podman("run", "-d", "--name", name, "-e", "BY_HAND=1", self.pod.image, "sleep", "3600")
        return self.pod.inspect(name)["Id"], self.start_daemon(drift=self.drift)

    def test_a_container_recreated_by_hand_is_reported_drifted_and_left_alone(self):
        live = self.start_daemon()
        self.deploy("dr", service_toml("dr", self.pod.image))
        hand, live = self.hand_made(live, "dr")
        self.wait_for_kinds("dr", ["drift"], 15)
        time.sleep(4.5)  # two more lists: still one drift event, container untouched
        self.assertEqual(self.kinds("dr").count("drift"), 1)
        self.assertEqual(self.pod.inspect("dr")["Id"], hand)
        st = json.loads(self.cli("status", "dr", "--json").stdout)["services"][0]["components"][0]
        self.assertEqual(st["state"], "drifted")
        self.assertIn("not created by the agent", st["last_error"])
        live.proc.terminate()
        live.finish(30)

    def test_with_drift_fix_it_is_recreated_from_the_registry(self):
        live = self.start_daemon(drift="fix")
        self.deploy("df", service_toml("df", self.pod.image))
        hand, live = self.hand_made(live, "df")
        self.wait_for_kinds("df", ["drift", "restarted"], 20)
        info = self.pod.inspect("df")
        self.assertNotEqual(info["Id"], hand)
        self.assertIn("mcp.spec-hash", info["Config"]["Labels"] or {})
        self.assertNotIn("BY_HAND=1", info["Config"]["Env"])
        live.proc.terminate()
        live.finish(30)


def service_toml(name, image):
    return "\n".join(["name = %s" % toml_str(name), "[[components]]", "name = %s" % toml_str(name),
                      "image = %s" % toml_str(image), 'cmd = ["sleep", "3600"]', ""])


if __name__ == "__main__":
    unittest.main()
