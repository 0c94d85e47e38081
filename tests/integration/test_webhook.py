"""agent.http.request and the webhook example policy (SPEC §10 events): a
policy posts to a local HTTP server of the test; a crash-looping container
on real podman reaches the webhook through supervise.on_event."""
import http.server
import json
import os
import threading
import time
import unittest

from agent_env import AgentTestCase, SOURCE_DIR, toml_str
from podman_daemon import PodmanDaemonTest
from podman_env import podman_missing_reason

EXAMPLE = os.path.join(SOURCE_DIR, "policies", "examples", "webhook", "supervise.lua")


class Hook(http.server.BaseHTTPRequestHandler):
    """Records every request; answers per the server's .answer (status, delay)."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append({"path": self.path, "headers": dict(self.headers), "body": body.decode()})
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Hook", "yes")
        self.end_headers()
        self.wfile.write(b"thanks")

    do_PUT = do_POST

    def log_message(self, *args):
        pass


def start_hook(test, status=200, delay=0):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.seen, server.status, server.delay = [], status, delay
    threading.Thread(target=server.serve_forever, daemon=True).start()
    test.addCleanup(server.server_close)
    test.addCleanup(server.shutdown)
    return server, "http://127.0.0.1:%d/hooks/mcp" % server.server_address[1]


class HttpRequest(AgentTestCase):
    def eval(self, code):
        self.env.write_config()
        return self.env.run("eval", "-e", code, timeout=30)

    def test_a_post_reaches_the_server_with_its_headers_and_body(self):
        server, url = start_hook(self)
        r = self.eval('local s, b, h = agent.http.request{ method = "POST", url = %s, '
                      'headers = { ["Content-Type"] = "application/json", ["X-Token"] = "t1" }, '
                      'body = \'{"text":"hi"}\', timeout = 5 }\n'
                      'print(s, b, h["x-hook"] or h["X-Hook"])' % json.dumps(url))
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["200", "thanks", "yes"])
        self.assertEqual(len(server.seen), 1)
        self.assertEqual(server.seen[0]["body"], '{"text":"hi"}')
        self.assertEqual(server.seen[0]["headers"]["X-Token"], "t1")

    def test_a_slow_server_is_a_timeout_and_a_closed_port_refused(self):
        _, url = start_hook(self, delay=3)
        r = self.eval('print(agent.http.request{ method = "POST", url = %s, body = "x", timeout = 0.5 })\n'
                      'print(agent.http.request{ url = "http://127.0.0.1:1/", timeout = 2 })' % json.dumps(url))
        self.assertEqual(r.rc, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("nil\ttimeout"), lines)
        self.assertTrue(lines[1].startswith("nil\trefused"), lines)

    def test_misuse_raises_naming_the_argument(self):
        for code, needle in (('agent.http.request{ url = "ftp://x/" }', "url must be"),
                             ('agent.http.request{ url = "http://x/", headers = { ["A"] = "b\\r\\nC: d" } }',
                              "line breaks"),
                             ('agent.http.request{ url = "http://x/", timeout = -1 }', "timeout"),
                             ('agent.http.request{ url = "http://x/", method = "get me" }', "method")):
            r = self.eval(code)
            self.assertEqual(r.rc, 1, code + "\n" + r.stderr)
            self.assertIn(needle, r.stderr, code)


@unittest.skipIf(podman_missing_reason(), podman_missing_reason() or "")
class CrashLoopWebhook(PodmanDaemonTest):
    def test_the_webhook_hears_of_a_crash_loop(self):
        server, url = start_hook(self)
        with open(EXAMPLE) as f:
            policy = f.read()
        policy = policy.replace('M.WEBHOOK = "http://127.0.0.1:8089/hooks/mcp"', "M.WEBHOOK = %s" % json.dumps(url))
        policy = policy.replace("M.CRASH_LOOP_AFTER = 3", "M.CRASH_LOOP_AFTER = 2")
        self.assertIn(url, policy)
        pdir = self.agent.path("policies")
        os.makedirs(pdir, mode=0o755)
        os.chmod(pdir, 0o755)
        self.agent.write("policies/supervise.lua", policy)
        live = self.run_daemon(sections=["[policy]", "dir = %s" % toml_str(pdir)])
        self.pod.track("loop")
        svc = self.agent.write("loop.toml", "\n".join([
            'name = "loop"', "[[components]]", 'name = "loop"', "image = %s" % toml_str(self.pod.image),
            'cmd = ["sh", "-c", "sleep 0.2; exit 3"]', ""]))
        r = self.cli("deploy", svc)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        deadline = time.monotonic() + 30
        while not server.seen and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertTrue(server.seen, "no webhook call:\n" + live.stderr())
        msg = json.loads(server.seen[0]["body"])["text"]
        self.assertIn("loop/loop is crash-looping", msg)
        time.sleep(3)
        self.assertEqual(len(server.seen), 1, "one message per suppression window")
        live.proc.terminate()
        live.finish(30)


if __name__ == "__main__":
    unittest.main()
