"""Prometheus metrics (issue 12, SPEC §11): `[metrics] listen` serves GET
/metrics from a daemon on the fake runtime. The exposition passes
`promtool check metrics`; the numbers follow deploys, stops, removals and
gRPC calls; a policy's own metrics appear under mcp_policy_; bad input to
the endpoint (a 1 MB request line, 200 idle connections, a client sending a
byte a second) neither stops gRPC nor /metrics; listen values that do not
parse or cannot bind are clear errors; the example alert rules load."""
import http.client
import os
import re
import socket
import subprocess
import threading
import time
import unittest

from agent_env import SOURCE_DIR, toml_str
from test_daemon import DaemonTestCase, daemon_config, free_port, health, service_toml

EXAMPLES = os.path.join(SOURCE_DIR, "examples", "prometheus")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics_config(env, listen, interval="1s", **kw):
    """daemon_config plus [metrics] listen and a short [monitor] interval."""
    path = daemon_config(env, **kw)
    with open(path, "a") as f:
        f.write('\n[monitor]\ninterval = %s\n\n[metrics]\nlisten = %s\n' % (toml_str(interval),
                                                                           toml_str(listen)))
    return path


def scrape(port, path="/metrics", method="GET", host="127.0.0.1"):
    """(status, content type, body) of one request."""
    c = http.client.HTTPConnection(host, port, timeout=5)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        c.close()


