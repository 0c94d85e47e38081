"""Routes end to end (issue #5, SPEC §5 and §8): mc-proxy registration and
Metacrypt certificates, with the agent talking to real fake peers —
tests/fixtures/peers/fake_mcproxy.py (a grpcio ProxyAdminService on a unix
socket) and fake_metacrypt.py (an HTTPS CA issuing real certificates).

AgentBindings drives agent.proxy / agent.certs through `mcp-agent eval` on
the fake runtime (no podman needed). RoutesOnPodman deploys a service with
an l4 and an l7 route on real podman in an isolated store, loses podman's
state, and checks that `recover` registers the routes with backends on the
host ports podman really maps, keeps a valid certificate, renews one near
expiry, and survives mc-proxy being down.
"""
import datetime
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from agent_env import AgentEnv, FIXTURES, toml_str
from podman_env import PodmanEnv, podman_missing_reason

PEERS = os.path.join(FIXTURES, "peers")
PYTHON = "/usr/bin/python3"
TOKEN = "route-test-token"


class Peer:
    """A fake peer process: started, its ready line read, killed at cleanup."""

    def __init__(self, script, *args):
        self.proc = subprocess.Popen([PYTHON, os.path.join(PEERS, script)] + list(args),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not (line == "READY" or line.startswith("PORT ")):
            self.stop()
            raise AssertionError("%s did not start (said %r)" % (script, line))
        self.port = int(line.split()[1]) if line.startswith("PORT ") else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


def read_json(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def cert_info(path):
    """(SAN dNSNames, notAfter) of the first certificate in path."""
    from cryptography import x509
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName)), cert.not_valid_after


class Peers:
    """fake_mcproxy + fake_metacrypt for one test, and the config that points at them."""

    def __init__(self, test, agent):
        # unix socket paths are limited to 107 bytes: keep the socket in a short dir
        self.sock_dir = tempfile.mkdtemp(prefix="mcpx-", dir="/tmp")
        test.addCleanup(shutil.rmtree, self.sock_dir, True)
        self.test = test
        self.socket = os.path.join(self.sock_dir, "mc-proxy.sock")
        self.proxy_record = agent.path("mcproxy-record.json")
        self.proxy_control = agent.path("mcproxy-control.json")
        self.ca_dir = agent.path("ca")
        self.ca_record = agent.path("metacrypt-record.json")
        self.ca_control = agent.path("metacrypt-control.json")
        self.cert_dir = agent.path("certs")
        self.token = agent.write("metacrypt.token", TOKEN + "\n", mode=0o600)
        self.proxy = None
        self.ca = Peer("fake_metacrypt.py", "--dir", self.ca_dir, "--token", TOKEN,
                       "--record", self.ca_record, "--control", self.ca_control)
        test.addCleanup(self.ca.stop)

    def start_proxy(self):
        self.proxy = Peer("fake_mcproxy.py", "--socket", self.socket, "--record",
                          self.proxy_record, "--control", self.proxy_control)
        self.test.addCleanup(self.proxy.stop)

    def stop_proxy(self):
        self.proxy.stop()
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def config(self):
        return "\n".join([
            "[mcproxy]",
            "socket = %s" % toml_str(self.socket),
            "cert_dir = %s" % toml_str(self.cert_dir),
            'listener = ":443"',
            "[metacrypt]",
            "server_url = %s" % toml_str("https://127.0.0.1:%d" % self.ca.port),
            "ca_cert = %s" % toml_str(os.path.join(self.ca_dir, "ca.pem")),
            'mount = "pki"',
            'issuer = "web"',
            "token_path = %s" % toml_str(self.token),
            "",
        ])

    def routes(self):
        return read_json(self.proxy_record, {}).get("routes", [])

    def proxy_calls(self, method):
        return [c for c in read_json(self.proxy_record, {}).get("calls", []) if c["method"] == method]

    def issued(self):
        return [r for r in read_json(self.ca_record, {}).get("requests", []) if r.get("status") == 200]

    def ca_requests(self):
        return read_json(self.ca_record, {}).get("requests", [])


