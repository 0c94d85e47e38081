"""A real Prometheus (Debian's `prometheus`, on loopback, with a generated
config and a temp storage dir, stopped by pid) scrapes a daemon that
supervises real podman in an isolated store. After a container is killed
(`podman kill`, the real thing: the fake runtime lives inside the daemon and
nothing outside can kill its containers) Prometheus's HTTP API answers
mcp_component_restarts_total = 1 and mcp_component_up = 1 again; after
`mcp-agent stop` it answers up = 0."""
import json
import os
import shutil
import subprocess
import time
import unittest
import urllib.parse
import urllib.request

from podman_daemon import PodmanDaemonTest
from podman_env import podman_missing_reason
from test_daemon import free_port
from test_supervise_podman import service_toml


class Prometheus:
    """prometheus on 127.0.0.1:PORT scraping target every second."""

    def __init__(self, workdir, target):
        self.port = free_port()
        self.dir = os.path.join(workdir, "prometheus")
        os.makedirs(os.path.join(self.dir, "data"))
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: mcp-agent\n    static_configs:\n"
                    "      - targets: [%s]\n" % json.dumps(target))
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            ["prometheus", "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, start_new_session=True)

    def get(self, path, **params):
        url = "http://127.0.0.1:%d%s" % (self.port, path)
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()

    def wait_ready(self, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited: " + self.logs())
            try:
                self.get("/-/ready")
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("prometheus not ready: " + self.logs())

    def query(self, expr):
        """{labels as a sorted tuple: value} of an instant query."""
        res = json.loads(self.get("/api/v1/query", query=expr))
        assert res["status"] == "success", res
        return {tuple(sorted((k, v) for k, v in r["metric"].items() if k not in ("instance", "job"))):
                float(r["value"][1]) for r in res["data"]["result"]}

    def wait_value(self, expr, want, timeout=30):
        end = time.monotonic() + timeout
        got = None
        while time.monotonic() < end:
            got = list(self.query(expr).values())
            if got == [want]:
                return
            time.sleep(0.3)
        raise AssertionError("%s: %r, want [%r]\n%s" % (expr, got, want, self.logs()))

    def logs(self):
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@unittest.skipIf(podman_missing_reason(), podman_missing_reason() or "")
@unittest.skipUnless(shutil.which("prometheus"), "prometheus is not installed (scripts/install-deps.sh)")
class PrometheusScrapesTheDaemon(PodmanDaemonTest):

    def cli(self, *args):
        r = super().cli(*args)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        return r

    def test_prometheus_sees_a_restart_and_a_stop(self):
        port = free_port()
        live = self.run_daemon(sections=["[monitor]", 'interval = "2s"',
                                         "[metrics]", 'listen = "127.0.0.1:%d"' % port])
        prom = Prometheus(self.agent.dir, "127.0.0.1:%d" % port)
        self.addCleanup(prom.stop)
        prom.wait_ready()

        self.pod.track("web")
        self.cli("deploy", self.agent.write("web.toml", service_toml("web", self.pod.image, ["sleep", "3600"])))
        up = 'mcp_component_up{service="web",component="web"}'
        restarts = 'mcp_component_restarts_total{service="web",component="web"}'
        prom.wait_value(up, 1)
        prom.wait_value(restarts, 0)
        prom.wait_value('up{job="mcp-agent"}', 1)

        self.pod.podman("kill", "web")
        prom.wait_value(restarts, 1)
        prom.wait_value(up, 1)
        prom.wait_value('mcp_events_total{kind="died"}', 1)
        prom.wait_value('mcp_events_total{kind="restarted"}', 1)
        self.assertEqual(self.pod.inspect("web")["State"]["Status"], "running")

        self.cli("stop", "web")
        prom.wait_value(up, 0)
        prom.wait_value(restarts, 1)
        prom.wait_value('sum(mcp_grpc_requests_total{method="StopService",code="OK"})', 1)
        # the supervisor keeps listing: its timestamp is fresh
        self.assertTrue(prom.query("time() - mcp_last_list_timestamp_seconds < 10"))
        prom.stop()
        live.proc.terminate()
        rc, _, err = live.finish(30)
        self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    unittest.main()