def samples(text):
    """{(name, ((label, value), ...)): float} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(text, name, **labels):
    return samples(text).get((name, tuple(sorted(labels.items()))))


def promtool_check(text):
    """promtool check metrics on text: (rc, output)."""
    p = subprocess.run(["promtool", "check", "metrics"], input=text, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    return p.returncode, p.stdout


def metrics_port(d):
    m = re.search(r'msg="serving metrics" .*port=(\d+)', d.log())
    assert m, d.log()
    return int(m.group(1))


class MetricsOnTheFakeRuntime(DaemonTestCase):

    def start(self, listen="127.0.0.1:0", **kw):
        metrics_config(self.env, listen, **kw)
        d = self.daemon()
        d.wait_boot_done()
        return d

    def cli(self, *args):
        r = self.env.run(*args, timeout=30)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        return r

    def wait_value(self, port, want, name, timeout=10, **labels):
        end = time.monotonic() + timeout
        while True:
            got = value(scrape(port)[2], name, **labels)
            if got == want or time.monotonic() > end:
                self.assertEqual(got, want, "%s%r" % (name, labels))
                return
            time.sleep(0.1)

    def test_the_exposition_follows_the_agent(self):
        d = self.start()
        port = metrics_port(d)
        self.cli("deploy", self.env.write("web.toml", service_toml("web", components=("web", "api"))),
                 self.env.write("db.toml", service_toml("db")))
        status, ctype, text = scrape(port)
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
        rc, out = promtool_check(text)
        self.assertEqual(rc, 0, out + text)
        for comp in ("web", "api"):
            self.assertEqual(value(text, "mcp_component_up", service="web", component=comp), 1, text)
            self.assertEqual(value(text, "mcp_component_restarts_total", service="web", component=comp), 0)
            self.assertEqual(value(text, "mcp_component_backoff_seconds", service="web", component=comp), 0)
        self.assertEqual(value(text, "mcp_component_up", service="db", component="db"), 1)
        # one Deploy call per file
        self.assertEqual(value(text, "mcp_grpc_requests_total", method="Deploy", code="OK"), 2, text)
        self.assertGreaterEqual(value(text, "mcp_events_total", kind="deployed"), 2, text)
        self.assertEqual(value(text, "mcp_build_info", version=re.search(
            r'version="([^"]+)"', text).group(1)), 1)
        self.assertGreater(value(text, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(value(text, "process_open_fds"), 3)
        for line in ("# TYPE mcp_probe_duration_seconds histogram", "# TYPE mcp_probe_total counter",
                     "# TYPE mcp_boot_stage_duration_seconds gauge", "# HELP mcp_component_up "):
            self.assertIn(line, text)
        # the supervisor lists every second: a stuck one would show here
        last = value(text, "mcp_last_list_timestamp_seconds")
        self.assertIsNotNone(last, text)
        self.assertLess(abs(time.time() - last), 30)
        time.sleep(1.5)
        self.assertGreater(value(scrape(port)[2], "mcp_last_list_timestamp_seconds"), last)

        # an error code is counted under its name
        def count(text, method, code):
            return value(text, "mcp_grpc_requests_total", method=method, code=code) or 0
        before = scrape(port)[2]
        with d.unix_channel() as ch:
            from test_daemon import stubs
            apb, agrpc, _, _ = stubs()
            with self.assertRaises(Exception):
                agrpc.AgentServiceStub(ch).GetServiceStatus(apb.ServiceRequest(service="nope"), timeout=5)
            health(ch)
            for i in range(3):
                with self.assertRaises(Exception):
                    ch.unary_unary("/mcp.agent.v1.AgentService/Nope%d" % i)(b"", timeout=5)
        text = scrape(port)[2]
        self.assertEqual(count(text, "GetServiceStatus", "NOT_FOUND") - count(before, "GetServiceStatus", "NOT_FOUND"), 1)
        self.assertEqual(count(text, "Check", "OK") - count(before, "Check", "OK"), 1)
        # methods the agent does not serve are refused before any handler:
        # clients cannot grow the label set
        self.assertNotIn("Nope", text)

        # stop: down at once; rm: its series are gone
        self.cli("stop", "db")
        self.assertEqual(value(scrape(port)[2], "mcp_component_up", service="db", component="db"), 0)
        self.cli("rm", "web")
        text = scrape(port)[2]
        self.assertIsNone(value(text, "mcp_component_up", service="web", component="web"), text)
        self.assertEqual(value(text, "mcp_component_up", service="db", component="db"), 0)
        self.assertEqual(value(text, "mcp_grpc_requests_total", method="RemoveService", code="OK"), 1)
        self.assertEqual(promtool_check(text)[0], 0)

        # anything but GET /metrics
        self.assertEqual(scrape(port, "/")[0], 404)
        self.assertEqual(scrape(port, "/metrics/x")[0], 404)
        self.assertEqual(scrape(port, method="POST")[0], 405)
        self.assertEqual(scrape(port, method="DELETE")[0], 405)
        status, _, body = scrape(port, method="HEAD")
        self.assertEqual((status, body), (200, ""))
        self.assertEqual(d.stop(), 0)

    def test_bad_input_keeps_grpc_and_metrics_answering(self):
        d = self.start()
        port = metrics_port(d)
        base_fds = d.open_fds()

        # a 1 MB request line is refused, not buffered
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            try:
                s.sendall(b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # cut off while sending: refused just the same
            try:
                answer = s.recv(100)
            except ConnectionResetError:
                answer = b""
        self.assertTrue(answer == b"" or re.match(rb"HTTP/1\.1 (414|431|413)", answer), answer)

        # a client sending one byte a second
        slow = {"cut_after": None}

        def crawl():
            t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                try:
                    for ch in b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Padding: " + b"p" * 40:
                        s.sendall(bytes([ch]))
                        time.sleep(1)
                        if time.monotonic() - t0 > 25:
                            return
                except OSError:
                    slow["cut_after"] = time.monotonic() - t0

        def answering():
            status, _, text = scrape(port)
            self.assertEqual(status, 200)
            self.assertIn("mcp_build_info", text)
            with d.unix_channel() as ch:
                self.assertEqual(health(ch).status, 1)

        crawler = threading.Thread(target=crawl, daemon=True)
        crawler.start()
        while crawler.is_alive():
            answering()
            time.sleep(0.5)
        self.assertIsNotNone(slow["cut_after"], "the slow client was never cut off")
        self.assertGreater(slow["cut_after"], 3)  # the request deadline, not at once
        self.assertLess(slow["cut_after"], 15)
        # 200 idle connections: the oldest idle ones are cut, new ones served
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(200)]
        self.addCleanup(lambda: [s.close() for s in idle])
        for _ in range(5):
            answering()
            time.sleep(0.3)
        # the idle connections are cut too: the daemon's descriptors come back
        end = time.monotonic() + 20
        while d.open_fds() > base_fds + 5 and time.monotonic() < end:
            time.sleep(0.2)
        self.assertLessEqual(d.open_fds(), base_fds + 5)
        self.assertEqual(scrape(port)[0], 200)
        self.assertEqual(d.stop(), 0)

    def test_a_unix_socket_and_ipv6_loopback(self):
        sock = self.env.path("metrics.sock")
        d = self.start(listen=sock)
        self.assertEqual(os.stat(sock).st_mode & 0o777, 0o660)
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(sock)
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200"), data[:80])
        self.assertIn(b"\nmcp_build_info{", data)
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.exists(sock), "the socket file is removed at exit")

        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback here")
        port = free_port()
        d = self.start(listen="[::1]:%d" % port)
        self.assertEqual(scrape(port, host="::1")[0], 200)
        self.assertEqual(d.stop(), 0)

    def test_listen_values_that_do_not_parse_or_bind(self):
        for bad in ("9464", "127.0.0.1", "127.0.0.1:99999", "::1:9464", "example.com:9464",
                    "127.0.0.1:x", "[::1]9464"):
            metrics_config(self.env, bad)
            with open(self.env.config) as f:
                text = f.read()
            line = text.splitlines().index("listen = %s" % toml_str(bad)) + 1
            for cmd in (["check"], ["run"]):
                r = self.env.run(*cmd, timeout=30)
                self.assertEqual(r.rc, 2, (bad, cmd, r.stderr))
                self.assertIn("%s:%d:" % (self.env.config, line), r.stderr, bad)
                self.assertIn("metrics.listen", r.stderr, bad)
        # a port in use, a directory that does not exist: clear errors at run
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            metrics_config(self.env, "127.0.0.1:%d" % taken.getsockname()[1])
            self.assertEqual(self.env.run("check", timeout=30).rc, 0)
            r = self.env.run("run", timeout=30)
            self.assertEqual(r.rc, 2, r.stderr)
            self.assertIn("[metrics] listen: metrics: cannot listen on 127.0.0.1:%d: Address already in use"
                          % taken.getsockname()[1], r.stderr)
        missing = self.env.path("no", "such", "dir", "m.sock")
        metrics_config(self.env, missing)
        r = self.env.run("run", timeout=30)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertIn("cannot listen on %s: No such file or directory" % missing, r.stderr)

    def test_a_policy_counts_its_own_decisions(self):
        pol = self.env.path("policies")
        self.env.write("policies/boot.lua", """\
