"""The daemon (`mcp-agent run`, lua/mcp/host/daemon.lua) and its gRPC API, driven
by a stock gRPC client (python grpcio, stubs generated from proto/ at test time).

Every AgentService RPC is called over the unix socket and over mutual TLS;
TLS refusals, plaintext loopback, error codes, the boot lifecycle (read-only
calls answer during a long foundation boot, mutating ones get UNAVAILABLE),
SIGHUP policy reloads, SIGTERM with a call in flight, and the CLI with and
without a daemon. Most tests use the in-memory fake runtime
(`container_runtime = "fake"`); the recover and slow-call tests use the
scripted fake podman (tests/fixtures/fakepodman/podman).

Each daemon's stderr goes to a file that is checked for sanitizer reports
when the daemon is stopped (run the file against the ASan build by pointing
MCP_AGENT_BIN at it). test_daemon_edges.py imports the helpers from here.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

import agent_env
import grpc_env
from agent_env import AGENT_BIN, FAKE_PODMAN, AgentEnv, toml_str

PYTHON = "/usr/bin/python3"
AGENT = "/mcp.agent.v1.AgentService/"
SANITIZER_MARKERS = agent_env.SANITIZER_MARKERS + ("LeakSanitizer",)

_shared = {}


# ---- stubs and certificates, made once per process --------------------------------


def shared_tmp():
    if "tmp" not in _shared:
        _shared["tmp"] = tempfile.mkdtemp(prefix="daemon-it-", dir=agent_env.TEST_TMP
                                          if os.path.isdir(agent_env.TEST_TMP) else None)
        import atexit
        atexit.register(shutil.rmtree, _shared["tmp"], True)
    return _shared["tmp"]


def stubs():
    """(agent_pb2, agent_pb2_grpc, health_pb2, health_pb2_grpc) generated from proto/
    (grpc_env.gen_stubs), once per process."""
    if "stubs" not in _shared:
        _shared["stubs"] = grpc_env.gen_stubs(shared_tmp())
    return _shared["stubs"]


def certs():
    """A directory with ca, server (127.0.0.1/localhost), client (by ca) and
    stranger (a client certificate from another CA), made once per process."""
    if "certs" in _shared:
        return _shared["certs"]
    d = os.path.join(shared_tmp(), "certs")
    os.makedirs(d)
    grpc_env.make_certs(d)
    _shared["certs"] = d
    return d


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def free_port():
    """A TCP port free on 127.0.0.1 right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- configs and services ----------------------------------------------------------


def daemon_config(env, runtime="fake", grpc_addr=None, insecure_loopback=None, tls=False,
                  policy_dir=None, boot=(), podman=None, podman_timeout="10s", log_level=None,
                  node_name="test-node"):
    """Writes env.config for a daemon with [agent] socket = env.path("agent.sock").
    boot: [(stage name, [services], timeout, health)]."""
    env.socket = env.path("agent.sock")
    lines = ["[agent]", "node_name = %s" % toml_str(node_name),
             "container_runtime = %s" % toml_str(runtime),
             "socket = %s" % toml_str(env.socket), 'port_range = "20000-20999"']
    if grpc_addr is not None:
        lines.append("grpc_addr = %s" % toml_str(grpc_addr))
    if insecure_loopback is not None:
        lines.append("insecure_loopback = %s" % ("true" if insecure_loopback else "false"))
    if podman:
        lines.append("podman = %s" % toml_str(podman))
        lines.append("podman_timeout = %s" % toml_str(podman_timeout))
    if tls:
        d = certs()
        lines += ["", "[tls]", "cert = %s" % toml_str(os.path.join(d, "server.pem")),
                  "key = %s" % toml_str(os.path.join(d, "server.key")),
                  "client_ca = %s" % toml_str(os.path.join(d, "ca.pem"))]
    lines += ["", "[database]", "path = %s" % toml_str(env.db)]
    if policy_dir:
        lines += ["", "[policy]", "dir = %s" % toml_str(policy_dir)]
    if log_level:
        lines += ["", "[log]", "level = %s" % toml_str(log_level)]
    for name, services, timeout, health in boot:
        lines += ["", "[[boot.sequence]]", "name = %s" % toml_str(name),
                  "services = [%s]" % ", ".join(toml_str(s) for s in services),
                  "timeout = %s" % toml_str(timeout), "health = %s" % toml_str(health)]
    env.write("mcp-agent.toml", "\n".join(lines) + "\n")
    env.config = env.path("mcp-agent.toml")
    return env.config


def service_toml(name, host_port=None, route=True, components=("main",), health_port=None):
    """A §4 document: one component per name in components (the first named
    like the service), a pinned port when host_port is set, an l4 route."""
    text = "name = %s\nactive = true\n" % toml_str(name)
    for i, comp in enumerate(components):
        cname = name if i == 0 else comp
        text += "\n[[components]]\nname = %s\nimage = %s\n" % (
            toml_str(cname), toml_str("localhost/%s:v1" % name))
        if host_port and i == 0:
            text += 'ports = ["127.0.0.1:%d:8080/tcp"]\n' % host_port
            if health_port is not None:
                text += "\n[components.health]\ncheck = \"tcp\"\nport = 8080\n"
        if route and i == 0:
            text += '\n[[components.routes]]\nname = "api"\nport = 9000\nmode = "l4"\n'
    return text


# ---- the daemon process ------------------------------------------------------------


