"""Malformed and hostile traffic against the daemon (`mcp-agent run`): oversized
messages, truncated frames, a garbage preface, 100 concurrent streams, clients
that vanish mid-call, unknown methods, bytes that are not protobuf. Each test
ends with a successful call proving the daemon still serves, and checks the
daemon's stderr for sanitizer reports (run against the ASan build by pointing
MCP_AGENT_BIN at it). One daemon (fake runtime, 10 services) serves the class;
helpers come from test_daemon.py.
"""
import os
import socket
import struct
import subprocess
import threading
import time
import unittest

import grpc

import agent_env
import test_daemon as td
from agent_env import AGENT_BIN, AgentEnv
from grpc_env import CUT_HEADERS, OVERSIZED_FRAME, PREFACE, TRUNCATED_SETTINGS

AGENT = td.AGENT
N_SERVICES = 10
SLOW_RECOVER_S = 1.5
MAX_MESSAGE = 4 * 1024 * 1024

# The built-in recover.lua with a slow run() (boot.lua uses the rest of it).
SLOW_RECOVER_TAIL = """
local builtin_run = M.run
function M.run(agent, opts)
    agent.clock.sleep(%s)
    local report = builtin_run(agent, opts)
    report.warnings = report.warnings or {}
    report.warnings[#report.warnings + 1] = "slow recover done"
    return report
end

return M
""" % SLOW_RECOVER_S


def slow_recover_policy():
    with open(os.path.join(agent_env.SOURCE_DIR, "policies", "recover.lua")) as f:
        text = f.read().rstrip()
    assert text.endswith("return M"), "policies/recover.lua no longer ends with 'return M'"
    return text[:-len("return M")] + SLOW_RECOVER_TAIL


class DaemonEdgesTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not os.access(AGENT_BIN, os.X_OK):
            raise unittest.SkipTest("MCP_AGENT_BIN is not an executable: %r" % AGENT_BIN)
        global agent_pb2, agent_pb2_grpc, health_pb2, health_pb2_grpc
        agent_pb2, agent_pb2_grpc, health_pb2, health_pb2_grpc = td.stubs()
        cls.env = AgentEnv("daemon-edges")
        try:
            pdir = cls.env.path("policies")
            os.makedirs(pdir, mode=0o755)
            cls.env.write("policies/recover.lua", slow_recover_policy())
            td.daemon_config(cls.env, policy_dir=pdir)
            files = []
            for i in range(N_SERVICES):
                files.append(cls.env.write("svc%02d.toml" % i, td.service_toml("svc%02d" % i)))
            r = cls.env.run("deploy", *files, env={"MCP_AGENT_LOCAL": "1"})
            assert r.rc == 0, r.stderr
            cls.daemon = td.Daemon(cls.env).wait_ready().wait_boot_done()
        except BaseException:
            if hasattr(cls, "daemon"):
                cls.daemon.kill()
            cls.env.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        d = cls.daemon
        try:
            rc = d.stop(timeout=20)
            report = d.sanitizer_report()
            log = d.log()
        finally:
            cls.env.cleanup()
        assert report is None, "sanitizer report from the daemon:\n%s" % report
        assert rc == 0, "daemon exit status %s:\n%s" % (rc, log)

    def setUp(self):
        self.log_at_start = len(self.daemon.log())

    def tearDown(self):
        d = self.daemon
        self.assertIsNone(d.proc.poll(), "the daemon died:\n" + d.log())
        report = d.sanitizer_report()
        self.assertIsNone(report, "sanitizer report from the daemon:\n%s" % report)
        self.assertNotIn("API handler failed", d.log()[self.log_at_start:])

    # ---- helpers ----

    def channel(self):
        return self.daemon.unix_channel()

    def raw_call(self, ch, method, payload, timeout=10, **kw):
        return ch.unary_unary(method)(payload, timeout=timeout, **kw)  # bytes in, bytes out

    def assert_code(self, code, fn, *args, **kw):
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception.details() or ""

    def assert_still_serves(self):
        with self.channel() as ch:
            self.assertEqual(td.health(ch).status, health_pb2.HealthCheckResponse.SERVING)
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            reply = stub.ListServices(agent_pb2.ListServicesRequest(), timeout=10)
            self.assertEqual([s.name for s in reply.services],
                             ["svc%02d" % i for i in range(N_SERVICES)])
            self.assertEqual({c.observed_state for s in reply.services for c in s.components},
                             {"running"})

    def raw_connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(self.daemon.socket)
        except OSError:
            s.close()
            raise
        return s

    def assert_closed_by_server(self, s, timeout=5):
        """Reads until EOF: the daemon must close a broken connection, not keep it."""
        s.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not s.recv(65536):
                    return
            except (ConnectionResetError, BrokenPipeError):
                return
            except socket.timeout:
                break
        self.fail("the daemon kept a broken connection open")

    def read_frames(self, s, until, timeout=5):
        """HTTP/2 frames (type, flags, stream, payload) read from s until until(frame) or EOF."""
        buf, frames = b"", []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                f = (buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + length])
                frames.append(f)
                buf = buf[9 + length:]
                if until(f):
                    return frames
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
        return frames

    def wait_fds_back(self, baseline, timeout=5):
        """The daemon's open file descriptors return to baseline (no leak per connection)."""
        end = time.monotonic() + timeout
        n = self.daemon.open_fds()
        while n > baseline and time.monotonic() < end:
            time.sleep(0.05)
            n = self.daemon.open_fds()
        self.assertLessEqual(n, baseline, "fd leak: %d open, %d before" % (n, baseline))

    # ---- size limits ----

    def test_oversized_message_is_resource_exhausted(self):
        with self.channel() as ch:
            details = self.assert_code(grpc.StatusCode.RESOURCE_EXHAUSTED, self.raw_call, ch,
                                       AGENT + "ListServices", b"\0" * (MAX_MESSAGE + 1), timeout=30)
            self.assertIn("exceeds the limit", details)
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            big = 'name = "big"\n' + "#" * MAX_MESSAGE + "\n"
            self.assert_code(grpc.StatusCode.RESOURCE_EXHAUSTED, stub.Deploy,
                             agent_pb2.DeployRequest(service_toml=big), timeout=30)
        self.assert_still_serves()

    def test_large_message_under_the_limit_is_parsed(self):
        # 1 MiB of comments around a bad document: parsed to the end, INVALID_ARGUMENT
        text = "#" * (1024 * 1024) + '\nname = "Bad Name"\n[[components]]\nname = "a"\nimage = "x:1"\n'
        with self.channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            details = self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, stub.Deploy,
                                       agent_pb2.DeployRequest(service_toml=text, source="big.toml"),
                                       timeout=30)
            self.assertIn("big.toml:2", details)
        self.assert_still_serves()

    # ---- broken HTTP/2 ----

    def test_garbage_connection_preface(self):
        s = self.raw_connect()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\xff" * 100)
        self.assert_closed_by_server(s)
        s.close()
        s = self.raw_connect()
        s.sendall(b"\0" * 4096)
        self.assert_closed_by_server(s)
        s.close()
        self.assert_still_serves()

    def test_truncated_frames(self):
        # a SETTINGS frame announcing 60 bytes, 6 sent, then close
        s = self.raw_connect()
        s.sendall(TRUNCATED_SETTINGS)
        s.close()
        # a HEADERS frame cut inside its header block, then close
        s = self.raw_connect()
        s.sendall(CUT_HEADERS)
        s.close()
        # half a preface, then close
        s = self.raw_connect()
        s.sendall(PREFACE[:10])
        s.close()
        # a frame longer than SETTINGS_MAX_FRAME_SIZE: the daemon hangs up
        s = self.raw_connect()
        s.sendall(OVERSIZED_FRAME)
        self.assert_closed_by_server(s)
        s.close()
        self.assert_still_serves()

    def test_grpc_message_prefix_longer_than_the_stream(self):
        # a gRPC message whose 5-byte prefix promises 100 bytes; 3 arrive, then END_STREAM.
        # Sent through grpcio as an already-framed body is impossible, so do it by hand:
        # HEADERS (HPACK literal, no indexing) + DATA with END_STREAM.
        def lit(name, value):
            n, v = name.encode(), value.encode()
            return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v
        block = (b"\x83" + b"\x86" + lit(":path", AGENT + "ListServices") +
                 lit(":authority", "localhost") + lit("content-type", "application/grpc") +
                 lit("te", "trailers"))
        headers = struct.pack(">I", len(block))[1:] + b"\x01\x04" + struct.pack(">I", 1) + block
        body = b"\x00" + struct.pack(">I", 100) + b"abc"
        data = struct.pack(">I", len(body))[1:] + b"\x00\x01" + struct.pack(">I", 1) + body
        settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        s = self.raw_connect()
        s.sendall(PREFACE + settings + headers + data)
        frames = self.read_frames(s, until=lambda f: f[0] == 1 and f[2] == 1 and f[1] & 0x1)
        s.close()
        # the daemon ended stream 1 with a HEADERS frame (trailers: an error status)
        self.assertIn((1, 1), [(t, sid) for t, flags, sid, _ in frames if flags & 0x1], frames)
        self.assertNotIn(0, [t for t, _, sid, _ in frames if sid == 1], "DATA for a broken request")
        self.assert_still_serves()

    def test_silent_connection_is_closed_after_the_handshake_timeout(self):
        s = self.raw_connect()
        t0 = time.monotonic()
        self.assert_closed_by_server(s, timeout=20)
        s.close()
        self.assertGreater(time.monotonic() - t0, 1)
        self.assertTrue(self.daemon.wait_log("sent no HTTP/2 frame in time"), self.daemon.log())
        self.assert_still_serves()

    # ---- methods and messages ----

    def test_unknown_method_is_unimplemented(self):
        with self.channel() as ch:
            for method in (AGENT + "NoSuchMethod", "/no.such.Service/Method",
                           "/mcp.agent.v1.AgentService", "/"):
                details = self.assert_code(grpc.StatusCode.UNIMPLEMENTED, self.raw_call, ch,
                                           method, b"")
                if method.count("/") == 2:
                    self.assertIn(method, details)
        self.assert_still_serves()

    def test_message_that_is_not_protobuf_is_invalid_argument(self):
        with self.channel() as ch:
            cases = (
                (AGENT + "GetServiceStatus", b"\x0a\xff\xff\xff\x0f", "mcp.agent.v1.ServiceRequest"),
                (AGENT + "GetServiceStatus", b"\xff" * 12, "mcp.agent.v1.ServiceRequest"),
                # field 1 (a string) sent as a varint: the wrong wire type
                (AGENT + "Deploy", b"\x08\x01", "mcp.agent.v1.DeployRequest"),
                # a truncated varint
                (AGENT + "Recover", b"\x08\x80", "mcp.agent.v1.RecoverRequest"),
                ("/grpc.health.v1.Health/Check", b"\x0a\x05ab", "grpc.health.v1.HealthCheckRequest"),
            )
            for method, payload, type_name in cases:
                details = self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, self.raw_call, ch,
                                           method, payload)
                self.assertIn(type_name, details)
        self.assert_still_serves()

    def test_service_toml_with_invalid_utf8_or_nul_is_invalid_argument(self):
        with self.channel() as ch:
            for toml in (b'name = "x\xff\xfe"\n', b'name = "ok"\x00\n[[components]]\n'):
                payload = b"\x0a" + bytes([len(toml)]) + toml
                self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, self.raw_call, ch,
                                 AGENT + "Deploy", payload)
        self.assert_still_serves()

    def test_unknown_fields_are_ignored(self):
        # proto3: unknown fields (here field 15, varint) are skipped
        with self.channel() as ch:
            reply = self.raw_call(ch, AGENT + "ListServices", b"\x78\x01")
        parsed = agent_pb2.ListServicesResponse.FromString(reply)
        self.assertEqual(len(parsed.services), N_SERVICES)
        self.assert_still_serves()

    # ---- concurrency and vanishing clients ----

    def test_100_concurrent_list_streams(self):
        baseline = self.daemon.open_fds()
        with self.channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            futures = [stub.ListServices.future(agent_pb2.ListServicesRequest(), timeout=60)
                       for _ in range(100)]
            counts = [len(f.result().services) for f in futures]
        self.assertEqual(counts, [N_SERVICES] * 100)
        # and over 10 connections at once, 10 streams each
        channels = [self.channel() for _ in range(10)]
        try:
            futures = [agent_pb2_grpc.AgentServiceStub(c).ListServices.future(
                agent_pb2.ListServicesRequest(), timeout=60) for c in channels for _ in range(10)]
            counts = [len(f.result().services) for f in futures]
        finally:
            for c in channels:
                c.close()
        self.assertEqual(counts, [N_SERVICES] * 100)
        self.wait_fds_back(baseline)
        self.assert_still_serves()

    def test_client_closes_its_channel_mid_call(self):
        baseline = self.daemon.open_fds()
        ch = self.channel()
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        fut = stub.Recover.future(agent_pb2.RecoverRequest(dry_run=True), timeout=30)
        time.sleep(0.4)
        self.assertFalse(fut.done())
        ch.close()  # RST_STREAM and the connection goes
        self.assertTrue(fut.cancelled() or fut.exception() is not None)
        time.sleep(SLOW_RECOVER_S + 0.5)  # the abandoned call's task finishes
        self.wait_fds_back(baseline)
        with self.channel() as ch2:
            rep = agent_pb2_grpc.AgentServiceStub(ch2).Recover(
                agent_pb2.RecoverRequest(dry_run=True), timeout=30)
            self.assertIn("slow recover done", list(rep.warnings))
        self.assert_still_serves()

    def test_client_process_killed_mid_call(self):
        baseline = self.daemon.open_fds()
        code = ("import grpc, time\n"
                "ch = grpc.insecure_channel('unix:%s')\n"
                "f = ch.unary_unary('%sRecover').future(b'\\x08\\x01', timeout=30)\n"
                "time.sleep(0.4)\n"
                "print('sent', flush=True)\n"
                "time.sleep(30)\n" % (self.daemon.socket, AGENT))
        proc = subprocess.Popen([td.PYTHON, "-c", code], stdout=subprocess.PIPE)
        try:
            self.assertEqual(proc.stdout.readline().strip(), b"sent")
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        time.sleep(SLOW_RECOVER_S + 0.5)
        self.wait_fds_back(baseline)
        self.assert_still_serves()

    def test_connection_churn_leaks_nothing(self):
        # a connection that sends the preface and vanishes, then 200 that connect and go
        s = self.raw_connect()
        s.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        s.close()
        baseline = self.daemon.open_fds()
        for _ in range(200):
            for _ in range(100):  # a burst may fill the listen backlog (128): EAGAIN, retry
                try:
                    c = self.raw_connect()
                    break
                except BlockingIOError:
                    time.sleep(0.01)
            else:
                self.fail("the daemon stopped accepting connections")
            c.close()
        self.wait_fds_back(baseline)
        self.assert_still_serves()

    def test_deadline_shorter_than_the_call(self):
        with self.channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            self.assert_code(grpc.StatusCode.DEADLINE_EXCEEDED, stub.Recover,
                             agent_pb2.RecoverRequest(dry_run=True), timeout=0.3)
        time.sleep(SLOW_RECOVER_S)
        self.assert_still_serves()

    def test_concurrent_slow_calls_do_not_block_fast_ones(self):
        with self.channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            slow = [stub.Recover.future(agent_pb2.RecoverRequest(dry_run=True), timeout=30)
                    for _ in range(5)]
            time.sleep(0.2)
            # answers while five slow calls are pending
            self.assertEqual(len(stub.ListServices(agent_pb2.ListServicesRequest(),
                                                   timeout=10).services), N_SERVICES)
            self.assertFalse(all(f.done() for f in slow))
            for f in slow:
                self.assertIn("slow recover done", list(f.result().warnings))
        self.assert_still_serves()


if __name__ == "__main__":
    unittest.main()