-- an operator's boot policy that counts its runs, under mcp_policy_
local builtin = require "policy.builtin.boot"
local M = {}
function M.run(agent, stages, opts)
    agent.metrics.counter("boot_runs", "Boot runs."):inc()
    local ok = pcall(agent.metrics.counter, "bad-name", "refused")
    agent.metrics.gauge("bad_name_refused", "1 when a bad name was refused."):set(nil, ok and 0 or 1)
    local decided = agent.metrics.counter("decisions_total", "Decisions.", { "what" })
    decided:inc({ what = "boot" }, 2)
    return builtin.run(agent, stages, opts)
end
return M
""")
        os.chmod(pol, 0o755)
        d = self.start(policy_dir=pol)
        text = scrape(metrics_port(d))[2]
        self.assertEqual(value(text, "mcp_policy_boot_runs_total"), 1, text)
        self.assertEqual(value(text, "mcp_policy_bad_name_refused"), 1, text)
        self.assertEqual(value(text, "mcp_policy_decisions_total", what="boot"), 2, text)
        self.assertEqual(promtool_check(text)[0], 0)
        self.assertEqual(d.stop(), 0)


class ExampleAlertRules(unittest.TestCase):

    def test_the_example_rules_load_and_fire(self):
        for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"],
                     ["check", "config", "prometheus.yml"]):
            p = subprocess.run(["promtool", *args], cwd=EXAMPLES, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout)
            self.assertIn("SUCCESS", p.stdout)


if __name__ == "__main__":
    unittest.main()