class AgentBindings(unittest.TestCase):
    """agent.proxy and agent.certs from Lua, through `mcp-agent eval`."""

    def setUp(self):
        self.agent = AgentEnv(self.id())
        self.addCleanup(self.agent.cleanup)
        self.peers = Peers(self, self.agent)
        self.peers.start_proxy()
        self.agent.write_config(runtime="fake", extra=self.peers.config())

    def eval_json(self, code):
        script = 'local json = require "mcp.json"\nlocal function out(v) print(json.encode(v)) end\n' + code
        r = self.agent.run("eval", "-e", script)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        return [json.loads(line) for line in r.stdout.splitlines() if line.startswith(("{", "["))]

    def test_proxy_add_list_remove(self):
        out = self.eval_json("""
local p = agent.proxy
local ok, err = p.add_route{ hostname = "a.test", backend = "127.0.0.1:10001", mode = "l7",
    service = "svc", cert_path = "/c/svc.pem", key_path = "/c/svc.key" }
out({ ok = ok, err = err })
ok, err = p.add_route{ listener = ":8443", hostname = "b.test", backend = "127.0.0.1:10002" }
out({ ok = ok, err = err })
out(p.list_routes())
out({ ok = p.remove_route(":443", "a.test") })
local nope, reason = p.remove_route(":443", "a.test")
out({ ok = nope, reason = reason })
out(p.list_routes())
""")
        self.assertEqual(out[0], {"ok": True})
        self.assertEqual(out[1], {"ok": True})
        self.assertEqual(out[2], [
            {"listener": ":443", "hostname": "a.test", "backend": "127.0.0.1:10001", "mode": "l7",
             "service": "svc", "cert_path": "/c/svc.pem", "key_path": "/c/svc.key"},
            {"listener": ":8443", "hostname": "b.test", "backend": "127.0.0.1:10002", "mode": "l4",
             "service": ""},
        ])
        self.assertEqual(out[3], {"ok": True})
        self.assertTrue(out[4]["reason"].startswith("grpc status 5: "), out[4])
        self.assertEqual([r["hostname"] for r in out[5]], ["b.test"])
        # listener defaults to [mcproxy] listener
        self.assertEqual(self.peers.proxy_calls("AddRoute")[0]["request"]["listener"], ":443")

    def test_proxy_down_slow_and_misuse(self):
        with open(self.peers.proxy_control, "w") as f:
            json.dump({"delay": 8}, f)
        out = self.eval_json("""
local t0 = agent.clock.now()
local ok, reason = agent.proxy.list_routes()
out({ ok = ok, reason = reason, took = agent.clock.now() - t0 })
local bad = pcall(agent.proxy.add_route, { hostname = 1 })
out({ raised = not bad })
local bad2 = pcall(agent.proxy.add_route, { hostname = "x", backend = "y", mode = "l9" })
out({ raised = not bad2 })
""")
        self.assertEqual(out[0]["reason"], "timeout")
        self.assertLess(out[0]["took"], 7.5)  # the ~5 s deadline ended it, not the server
        self.assertEqual(out[1], {"raised": True})
        self.assertEqual(out[2], {"raised": True})
        os.unlink(self.peers.proxy_control)
        self.peers.stop_proxy()
        out = self.eval_json("""
local ok, reason, detail = agent.proxy.add_route{ hostname = "a.test", backend = "127.0.0.1:1" }
out({ ok = ok, reason = reason, detail = detail })
""")
        self.assertEqual(out[0]["reason"], "unavailable", out)

    def test_certs_ensure(self):
        out = self.eval_json("""
local c, reason, detail = agent.certs.ensure("shop", { "shop.test", "www.shop.test" })
out(c or { reason = reason, detail = detail })
local again = agent.certs.ensure("shop", "shop.test")
out(again)
local bad, why = agent.certs.ensure("../x", "shop.test")
out({ reason = why })
""")
        first, again = out[0], out[1]
        self.assertEqual(first["cert"], os.path.join(self.peers.cert_dir, "shop.pem"), first)
        self.assertEqual(first["key"], os.path.join(self.peers.cert_dir, "shop.key"))
        self.assertTrue(first["issued"])
        self.assertRegex(first["expires_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertFalse(again["issued"])
        self.assertEqual(again["expires_at"], first["expires_at"])
        self.assertEqual(out[2], {"reason": "config"})
        self.assertEqual(len(self.peers.issued()), 1)
        names, _ = cert_info(first["cert"])
        self.assertEqual(names, ["shop.test", "www.shop.test"])
        self.assertEqual(os.stat(first["key"]).st_mode & 0o777, 0o600)

    def test_certs_failure_is_nil_reason(self):
        with open(self.peers.ca_control, "w") as f:
            json.dump({"status": 500, "error": "sealed"}, f)
        out = self.eval_json("""
local c, reason, detail = agent.certs.ensure("shop", "shop.test")
out({ c = c, reason = reason, detail = detail })
""")
        self.assertEqual(out[0]["reason"], "refused")
        self.assertIn("sealed", out[0]["detail"])
        self.assertFalse(os.path.exists(os.path.join(self.peers.cert_dir, "shop.pem")))

    def test_not_configured_means_absent(self):
        self.agent.write_config(runtime="fake")
        out = self.eval_json("out({ proxy = agent.proxy == nil, certs = agent.certs == nil })")
        self.assertEqual(out[0], {"proxy": True, "certs": True})


@unittest.skipIf(podman_missing_reason(), podman_missing_reason() or "")
class RoutesOnPodman(unittest.TestCase):
    def setUp(self):
        self.pod = PodmanEnv()
        self.addCleanup(self.pod.cleanup)
        self.agent = AgentEnv(self.id())
        self.addCleanup(self.agent.cleanup)
        self.peers = Peers(self, self.agent)
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            start = s.getsockname()[1]
        self.agent.write("mcp-agent.toml", "\n".join([
            "[agent]",
            'container_runtime = "podman"',
            "podman_args = [%s]" % ", ".join(toml_str(a) for a in self.pod.podman_args),
            'podman_timeout = "60s"',
            'port_range = "%d-%d"' % (start, min(start + 50, 65535)),
            "[database]",
            "path = %s" % toml_str(self.agent.db),
            self.peers.config(),
        ]))
        self.agent.write("shop.toml", f"""
name = "shop"
[[components]]
name = "web"
image = "{self.pod.image}"
cmd = ["sh", "-c", "echo hi > /tmp/index.html && httpd -p 9000 -h /tmp && exec httpd -f -p $PORT -h /tmp"]
[[components.routes]]
name = "https"
mode = "l7"
hostname = "shop.test.internal"
[[components.routes]]
name = "raw"
port = 9000
mode = "l4"
hostname = "raw.test.internal"
""")
        self.pod.track("shop-web")

    def run_agent(self, *args):
        return self.agent.run(*args, timeout=120, env={"CONTAINERS_CONF": self.pod.conf,
                                                       "TMPDIR": self.pod.env["TMPDIR"]})

    def recover(self, rc=0):
        r = self.run_agent("recover", "--json")
        self.assertEqual(r.rc, rc, r.stdout + r.stderr)
        return r, json.loads(r.stdout)

    def mapped_ports(self):
        """Host port podman really maps for container ports 'PORT' and 9000."""
        info = self.pod.inspect("shop-web")
        self.assertEqual(info["State"]["Status"], "running")
        bindings = info["HostConfig"]["PortBindings"]
        ports = {}
        for key, binds in bindings.items():
            self.assertEqual(len(binds), 1, bindings)
            self.assertEqual(binds[0]["HostIp"], "127.0.0.1")
            ports[int(key.split("/")[0])] = int(binds[0]["HostPort"])
        return ports

    def expected_routes(self):
        ports = self.mapped_ports()
        raw = ports.pop(9000)
        (https_container, https_host), = ports.items()
        self.assertEqual(https_container, https_host)  # no port: host:host
        pem = os.path.join(self.peers.cert_dir, "shop.pem")
        key = os.path.join(self.peers.cert_dir, "shop.key")
        return [
            {"listener": ":443", "hostname": "raw.test.internal", "backend": "127.0.0.1:%d" % raw,
             "mode": "l4", "cert_path": "", "key_path": "", "service": "shop"},
            {"listener": ":443", "hostname": "shop.test.internal",
             "backend": "127.0.0.1:%d" % https_host, "mode": "l7", "cert_path": pem,
             "key_path": key, "service": "shop"},
        ]

    def deploy(self):
        r = self.run_agent("deploy", self.agent.path("shop.toml"))
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        return self.mapped_ports()

    def test_recover_registers_routes_and_keeps_certificate(self):
        self.peers.start_proxy()
        ports = self.deploy()
        # deploy itself may not register routes (cli.lua): recover must
        self.pod.wipe_store(keep_storage=True)
        r, report = self.recover()
        self.assertEqual([e["container"] for e in report["recovered"]], ["shop-web"])
        self.assertEqual(self.mapped_ports(), ports, "recover must keep the host ports")
        self.assertEqual(self.peers.routes(), self.expected_routes())
        names, not_after = cert_info(os.path.join(self.peers.cert_dir, "shop.pem"))
        self.assertEqual(names, ["shop.test.internal"])
        self.assertGreater(not_after, datetime.datetime.utcnow() + datetime.timedelta(days=80))
        self.assertEqual(os.stat(os.path.join(self.peers.cert_dir, "shop.key")).st_mode & 0o777, 0o600)
        issued = len(self.peers.issued())
        self.assertGreaterEqual(issued, 1)
        ca_body = self.peers.issued()[-1]["body"]
        self.assertEqual(ca_body, {"issuer": "web", "common_name": "shop.test.internal",
                                   "dns_names": ["shop.test.internal"], "ttl": "2160h"})

        # lose everything again: same ports, routes registered again, no new certificate
        adds = len(self.peers.proxy_calls("AddRoute"))
        self.pod.wipe_store(keep_storage=False)
        r, report = self.recover()
        self.assertEqual([e["container"] for e in report["recovered"]], ["shop-web"])
        self.assertEqual(self.mapped_ports(), ports)
        self.assertEqual(len(self.peers.proxy_calls("AddRoute")), adds + 2)
        self.assertEqual(self.peers.routes(), self.expected_routes())
        self.assertEqual(len(self.peers.issued()), issued, "a valid certificate must be kept")

    def test_certificate_near_expiry_is_renewed(self):
        self.peers.start_proxy()
        with open(self.peers.ca_control, "w") as f:
            json.dump({"ttl": "240h"}, f)  # 10 days: inside the 30-day renewal window
        self.deploy()
        self.pod.wipe_store(keep_storage=True)
        self.recover()
        pem = os.path.join(self.peers.cert_dir, "shop.pem")
        _, short = cert_info(pem)
        self.assertLess(short, datetime.datetime.utcnow() + datetime.timedelta(days=11))
        issued = len(self.peers.issued())
        os.unlink(self.peers.ca_control)
        self.pod.wipe_store(keep_storage=True)
        self.recover()
        self.assertEqual(len(self.peers.issued()), issued + 1)
        _, renewed = cert_info(pem)
        self.assertGreater(renewed, datetime.datetime.utcnow() + datetime.timedelta(days=80))
        self.assertEqual(self.peers.routes(), self.expected_routes())

    def test_mcproxy_down_is_a_warning(self):
        # mc-proxy not running at all: the socket does not exist
        ports = self.deploy()
        self.pod.wipe_store(keep_storage=True)
        r, report = self.recover()
        self.assertEqual([e["container"] for e in report["recovered"]], ["shop-web"])
        self.assertEqual(report["failed"], [])
        self.assertTrue(any("mc-proxy" in w and "unavailable" in w for w in report["warnings"]),
                        report["warnings"])
        self.assertIn("unavailable", r.stderr)
        self.assertEqual(self.mapped_ports(), ports)

        # mc-proxy back: the next recover that recreates the container registers the routes
        self.peers.start_proxy()
        self.pod.wipe_store(keep_storage=True)
        self.recover()
        self.assertEqual(self.peers.routes(), self.expected_routes())

    def test_routes_registered_for_running_containers_once_mcproxy_is_up(self):
        """SPEC §5 + issue #5: routes missed while mc-proxy was down are
        registered by the next recover even though the container is already
        running (AddRoute is idempotent, so recover registers running ones too)."""
        self.deploy()
        self.pod.wipe_store(keep_storage=True)
        self.recover()  # mc-proxy down: warning
        self.peers.start_proxy()
        self.recover()  # container already running
        self.assertEqual(self.peers.routes(), self.expected_routes())

    def test_deploy_stop_start_rm_drive_the_routes(self):
        self.peers.start_proxy()
        self.deploy()
        self.assertEqual(self.peers.routes(), self.expected_routes(), "deploy registers")
        status = json.loads(self.run_agent("status", "shop", "--json").stdout)
        routes = {r["name"]: r for r in status["services"][0]["components"][0]["routes"]}
        self.assertTrue(routes["https"]["registered"] and routes["raw"]["registered"], routes)
        _, not_after = cert_info(os.path.join(self.peers.cert_dir, "shop.pem"))
        self.assertEqual(routes["https"]["cert_expires_at"], not_after.strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.assertEqual(routes["raw"]["cert_expires_at"], "")

        r = self.run_agent("stop", "shop")
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertEqual(self.peers.routes(), [], "stop removes the routes")
        status = json.loads(self.run_agent("status", "shop", "--json").stdout)
        self.assertFalse(any(r["registered"] for r in status["services"][0]["components"][0]["routes"]))

        r = self.run_agent("start", "shop")
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertEqual(self.peers.routes(), self.expected_routes(), "start registers again")

        r = self.run_agent("rm", "shop")
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertEqual(self.peers.routes(), [], "rm removes the routes")
        self.assertIsNone(self.pod.inspect("shop-web"))


if __name__ == "__main__":
    unittest.main()
