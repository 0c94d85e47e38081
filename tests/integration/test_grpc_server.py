"""The C gRPC server (src/core/grpc_server.c) against a stock gRPC client (python grpcio).

Drives tests/grpc/grpc_test_server from the build tree ($MCP_BUILD_DIR) over
its unix socket, over TLS with client certificates and over raw sockets for
malformed HTTP/2. Every edge case is followed by a successful call proving the
server still serves, and every server's stderr is checked for sanitizer
reports (the ASan build runs the same test).
"""
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

from grpc_env import CUT_HEADERS, OVERSIZED_FRAME, TRUNCATED_SETTINGS, gen_stubs, make_certs

SOURCE_DIR = os.environ.get(
    "MCP_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("MCP_BUILD_DIR", os.path.join(SOURCE_DIR, "build-grpc"))
SERVER_BIN = os.path.join(BUILD_DIR, "tests", "grpc", "grpc_test_server")
PYTHON = "/usr/bin/python3"
NGHTTP = shutil.which("nghttp")

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")

AGENT = "/mcp.agent.v1.AgentService/"
SLOW_MS = 1000
N_SERVICES = 5

def read(d, name):
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


class Server:
    """One grpc_test_server process; stderr goes to a file checked for sanitizer reports."""

    def __init__(self, tmp, name, args):
        self.stderr_path = os.path.join(tmp, name + ".stderr")
        self.stderr_file = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([SERVER_BIN, *args], stdout=subprocess.PIPE,
                                     stderr=self.stderr_file)
        self.port = None
        self.terminated = False

    def wait_ready(self, timeout=15):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY"):
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server did not start: {line!r}\n{self.stderr()}")
        self.port = int(line.split("port=")[1])
        return self

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def wait_log(self, text, timeout=5):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.stderr():
                return True
            time.sleep(0.05)
        return False

    def terminate(self):
        """One SIGTERM only: a second one could land after the handler is gone."""
        if not self.terminated and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.terminated = True

    def stop(self, timeout=15):
        """SIGTERM, wait; returns the exit status."""
        self.terminate()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self.proc.stdout.close()
        self.stderr_file.close()
        return rc

    def assert_clean(self, testcase):
        err = self.stderr()
        for marker in SANITIZER_MARKERS:
            testcase.assertNotIn(marker, err, f"sanitizer report in server stderr:\n{err}")

    def assert_stops_clean(self, testcase):
        """stop() exits 0 and stderr holds no sanitizer report."""
        testcase.assertEqual(self.stop(), 0, self.stderr())
        self.assert_clean(testcase)


def run_refused(args):
    proc = subprocess.run([SERVER_BIN, *args], capture_output=True, text=True, timeout=20)
    return proc.returncode, proc.stderr


class GrpcServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(SERVER_BIN, os.X_OK):
            raise unittest.SkipTest(f"{SERVER_BIN} not built")
        cls.tmp = tempfile.mkdtemp(prefix="grpc-it-")
        global health_pb2, health_pb2_grpc, agent_pb2, agent_pb2_grpc
        agent_pb2, agent_pb2_grpc, health_pb2, health_pb2_grpc = gen_stubs(cls.tmp)
        cls.certs = os.path.join(cls.tmp, "certs")
        os.mkdir(cls.certs)
        make_certs(cls.certs)
        cls.sock = os.path.join(cls.tmp, "agent.sock")
        cls.server = Server(cls.tmp, "main", [
            "--unix", cls.sock, "--tcp", "127.0.0.1:0",
            "--cert", os.path.join(cls.certs, "server.pem"),
            "--key", os.path.join(cls.certs, "server.key"),
            "--ca", os.path.join(cls.certs, "ca.pem"),
            "--services", str(N_SERVICES), "--slow-ms", str(SLOW_MS)]).wait_ready()

    @classmethod
    def tearDownClass(cls):
        if hasattr(cls, "server"):
            rc = cls.server.stop()
            err = cls.server.stderr()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            assert rc == 0, f"server exit status {rc}:\n{err}"
            for marker in SANITIZER_MARKERS:
                assert marker not in err, f"sanitizer report in server stderr:\n{err}"

    def tearDown(self):
        self.server.assert_clean(self)
        self.assertIsNone(self.server.proc.poll(), "the server died:\n" + self.server.stderr())

    # ---- helpers ----

    def unix_channel(self):
        return grpc.insecure_channel("unix:" + self.sock)

    def tls_channel(self, key="client.key", cert="client.pem"):
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(self.certs, "ca.pem"),
            private_key=read(self.certs, key) if key else None,
            certificate_chain=read(self.certs, cert) if cert else None)
        return grpc.secure_channel(f"127.0.0.1:{self.server.port}", creds)

    def check_health(self, channel, service=""):
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)

    def assert_tcp_serves(self, srv):
        """srv answers Health.Check SERVING over plaintext TCP."""
        with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            self.assertEqual(self.check_health(ch).status,
                             health_pb2.HealthCheckResponse.SERVING)

    def assert_serves(self, ch):
        """Health.Check is SERVING and ListServices lists all N_SERVICES on ch;
        returns an AgentService stub on ch."""
        self.assertEqual(self.check_health(ch).status, health_pb2.HealthCheckResponse.SERVING)
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        reply = stub.ListServices(agent_pb2.ListServicesRequest(), timeout=5)
        self.assertEqual(len(reply.services), N_SERVICES)
        return stub

    def assert_still_serves(self):
        with self.unix_channel() as ch:
            self.assert_serves(ch)

    def raw_call(self, channel, method, payload, timeout=5, **kw):
        fn = channel.unary_unary(method)  # no serializers: bytes in, bytes out
        return fn(payload, timeout=timeout, **kw)

    def raw_connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.sock)
        return s

    def assert_closed_by_server(self, s):
        """Reads until EOF (the server must close, not hang)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if not s.recv(65536):
                    return
            except ConnectionResetError:
                return
        self.fail("server kept a broken connection open")

    # ---- happy paths ----

    def test_health_and_list_over_unix_socket(self):
        with self.unix_channel() as ch:
            ok = health_pb2.HealthCheckResponse.SERVING
            self.assertEqual(self.check_health(ch, "").status, ok)
            self.assertEqual(self.check_health(ch, "mcp.agent.v1.AgentService").status, ok)
            with self.assertRaises(grpc.RpcError) as cm:
                self.check_health(ch, "no.such.Service")
            self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
            self.assertIn("no.such.Service", cm.exception.details())
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            reply = stub.ListServices(agent_pb2.ListServicesRequest(), timeout=5)
            self.assertEqual([s.name for s in reply.services],
                             [f"svc{i}" for i in range(N_SERVICES)])
            self.assertEqual(reply.services[0].components[0].desired_state, "running")
            node = stub.NodeStatus(agent_pb2.NodeStatusRequest(), timeout=5)
            self.assertEqual(node.node_name, "test-node")
            self.assertTrue(node.boot_done)
        self.assertEqual(os.stat(self.sock).st_mode & 0o777, 0o660)

    def test_health_and_list_over_mtls(self):
        with self.tls_channel() as ch:
            stub = self.assert_serves(ch)
            status = stub.GetServiceStatus(agent_pb2.ServiceRequest(service="web"), timeout=10)
            self.assertEqual(status.name, "web")

    # ---- TLS refusals ----

    def test_client_without_certificate_is_refused(self):
        with self.tls_channel(key=None, cert=None) as ch:
            with self.assertRaises(grpc.RpcError) as cm:
                self.check_health(ch)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertTrue(self.server.wait_log("TLS handshake failed"))
        with self.tls_channel() as ch:
            self.assertEqual(self.check_health(ch).status,
                             health_pb2.HealthCheckResponse.SERVING)

    def test_client_certificate_from_another_ca_is_refused(self):
        with self.tls_channel(key="stranger.key", cert="stranger.pem") as ch:
            with self.assertRaises(grpc.RpcError) as cm:
                self.check_health(ch)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        with self.tls_channel() as ch:
            self.assertEqual(self.check_health(ch).status,
                             health_pb2.HealthCheckResponse.SERVING)

    def test_garbage_on_the_tls_port(self):
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_closed_by_server(s)
        s.close()
        with self.tls_channel() as ch:
            self.assertEqual(self.check_health(ch).status,
                             health_pb2.HealthCheckResponse.SERVING)

    # ---- start-up refusals ----

    def test_plaintext_on_non_loopback_is_refused_at_start(self):
        rc, err = run_refused(["--tcp", "0.0.0.0:0", "--insecure"])
        self.assertEqual(rc, 2, err)
        self.assertIn("plaintext (insecure) gRPC on 0.0.0.0:0 refused", err)
        rc, err = run_refused(["--tcp", "[::]:0", "--insecure"])
        self.assertEqual(rc, 2, err)
        self.assertIn("refused", err)
        for marker in SANITIZER_MARKERS:
            self.assertNotIn(marker, err)

    def test_plaintext_loopback_tcp_works(self):
        srv = Server(self.tmp, "plain", ["--tcp", "127.0.0.1:0", "--insecure"]).wait_ready()
        try:
            self.assert_tcp_serves(srv)
        finally:
            srv.assert_stops_clean(self)

    def test_unix_socket_path_rules(self):
        # a regular file is never removed
        path = os.path.join(self.tmp, "not-a-socket")
        with open(path, "w") as f:
            f.write("keep me")
        rc, err = run_refused(["--unix", path])
        self.assertEqual(rc, 2, err)
        self.assertIn("exists and is not a socket", err)
        self.assertEqual(read(self.tmp, "not-a-socket"), b"keep me")
        # a live socket (our main server's) is not stolen
        rc, err = run_refused(["--unix", self.sock])
        self.assertEqual(rc, 2, err)
        self.assertIn("another server is listening", err)
        # a stale socket file is replaced
        stale = os.path.join(self.tmp, "stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(stale)
        s.close()
        srv = Server(self.tmp, "stale", ["--unix", stale]).wait_ready()
        try:
            with grpc.insecure_channel("unix:" + stale) as ch:
                self.assertEqual(self.check_health(ch).status,
                                 health_pb2.HealthCheckResponse.SERVING)
        finally:
            srv.assert_stops_clean(self)
        self.assertFalse(os.path.exists(stale), "socket file left behind at shutdown")
        self.assert_still_serves()

    # ---- malformed input ----

    def test_oversized_message_is_resource_exhausted(self):
        with self.unix_channel() as ch:
            with self.assertRaises(grpc.RpcError) as cm:
                self.raw_call(ch, AGENT + "ListServices", b"\0" * (4 * 1024 * 1024 + 1),
                              timeout=20)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("exceeds the limit", cm.exception.details())
        self.assert_still_serves()

    def test_garbage_connection_preface(self):
        s = self.raw_connect()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\xff" * 100)
        self.assert_closed_by_server(s)
        s.close()
        self.assert_still_serves()

    def test_truncated_frames_then_close(self):
        # a SETTINGS frame announcing 60 bytes, only 6 sent
        s = self.raw_connect()
        s.sendall(TRUNCATED_SETTINGS)
        s.close()
        # a HEADERS frame cut inside its header block, then close
        s = self.raw_connect()
        s.sendall(CUT_HEADERS)
        s.close()
        # a frame of an absurd length (bigger than SETTINGS_MAX_FRAME_SIZE)
        s = self.raw_connect()
        s.sendall(OVERSIZED_FRAME)
        self.assert_closed_by_server(s)
        s.close()
        self.assert_still_serves()

    def test_unknown_method_is_unimplemented(self):
        with self.unix_channel() as ch:
            for method in (AGENT + "NoSuchMethod", "/no.such.Service/Method"):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.raw_call(ch, method, b"")
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
                self.assertIn(method, cm.exception.details())
        self.assert_still_serves()

    def test_message_that_is_not_protobuf_is_invalid_argument(self):
        with self.unix_channel() as ch:
            # field 1, length-delimited, with a length far beyond the message
            for payload in (b"\x0a\xff\xff\xff\x0f", b"\xff" * 12):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.raw_call(ch, AGENT + "GetServiceStatus", payload)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn("mcp.agent.v1.ServiceRequest", cm.exception.details())
        self.assert_still_serves()

    def test_compressed_message_is_unimplemented(self):
        with self.unix_channel() as ch:
            # big enough that grpcio really compresses it
            payload = agent_pb2.ServiceRequest(service="x" * 4000).SerializeToString()
            with self.assertRaises(grpc.RpcError) as cm:
                self.raw_call(ch, AGENT + "GetServiceStatus", payload,
                              compression=grpc.Compression.Gzip)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
            self.assertIn("compressed", cm.exception.details())
        self.assert_still_serves()

    # ---- concurrency, cancellation, deadlines ----

    def test_100_concurrent_streams(self):
        with self.tls_channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            futures = [stub.GetServiceStatus.future(agent_pb2.ServiceRequest(service=f"s{i}"),
                                                    timeout=30)
                       for i in range(100)]
            names = [f.result().name for f in futures]
        self.assertEqual(names, [f"s{i}" for i in range(100)])
        self.assert_still_serves()

    def test_client_cancels_mid_call(self):
        before = self.server.stderr().count("call cancelled")
        ch = self.unix_channel()
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        fut = stub.GetServiceStatus.future(agent_pb2.ServiceRequest(service="x"), timeout=30)
        time.sleep(0.3)
        ch.close()  # cancels the call (RST_STREAM) and drops the connection
        self.assertTrue(fut.cancelled() or fut.exception() is not None)
        self.assertTrue(self._wait_count("call cancelled", before + 1), self.server.stderr())
        self.assert_still_serves()

    def test_client_process_dies_mid_call(self):
        before = self.server.stderr().count("call cancelled")
        code = (
            "import grpc, sys, time\n"
            f"ch = grpc.insecure_channel('unix:{self.sock}')\n"
            f"f = ch.unary_unary('{AGENT}GetServiceStatus').future(b'', timeout=30)\n"
            "time.sleep(0.5)\n"
            "print('sent', flush=True)\n"
            "time.sleep(30)\n")
        proc = subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE)
        try:
            self.assertEqual(proc.stdout.readline().strip(), b"sent")
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        self.assertTrue(self._wait_count("call cancelled", before + 1), self.server.stderr())
        self.assert_still_serves()

    def test_deadline_shorter_than_the_method(self):
        before = self.server.stderr().count("call cancelled")
        with self.unix_channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            with self.assertRaises(grpc.RpcError) as cm:
                stub.GetServiceStatus(agent_pb2.ServiceRequest(service="x"), timeout=0.2)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # the handler heard (the client's RST_STREAM or the server's own deadline, whichever first)
        self.assertTrue(self._wait_count("call cancelled", before + 1), self.server.stderr())
        self.assert_still_serves()

    def _wait_count(self, text, n, timeout=5):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.server.stderr().count(text) >= n:
                return True
            time.sleep(0.05)
        return False

    # ---- hand-made HTTP/2 requests (nghttp, plaintext loopback TCP) ----

    def nghttp(self, port, method, body, headers=()):
        path = os.path.join(self.tmp, "body.bin")
        with open(path, "wb") as f:
            f.write(body)
        argv = [NGHTTP, "-v", "-t", "10", "-d", path, "-H", ":method: POST"]
        for h in headers:
            argv += ["-H", h]
        proc = subprocess.run(argv + [f"http://127.0.0.1:{port}{method}"], capture_output=True,
                              timeout=20)
        return (proc.stdout + proc.stderr).decode("utf-8", "replace")

    @unittest.skipUnless(NGHTTP, "nghttp (nghttp2-client) not installed")
    def test_raw_http2_requests(self):
        srv = Server(self.tmp, "raw", ["--tcp", "127.0.0.1:0", "--insecure",
                                       "--slow-ms", "1500"]).wait_ready()
        grpc_ct = "content-type: application/grpc"
        try:
            # the server's own deadline: a grpc-timeout shorter than the method
            out = self.nghttp(srv.port, AGENT + "GetServiceStatus", b"\0" * 5,
                              [grpc_ct, "grpc-timeout: 200m"])
            self.assertIn("grpc-status: 4", out)
            self.assertIn("grpc-message: deadline exceeded", out)
            self.assertTrue(srv.wait_log("reason=DEADLINE_EXCEEDED"), srv.stderr())
            # not gRPC at all
            out = self.nghttp(srv.port, AGENT + "ListServices", b"\0" * 5,
                              ["content-type: text/plain"])
            self.assertIn(":status: 415", out)
            # a message whose prefix promises more than the stream carries
            out = self.nghttp(srv.port, AGENT + "ListServices", b"\0\0\0\0\x0aabc", [grpc_ct])
            self.assertIn("grpc-status: 13", out)
            self.assertIn("truncated request message: got 3 of 10 bytes", out)
            # no message at all
            out = self.nghttp(srv.port, AGENT + "ListServices", b"", [grpc_ct])
            self.assertIn("grpc-status: 13", out)
            # two messages on a unary method
            out = self.nghttp(srv.port, AGENT + "ListServices", b"\0" * 10, [grpc_ct])
            self.assertIn("grpc-status: 12", out)
            # a good one: HEADERS, DATA, trailers with grpc-status 0
            out = self.nghttp(srv.port, AGENT + "ListServices", b"\0" * 5, [grpc_ct])
            self.assertIn(":status: 200", out)
            self.assertIn("grpc-status: 0", out)
            self.assert_tcp_serves(srv)
        finally:
            srv.assert_stops_clean(self)

    # ---- graceful shutdown ----

    def test_sigterm_lets_an_inflight_call_finish(self):
        sock = os.path.join(self.tmp, "term.sock")
        srv = Server(self.tmp, "term", ["--unix", sock, "--slow-ms", "800"]).wait_ready()
        with grpc.insecure_channel("unix:" + sock) as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            fut = stub.GetServiceStatus.future(agent_pb2.ServiceRequest(service="inflight"),
                                               timeout=20)
            time.sleep(0.3)
            srv.terminate()
            self.assertEqual(fut.result().name, "inflight")
        srv.assert_stops_clean(self)
        self.assertFalse(os.path.exists(sock), "socket file left behind")
        self.assertIn("server stopped", srv.stderr())


if __name__ == "__main__":
    unittest.main()