class Daemon:
    """One `mcp-agent -c CONFIG run`; stderr goes to a file (a pipe could fill up)."""

    def __init__(self, env, extra_env=None, args=()):
        self.env = env
        self.stderr_path = env.path("daemon-%d.stderr" % int(time.monotonic() * 1000))
        self.stderr_file = open(self.stderr_path, "w")
        self.argv = env.argv(["run", *args])
        self.proc = subprocess.Popen(self.argv, cwd=env.dir, env=env.env(extra_env),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr_file, start_new_session=True)
        self.pid = self.proc.pid
        self.socket = getattr(env, "socket", None)
        self.tcp_port = None
        self.signalled_term = False
        self.rc = None

    def log(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=10, count=1):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.log().count(text) >= count:
                return True
            if self.proc.poll() is not None:
                return self.log().count(text) >= count
            time.sleep(0.05)
        return False

    def wait_ready(self, timeout=20):
        """Waits for the "serving" log line and a socket that accepts."""
        end = time.monotonic() + timeout
        serving = re.compile(r"msg=serving .*\n")  # a whole line: stderr is written piecemeal
        while not serving.search(self.log()):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.kill()
                raise AssertionError("daemon did not start (rc %s):\n%s"
                                     % (self.proc.poll(), self.log()))
            time.sleep(0.02)
        m = re.search(r"msg=serving .*tcp_port=(-?\d+)", self.log())
        if m and int(m.group(1)) > 0:
            self.tcp_port = int(m.group(1))
        while self.socket and time.monotonic() < end:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.socket)
                return self
            except OSError:
                time.sleep(0.05)
        return self

    def wait_boot_done(self, timeout=20):
        _, _, health_pb2, health_pb2_grpc = stubs()
        end = time.monotonic() + timeout
        with self.unix_channel() as ch:
            while time.monotonic() < end:
                r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return self
                time.sleep(0.05)
        raise AssertionError("boot not done in %ss:\n%s" % (timeout, self.log()))

    def unix_channel(self):
        return grpc.insecure_channel("unix:" + self.socket)

    def tls_channel(self, key="client.key", cert="client.pem", port=None):
        d = certs()
        creds = grpc.ssl_channel_credentials(
            root_certificates=read_bytes(os.path.join(d, "ca.pem")),
            private_key=read_bytes(os.path.join(d, key)) if key else None,
            certificate_chain=read_bytes(os.path.join(d, cert)) if cert else None)
        return grpc.secure_channel("127.0.0.1:%d" % (port or self.tcp_port), creds)

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self):
        """One SIGTERM only: a second one means something else."""
        if not self.signalled_term:
            self.signal(signal.SIGTERM)
        self.signalled_term = True

    def stop(self, timeout=20):
        """SIGTERM, wait; returns the exit status (kills on timeout, then raises)."""
        if self.rc is not None:
            return self.rc
        self.terminate()
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("daemon did not exit %ss after SIGTERM:\n%s" % (timeout, self.log()))
        self.stderr_file.close()
        return self.rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.rc = self.proc.wait()
        self.stderr_file.close()

    def sanitizer_report(self):
        text = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                return text
        if self.rc in (agent_env.ASAN_EXIT, agent_env.UBSAN_EXIT):
            return "sanitizer exit code %d\n%s" % (self.rc, text)
        return None

    def pss_vmrss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    def open_fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))


class DaemonTestCase(unittest.TestCase):
    """self.env per test; daemons started with self.daemon() are stopped by pid
    at cleanup and their stderr checked for sanitizer reports."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        if not os.access(AGENT_BIN, os.X_OK):
            raise unittest.SkipTest("MCP_AGENT_BIN is not an executable: %r" % AGENT_BIN)
        global agent_pb2, agent_pb2_grpc, health_pb2, health_pb2_grpc
        agent_pb2, agent_pb2_grpc, health_pb2, health_pb2_grpc = stubs()

    def setUp(self):
        self.env = AgentEnv(self.id().split(".")[-1])
        self.addCleanup(self.env.cleanup)

    def daemon(self, **kw):
        d = Daemon(self.env, **kw)
        self.addCleanup(self._reap, d)
        return d.wait_ready()

    def _reap(self, d):
        if d.proc.poll() is None and d.rc is None:
            try:
                d.stop(timeout=15)
            except AssertionError:
                pass
        else:
            d.rc = d.proc.wait()
            if not d.stderr_file.closed:
                d.stderr_file.close()
        report = d.sanitizer_report()
        if report:
            self.fail("sanitizer report from the daemon:\n" + report)

    def assert_code(self, code, fn, *args, **kw):
        """fn(*args) raises an RpcError with code; returns its details."""
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception.details() or ""

    def local(self, *args, timeout=30, env=None):
        """The CLI on the registry directly (MCP_AGENT_LOCAL=1)."""
        e = {"MCP_AGENT_LOCAL": "1"}
        e.update(env or {})
        return self.env.run(*args, timeout=timeout, env=e)


def health(ch, service="", timeout=5):
    _, _, hpb, hgrpc = stubs()
    return hgrpc.HealthStub(ch).Check(hpb.HealthCheckRequest(service=service), timeout=timeout)


# ---- every RPC, over the unix socket and over mutual TLS ----------------------------


class ApiTest(DaemonTestCase):
    """One daemon (fake runtime) with a two-stage boot: "base" with a service
    whose pinned port the test listens on (healthy at once), "extra" naming a
    service that is not in the registry."""

    def setUp(self):
        super().setUp()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.addCleanup(self.listener.close)
        base_port = self.listener.getsockname()[1]
        daemon_config(self.env, grpc_addr="127.0.0.1:%d" % free_port(), tls=True,
                      boot=[("base", ["base"], "20s", "tcp"), ("extra", ["ghost"], "2s", "tcp")])
        self.env.write("base.toml", service_toml("base", host_port=base_port, route=False))
        r = self.local("deploy", self.env.path("base.toml"))
        self.assertEqual(r.rc, 0, r.stderr)
        self.d = self.daemon().wait_boot_done()
        self.assertIsNotNone(self.d.tcp_port, self.d.log())

    def test_every_rpc_over_the_unix_socket(self):
        with self.d.unix_channel() as ch:
            self.walk_every_rpc(ch, "web-unix")
        self.assertEqual(os.stat(self.env.socket).st_mode & 0o777, 0o660)

    def test_every_rpc_over_mutual_tls(self):
        with self.d.tls_channel() as ch:
            self.walk_every_rpc(ch, "web-tls")

    def walk_every_rpc(self, ch, name):
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        t = 10
        # health
        serving = health_pb2.HealthCheckResponse.SERVING
        self.assertEqual(health(ch).status, serving)
        self.assertEqual(health(ch, "mcp.agent.v1.AgentService").status, serving)
        details = self.assert_code(grpc.StatusCode.NOT_FOUND, health, ch, "no.such.Service")
        self.assertIn("no.such.Service", details)

        # boot status: both stages, in order, with their services
        boot = stub.BootStatus(agent_pb2.BootStatusRequest(), timeout=t)
        self.assertTrue(boot.boot_done)
        self.assertEqual([s.name for s in boot.stages], ["base", "extra"])
        base, extra = boot.stages
        self.assertEqual(base.state, "healthy")
        self.assertEqual([s.name for s in base.services], ["base"])
        self.assertTrue(base.services[0].healthy)
        self.assertGreaterEqual(base.services[0].attempts, 1)
        self.assertEqual([s.name for s in extra.services], ["ghost"])
        self.assertFalse(extra.services[0].healthy)
        self.assertIn("not in the registry", extra.services[0].last_error)

        # deploy from TOML text
        node0 = stub.NodeStatus(agent_pb2.NodeStatusRequest(), timeout=t)
        toml = service_toml(name, host_port=free_port(), components=("main", "worker"))
        dep = stub.Deploy(agent_pb2.DeployRequest(service_toml=toml, source=name + ".toml"), timeout=t)
        self.assertTrue(dep.ok, dep)
        self.assertEqual(dep.service.name, name)
        self.assertTrue(dep.service.active)
        self.assertEqual([c.name for c in dep.service.components], [name, "worker"])
        self.assertEqual(sorted((r.component, r.ok, r.detail) for r in dep.results),
                         sorted([(name, True, "started"), ("worker", True, "started")]))
        self.assertEqual({r.container for r in dep.results}, {name, name + "-worker"})

        # list
        listed = {s.name: s for s in stub.ListServices(agent_pb2.ListServicesRequest(),
                                                       timeout=t).services}
        self.assertIn("base", listed)
        self.assertIn(name, listed)
        comps = {c.name: c for c in listed[name].components}
        self.assertEqual(comps[name].container, name)
        self.assertEqual(comps[name].image, "localhost/%s:v1" % name)
        self.assertEqual((comps[name].desired_state, comps[name].observed_state),
                         ("running", "running"))
        self.assertEqual(comps["worker"].container, name + "-worker")

        # status: components, ports, routes, events
        st = stub.GetServiceStatus(agent_pb2.ServiceRequest(service=name), timeout=t)
        self.assertEqual(st.name, name)
        self.assertTrue(st.active)
        self.assertEqual(st.runtime_error, "")
        main = next(c for c in st.components if c.name == name)
        self.assertTrue(main.ok)
        self.assertEqual(main.observed_state, "running")
        self.assertEqual(len(main.routes), 1)
        route = main.routes[0]
        self.assertEqual((route.name, route.port, route.mode), ("api", 9000, "l4"))
        self.assertTrue(20000 <= route.host_port <= 20999, route)
        self.assertFalse(route.registered)  # no mc-proxy configured
        self.assertIn((route.host_port, 9000), [(p.host_port, p.container_port) for p in main.ports])
        self.assertIn(("127.0.0.1", "tcp"), [(p.host_ip, p.protocol) for p in main.ports])
        self.assertIn("deployed", [e.kind for e in st.events])
        self.assertGreater(st.events[0].time_unix_ms, 1.6e12)

        node = stub.NodeStatus(agent_pb2.NodeStatusRequest(), timeout=t)
        self.assertEqual(node.node_name, "test-node")
        self.assertTrue(node.boot_done)
        self.assertGreater(node.uptime_seconds, 0)
        self.assertEqual(node.services, node0.services + 1)
        self.assertEqual(node.containers_running, node0.containers_running + 2)

        # stop one component, then the whole service
        r = stub.StopService(agent_pb2.ServiceRequest(service=name, component="worker"), timeout=t)
        self.assertTrue(r.ok, r)
        self.assertEqual(r.service, name)
        self.assertEqual([(x.component, x.ok, x.detail, x.container) for x in r.results],
                         [("worker", True, "stopped", name + "-worker")])
        r = stub.StopService(agent_pb2.ServiceRequest(service=name), timeout=t)
        self.assertTrue(r.ok, r)
        self.assertEqual(sorted(x.component for x in r.results), sorted([name, "worker"]))
        st = stub.GetServiceStatus(agent_pb2.ServiceRequest(service=name), timeout=t)
        for c in st.components:
            self.assertEqual(c.desired_state, "stopped")
            self.assertNotEqual(c.observed_state, "running")
            self.assertTrue(c.ok, c)

        # start, restart
        r = stub.StartService(agent_pb2.ServiceRequest(service=name), timeout=t)
        self.assertTrue(r.ok, r)
        self.assertEqual(sorted((x.component, x.ok) for x in r.results),
                         sorted([(name, True), ("worker", True)]))
        self.assertTrue(all(x.error == "" and x.detail for x in r.results), r)
        r = stub.RestartService(agent_pb2.ServiceRequest(service=name, component=name), timeout=t)
        self.assertTrue(r.ok, r)
        self.assertEqual([(x.component, x.detail) for x in r.results], [(name, "restarted")])
        st = stub.GetServiceStatus(agent_pb2.ServiceRequest(service=name), timeout=t)
        self.assertEqual({(c.name, c.desired_state, c.observed_state) for c in st.components},
                         {(name, "running", "running"), ("worker", "running", "running")})
        kinds = [e.kind for e in st.events]
        self.assertIn("restart", kinds)

        # recover: nothing to do; dry run plans nothing and says so
        rep = stub.Recover(agent_pb2.RecoverRequest(dry_run=True), timeout=t)
        self.assertTrue(rep.dry_run)
        self.assertEqual(list(rep.planned), [])
        self.assertIn((name, name), [(e.service, e.component) for e in rep.already_running])
        rep = stub.Recover(agent_pb2.RecoverRequest(), timeout=t)
        self.assertFalse(rep.dry_run)
        self.assertEqual((list(rep.recovered), list(rep.failed)), ([], []))
        self.assertIn((name, "worker"), [(e.service, e.component) for e in rep.already_running])

        # errors
        details = self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, stub.Deploy,
                                   agent_pb2.DeployRequest(service_toml='name = "x"\n[[components]\n',
                                                           source="broken.toml"), timeout=t)
        self.assertRegex(details, r"broken\.toml.*\b2\b|line 2", details)
        details = self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, stub.Deploy,
                                   agent_pb2.DeployRequest(service_toml=""), timeout=t)
        for rpc in (stub.GetServiceStatus, stub.StartService, stub.StopService,
                    stub.RestartService, stub.RemoveService):
            details = self.assert_code(grpc.StatusCode.NOT_FOUND, rpc,
                                       agent_pb2.ServiceRequest(service="nosuch"), timeout=t)
            self.assertIn("nosuch", details)
        self.assert_code(grpc.StatusCode.NOT_FOUND, stub.StopService,
                         agent_pb2.ServiceRequest(service=name, component="nosuch"), timeout=t)

        # remove
        r = stub.RemoveService(agent_pb2.ServiceRequest(service=name), timeout=t)
        self.assertTrue(r.ok, r)
        self.assertEqual(sorted((x.component, x.detail) for x in r.results),
                         sorted([(name, "removed"), ("worker", "removed")]))
        self.assert_code(grpc.StatusCode.NOT_FOUND, stub.GetServiceStatus,
                         agent_pb2.ServiceRequest(service=name), timeout=t)
        names = [s.name for s in stub.ListServices(agent_pb2.ListServicesRequest(),
                                                   timeout=t).services]
        self.assertNotIn(name, names)
        self.assertEqual(stub.NodeStatus(agent_pb2.NodeStatusRequest(), timeout=t).services,
                         node0.services)

    def test_node_status_names_the_version(self):
        with self.d.unix_channel() as ch:
            node = agent_pb2_grpc.AgentServiceStub(ch).NodeStatus(agent_pb2.NodeStatusRequest(),
                                                                  timeout=5)
        version = self.env.run("version").stdout.split()[1]
        self.assertEqual(node.version, version)

    def test_bad_service_toml_names_the_line(self):
        with self.d.unix_channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            text = 'name = "bad"\n\n[[components]]\nname = "api"\nimage = "x:1"\nports = [1, \n'
            details = self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, stub.Deploy,
                                       agent_pb2.DeployRequest(service_toml=text, source="bad.toml"),
                                       timeout=10)
            self.assertIn("bad.toml", details)
            self.assertRegex(details, r"bad\.toml:\d+|line \d+")
            # a semantic error names the key and its line
            text = 'name = "Bad Name"\n[[components]]\nname = "api"\nimage = "x:1"\n'
            details = self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, stub.Deploy,
                                       agent_pb2.DeployRequest(service_toml=text, source="n.toml"),
                                       timeout=10)
            self.assertIn("n.toml:1", details)
            self.assertIn("name", details)
            # nothing was stored
            names = [s.name for s in stub.ListServices(agent_pb2.ListServicesRequest(),
                                                       timeout=10).services]
            self.assertEqual(names, ["base"])

    def test_tls_client_without_certificate_is_refused(self):
        with self.d.tls_channel(key=None, cert=None) as ch:
            self.assert_code(grpc.StatusCode.UNAVAILABLE, health, ch)
        with self.d.tls_channel() as ch:
            self.assertEqual(health(ch).status, health_pb2.HealthCheckResponse.SERVING)

    def test_tls_client_with_certificate_from_another_ca_is_refused(self):
        with self.d.tls_channel(key="stranger.key", cert="stranger.pem") as ch:
            self.assert_code(grpc.StatusCode.UNAVAILABLE, health, ch)
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            self.assert_code(grpc.StatusCode.UNAVAILABLE, stub.ListServices,
                             agent_pb2.ListServicesRequest(), timeout=5)
        with self.d.tls_channel() as ch:
            self.assertEqual(health(ch).status, health_pb2.HealthCheckResponse.SERVING)

    def test_plaintext_client_on_the_tls_port_is_refused(self):
        with grpc.insecure_channel("127.0.0.1:%d" % self.d.tcp_port) as ch:
            self.assert_code(grpc.StatusCode.UNAVAILABLE, health, ch)
        with self.d.tls_channel() as ch:
            self.assertEqual(health(ch).status, health_pb2.HealthCheckResponse.SERVING)


class TransportConfigTest(DaemonTestCase):
    """Plaintext TCP only on loopback with insecure_loopback = true."""

    def test_plaintext_loopback_with_insecure_loopback(self):
        port = free_port()
        daemon_config(self.env, grpc_addr="127.0.0.1:%d" % port, insecure_loopback=True)
        d = self.daemon().wait_boot_done()
        with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
            self.assertEqual(health(ch).status, health_pb2.HealthCheckResponse.SERVING)
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            self.assertEqual(stub.NodeStatus(agent_pb2.NodeStatusRequest(), timeout=5).node_name,
                             "test-node")
        self.assertEqual(d.stop(), 0, d.log())

    def test_grpc_addr_port_zero_is_reported(self):
        daemon_config(self.env, grpc_addr="127.0.0.1:0", insecure_loopback=True)
        d = self.daemon()
        self.assertIsNotNone(d.tcp_port, "tcp_port not in the serving line:\n" + d.log())
        with grpc.insecure_channel("127.0.0.1:%d" % d.tcp_port) as ch:
            health(ch)
        self.assertEqual(d.stop(), 0, d.log())

    def _refused_at_start(self, with_socket):
        """Runs the daemon with plaintext on a non-loopback address; returns Result."""
        daemon_config(self.env, grpc_addr="0.0.0.0:%d" % free_port(), insecure_loopback=True)
        if not with_socket:
            with open(self.env.config) as f:
                text = f.read()
            self.env.write("mcp-agent.toml", re.sub(r"(?m)^socket = .*$", 'socket = ""', text))
        return self.env.run("run", timeout=10)

    def test_plaintext_on_a_non_loopback_address_is_refused(self):
        # without a unix socket (socket = "")
        r = self._refused_at_start(with_socket=False)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertIn("plaintext (insecure) gRPC on 0.0.0.0", r.stderr)
        self.assertIn("refused", r.stderr)

    # (was a bug until f2ed474: a start-up refusal hung with the unix listener open)
    def test_plaintext_on_a_non_loopback_address_is_refused_with_a_socket(self):
        r = self._refused_at_start(with_socket=True)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertIn("plaintext (insecure) gRPC on 0.0.0.0", r.stderr)
        self.assertIn("refused", r.stderr)

    # (was a bug until f2ed474: a start-up refusal hung with the unix listener open)
    def test_loopback_without_tls_nor_insecure_loopback_is_refused(self):
        daemon_config(self.env, grpc_addr="127.0.0.1:%d" % free_port())
        r = self.env.run("run", timeout=10)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertIn("required for a TLS listener", r.stderr)


# ---- lifecycle: boot, signals --------------------------------------------------------


class BootLifecycleTest(DaemonTestCase):
    """A foundation stage whose service never becomes healthy: its pinned port
    has nothing listening (fake runtime, tcp health)."""

    def setUp(self):
        super().setUp()
        self.db_port = free_port()
        daemon_config(self.env, boot=[("foundation", ["db"], "120s", "tcp")])
        self.env.write("db.toml", service_toml("db", host_port=self.db_port, route=False,
                                               health_port=8080))
        self.env.write("web.toml", service_toml("web"))
        r = self.local("deploy", self.env.path("db.toml"))
        self.assertEqual(r.rc, 0, r.stderr)

    def test_during_a_long_foundation_boot(self):
        d = self.daemon()
        self.assertTrue(d.wait_log("boot stage foundation starting"), d.log())
        with d.unix_channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            self.assertEqual(health(ch).status, health_pb2.HealthCheckResponse.NOT_SERVING)
            self.assertEqual(health(ch, "mcp.agent.v1.AgentService").status,
                             health_pb2.HealthCheckResponse.NOT_SERVING)
            # read-only calls answer
            boot = stub.BootStatus(agent_pb2.BootStatusRequest(), timeout=5)
            self.assertFalse(boot.boot_done)
            self.assertEqual([(s.name, s.state) for s in boot.stages], [("foundation", "running")])
            self.assertEqual([(s.name, s.healthy) for s in boot.stages[0].services],
                             [("db", False)])
            self.assertEqual(["db"], [s.name for s in stub.ListServices(
                agent_pb2.ListServicesRequest(), timeout=5).services])
            self.assertEqual(stub.GetServiceStatus(agent_pb2.ServiceRequest(service="db"),
                                                   timeout=5).name, "db")
            node = stub.NodeStatus(agent_pb2.NodeStatusRequest(), timeout=5)
            self.assertFalse(node.boot_done)
            self.assertTrue(stub.Recover(agent_pb2.RecoverRequest(dry_run=True), timeout=5).dry_run)
            # mutating calls: UNAVAILABLE
            calls = [
                (stub.Deploy, agent_pb2.DeployRequest(service_toml=service_toml("web"))),
                (stub.StartService, agent_pb2.ServiceRequest(service="db")),
                (stub.StopService, agent_pb2.ServiceRequest(service="db")),
                (stub.RestartService, agent_pb2.ServiceRequest(service="db")),
                (stub.RemoveService, agent_pb2.ServiceRequest(service="db")),
                (stub.Recover, agent_pb2.RecoverRequest(dry_run=False)),
            ]
            for rpc, req in calls:
                details = self.assert_code(grpc.StatusCode.UNAVAILABLE, rpc, req, timeout=5)
                self.assertIn("booting", details)
            # the registry did not change
            self.assertEqual(["db"], [s.name for s in stub.ListServices(
                agent_pb2.ListServicesRequest(), timeout=5).services])
            self.assertEqual(stub.BootStatus(agent_pb2.BootStatusRequest(), timeout=5)
                             .stages[0].state, "running")
        # SIGTERM in the foundation wait: exits 0 promptly
        t0 = time.monotonic()
        self.assertEqual(d.stop(timeout=15), 0, d.log())
        self.assertLess(time.monotonic() - t0, 10, d.log())
        self.assertIn("signal=SIGTERM", d.log())
        self.assertNotIn("boot finished healthy=true", d.log())
        self.assertFalse(os.path.exists(self.env.socket), "socket file left behind")

    def test_cli_shows_boot_progress_and_refuses_a_second_boot(self):
        d = self.daemon()
        self.assertTrue(d.wait_log("boot stage foundation starting"), d.log())
        r = self.env.run("status")
        self.assertIn("boot in progress:", r.stdout)
        self.assertRegex(r.stdout, r"stage foundation\s+running\s+0/1 healthy")
        doc = json.loads(self.env.run("status", "--json").stdout)
        self.assertFalse(doc["boot"]["boot_done"])
        self.assertEqual(doc["boot"]["stages"][0]["name"], "foundation")
        # a second boot sequence beside the daemon's would fight over the containers
        r = self.env.run("boot")
        self.assertEqual(r.rc, 2, r.stdout + r.stderr)
        self.assertIn("a daemon is running", r.stderr)
        self.assertEqual(d.stop(timeout=15), 0, d.log())

    def test_boot_completes_when_the_foundation_turns_healthy(self):
        d = self.daemon()
        self.assertTrue(d.wait_log("boot stage foundation starting"), d.log())
        with d.unix_channel() as ch:
            self.assertEqual(health(ch).status, health_pb2.HealthCheckResponse.NOT_SERVING)
        with socket.socket() as ls:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(("127.0.0.1", self.db_port))
            ls.listen(16)
            d.wait_boot_done(timeout=20)
            with d.unix_channel() as ch:
                stub = agent_pb2_grpc.AgentServiceStub(ch)
                boot = stub.BootStatus(agent_pb2.BootStatusRequest(), timeout=5)
                self.assertTrue(boot.boot_done)
                self.assertEqual(boot.stages[0].state, "healthy")
                db = boot.stages[0].services[0]
                self.assertTrue(db.healthy)
                self.assertGreater(db.attempts, 1)
                self.assertGreater(db.seconds_to_healthy, 0)
                dep = stub.Deploy(agent_pb2.DeployRequest(service_toml=service_toml("web")),
                                  timeout=10)
                self.assertTrue(dep.ok, dep)
        self.assertEqual(d.stop(), 0, d.log())


RECOVER_POLICY = """-- test recover policy, version %s
return {
    run = function(agent, opts)
        return { recovered = {}, already_running = {}, skipped = {}, failed = {},
                 warnings = { "policy %s" } }
    end,
}
"""

BROKEN_POLICY = """-- recover.lua with a syntax error on line 4
return {
    run = function(agent, opts)
        return { recovered = }
    end,
}
"""


class SignalTest(DaemonTestCase):

    def recover_warnings(self, d):
        with d.unix_channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            return list(stub.Recover(agent_pb2.RecoverRequest(), timeout=10).warnings)

    def test_sighup_reloads_policies_and_refuses_a_broken_one(self):
        pdir = self.env.path("policies")
        os.makedirs(pdir, mode=0o755)
        os.chmod(pdir, 0o755)
        self.env.write("policies/recover.lua", RECOVER_POLICY % ("1", "v1"))
        daemon_config(self.env, policy_dir=pdir)
        d = self.daemon().wait_boot_done()
        self.assertEqual(self.recover_warnings(d), ["policy v1"])

        # a broken one: refused, the old one kept
        self.env.write("policies/recover.lua", BROKEN_POLICY)
        d.signal(signal.SIGHUP)
        self.assertTrue(d.wait_log("policy reload refused"), d.log())
        refusal = next(l for l in d.log().splitlines() if "policy reload refused" in l)
        self.assertIn("level=ERROR", refusal)
        self.assertIn("recover.lua:4", refusal)
        self.assertEqual(self.recover_warnings(d), ["policy v1"])
        self.assertIsNone(d.proc.poll())

        # a fixed one: reloaded and used
        self.env.write("policies/recover.lua", RECOVER_POLICY % ("2", "v2"))
        d.signal(signal.SIGHUP)
        self.assertTrue(d.wait_log("policies reloaded"), d.log())
        self.assertEqual(self.recover_warnings(d), ["policy v2"])

        # a policy file writable by others is refused too
        self.env.write("policies/recover.lua", RECOVER_POLICY % ("3", "v3"), mode=0o666)
        d.signal(signal.SIGHUP)
        self.assertTrue(d.wait_log("policy reload refused", count=2), d.log())
        self.assertEqual(self.recover_warnings(d), ["policy v2"])
        self.assertEqual(d.stop(), 0, d.log())

    def test_boot_works_with_an_operator_recover_policy(self):
        pdir = self.env.path("policies")
        os.makedirs(pdir, mode=0o755)
        self.env.write("policies/recover.lua", RECOVER_POLICY % ("1", "v1"))
        daemon_config(self.env, policy_dir=pdir)
        self.env.write("web.toml", service_toml("web"))
        self.assertEqual(self.local("deploy", self.env.path("web.toml")).rc, 0)
        check = self.env.run("check")
        d = self.daemon().wait_boot_done()
        with d.unix_channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            states = [c.observed_state for s in stub.ListServices(
                agent_pb2.ListServicesRequest(), timeout=5).services for c in s.components]
        self.assertEqual(d.stop(), 0, d.log())
        if check.rc == 0:  # accepted: then boot must work with it
            self.assertNotIn("boot policy failed", d.log())
            self.assertEqual(states, ["running"])

    def slow_podman(self):
        """The fake podman behind a wrapper that sleeps 2 s per call while the
        file 'slow' exists in its state dir."""
        return self.env.write("slowpodman", "#!/bin/sh\n"
                              'if [ -e "$FAKEPODMAN_STATE/slow" ]; then\n'
                              '  echo "$1" >> "$FAKEPODMAN_STATE/slow-calls"; sleep 2\n'
                              'fi\n'
                              "exec %s %s \"$@\"\n" % (PYTHON, FAKE_PODMAN), mode=0o755)

    def slow_daemon_with_web(self):
        """A daemon over the slow podman, booted with service web (its boot
        recovered the exited container), podman now slow."""
        daemon_config(self.env, runtime="podman", podman=self.slow_podman())
        self.env.write("web.toml", service_toml("web", route=False))
        self.assertEqual(self.local("deploy", self.env.path("web.toml")).rc, 0)
        self.env.podman_containers([("web", "localhost/web:v1", "exited")])
        d = self.daemon().wait_boot_done()
        self.env.write("podman-state/slow", "")
        return d

    def test_sigterm_lets_an_inflight_recover_finish(self):
        d = self.slow_daemon_with_web()
        with d.unix_channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            fut = stub.Recover.future(agent_pb2.RecoverRequest(), timeout=30)
            time.sleep(0.7)
            self.assertFalse(fut.done())
            t0 = time.monotonic()
            d.terminate()
            self.assertTrue(d.wait_log("msg=stopping"), d.log())
            rep = fut.result()
        self.assertFalse(rep.dry_run)
        self.assertEqual(list(rep.failed), [])
        self.assertEqual(rep.already_running[0].service if rep.already_running else None, "web")
        self.assertEqual(d.stop(), 0, d.log())
        self.assertGreater(time.monotonic() - t0, 1.0, "exited before the slow call could finish")
        log = d.log()
        self.assertLess(log.index("msg=stopping"), log.index("msg=stopped"))

    def test_sigterm_lets_an_inflight_cli_command_finish(self):
        # the CLI's client (libcurl) drops what it reads after a GOAWAY: the
        # answer of a call in flight must reach it before the GOAWAY does
        d = self.slow_daemon_with_web()
        cli = self.env.start("recover", "--json")
        # the CLI asks NodeStatus first (one slow podman call), then Recover,
        # whose list is the second slow call: SIGTERM while that one runs
        calls = self.env.path("podman-state/slow-calls")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if os.path.exists(calls) and len(open(calls).read().split()) >= 2:
                break
            time.sleep(0.05)
        self.assertIsNone(cli.poll(), "the call ended before SIGTERM")
        d.terminate()
        self.assertTrue(d.wait_log("msg=stopping"), d.log())
        r = self.env.finish(cli, timeout=60)
        self.assertEqual(r.rc, 0, r.stderr + d.log())
        self.assertNotIn("grpc-status", r.stderr)
        self.assertEqual([e["service"] for e in json.loads(r.stdout)["already_running"]], ["web"])
        self.assertEqual(d.stop(), 0, d.log())

    def test_sigterm_refuses_new_calls(self):
        daemon_config(self.env, runtime="podman", podman=self.slow_podman())
        d = self.daemon().wait_boot_done()
        self.env.write("podman-state/slow", "")
        with d.unix_channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            fut = stub.ListServices.future(agent_pb2.ListServicesRequest(), timeout=30)
            time.sleep(0.5)
            d.terminate()
            self.assertTrue(d.wait_log("msg=stopping"), d.log())
            with d.unix_channel() as ch2:
                self.assert_code(grpc.StatusCode.UNAVAILABLE, health, ch2, timeout=5)
            self.assertEqual(fut.result().runtime_error, "")
        self.assertEqual(d.stop(), 0, d.log())

    def test_recover_over_the_api_on_fake_podman(self):
        cfg = daemon_config(self.env, runtime="podman", podman=FAKE_PODMAN)
        # the supervisor lists once after boot, then not for an hour: this
        # test is about the Recover call, not about the supervisor's restarts
        with open(cfg, "a") as f:
            f.write('\n[monitor]\ninterval = "1h"\n')
        self.env.write("web.toml", service_toml("web", route=False, components=("main", "worker")))
        self.assertEqual(self.local("deploy", self.env.path("web.toml")).rc, 0)
        d = self.daemon().wait_boot_done()
        time.sleep(1)  # its first list is done
        # the worker's container dies behind the agent's back (no event: the fake podman has none)
        self.env.podman_containers([("web", "localhost/web:v1", "running"),
                                    ("web-worker", "localhost/web:v1", "exited")])
        self.env.reset_podman_calls()
        with d.unix_channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            plan = stub.Recover(agent_pb2.RecoverRequest(dry_run=True), timeout=20)
            self.assertTrue(plan.dry_run)
            self.assertEqual([(e.service, e.component, e.container, e.action) for e in plan.planned],
                             [("web", "worker", "web-worker", "recreate")])
            self.assertEqual([e.container for e in plan.already_running], ["web"])
            self.assertEqual(list(plan.recovered), [])
            sub = agent_env.podman_subcommands(self.env.podman_calls())
            self.assertNotIn("run", sub)
            self.assertNotIn("rm", sub)
            rep = stub.Recover(agent_pb2.RecoverRequest(), timeout=20)
            self.assertEqual([(e.service, e.component) for e in rep.recovered], [("web", "worker")])
            self.assertEqual(list(rep.failed), [])
            sub = agent_env.podman_subcommands(self.env.podman_calls())
            self.assertIn("run", sub)
            again = stub.Recover(agent_pb2.RecoverRequest(), timeout=20)
            self.assertEqual(list(again.recovered), [])
            self.assertEqual(sorted(e.container for e in again.already_running),
                             ["web", "web-worker"])
        self.assertEqual(d.stop(), 0, d.log())


# ---- the CLI with and without a daemon ---------------------------------------------


class CliThroughDaemonTest(DaemonTestCase):
    """On the fake runtime the containers live in the daemon's memory: a CLI
    that went to the registry directly would see them "missing"."""

    def setUp(self):
        super().setUp()
        daemon_config(self.env)
        self.env.write("web.toml", service_toml("web", components=("main", "worker")))

    def daemon_view(self, d, name):
        with d.unix_channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            for s in stub.ListServices(agent_pb2.ListServicesRequest(), timeout=10).services:
                if s.name == name:
                    return {c.name: (c.desired_state, c.observed_state) for c in s.components}
        return None

    def test_cli_goes_through_a_running_daemon(self):
        d = self.daemon().wait_boot_done()
        r = self.env.run("deploy", self.env.path("web.toml"))
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("started", r.stdout)
        # the daemon ran the containers (its in-memory runtime has them)
        self.assertEqual(self.daemon_view(d, "web"),
                         {"web": ("running", "running"), "worker": ("running", "running")})
        r = self.env.run("status", "web")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertRegex(r.stdout, r"desired=running\s+observed=running")
        r = self.env.run("ls")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("web", r.stdout)
        self.assertNotIn("missing", r.stdout)
        # the same status on the registry directly: no containers in this process
        r = self.local("status", "web")
        self.assertEqual(r.rc, 1 if r.rc else 0, r.stderr)
        self.assertIn("missing", r.stdout)

        r = self.env.run("stop", "web/worker")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(self.daemon_view(d, "web")["worker"][0], "stopped")
        self.assertNotEqual(self.daemon_view(d, "web")["worker"][1], "running")
        r = self.env.run("start", "web/worker")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(self.daemon_view(d, "web")["worker"], ("running", "running"))
        r = self.env.run("restart", "web")
        self.assertEqual(r.rc, 0, r.stderr)
        r = self.env.run("recover", "--dry-run")
        self.assertEqual(r.rc, 0, r.stderr)
        r = self.env.run("rm", "web")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIsNone(self.daemon_view(d, "web"))
        # the daemon recorded the operator's calls
        with d.unix_channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            self.assertEqual(stub.NodeStatus(agent_pb2.NodeStatusRequest(), timeout=5)
                             .containers_running, 0)
        self.assertEqual(d.stop(), 0, d.log())

    def test_cli_errors_come_back_from_the_daemon(self):
        self.daemon().wait_boot_done()
        self.env.write("bad.toml", 'name = "bad"\n[[components]\n')
        r = self.env.run("deploy", self.env.path("bad.toml"))
        self.assertEqual(r.rc, 2, r.stdout + r.stderr)
        self.assertIn("bad.toml", r.stderr)
        r = self.env.run("stop", "nosuch")
        self.assertNotEqual(r.rc, 0)
        self.assertIn("nosuch", r.stderr)

    def test_cli_works_locally_without_a_daemon(self):
        self.assertFalse(os.path.exists(self.env.socket))
        r = self.env.run("deploy", self.env.path("web.toml"))
        self.assertEqual(r.rc, 0, r.stderr)
        r = self.env.run("ls")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("web", r.stdout)
        r = self.env.run("stop", "web")
        self.assertEqual(r.rc, 0, r.stderr)
        r = self.env.run("status", "web", "--json")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn('"desired_state":"stopped"', r.stdout.replace(" ", ""))
        r = self.env.run("rm", "web")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertFalse(agent_env.sqlite_text_contains(self.env.db, "localhost/web:v1"))

    def test_cli_with_a_stale_socket_file_works_locally(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.env.socket)
        s.close()
        r = self.env.run("deploy", self.env.path("web.toml"), timeout=20)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertLess(r.elapsed, 15)

    def test_local_flag_bypasses_a_running_daemon(self):
        d = self.daemon().wait_boot_done()
        r = self.local("deploy", self.env.path("web.toml"))
        self.assertEqual(r.rc, 0, r.stderr)
        # the daemon sees the registry row, but it did not run the containers
        self.assertEqual(self.daemon_view(d, "web"),
                         {"web": ("running", "missing"), "worker": ("running", "missing")})
        self.assertEqual(d.stop(), 0, d.log())


if __name__ == "__main__":
    unittest.main()
