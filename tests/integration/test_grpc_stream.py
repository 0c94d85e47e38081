"""Server streaming end to end: a stock gRPC client (python grpcio) against
`mcp-agent eval` serving a small Lua handler through core.api.serve, which
streams Event messages for /mcp.agent.v1.AgentService/WatchEvents with the
call object (call:send, call:finish, call:fail, call:wait_closed, the
__close guard). Covers a client that cancels, a slow reader (send suspends
its task, and only it), the client's deadline, and SIGTERM with a stream
open (shutdown ends it at once with UNAVAILABLE). core.api.codes is checked
against grpcio's own status codes.

Every agent run is checked for sanitizer reports by AgentEnv (the ASan
build runs the same test) and bounded by timeouts.
"""
import os
import queue
import signal
import threading
import time
import unittest

import grpc

from agent_env import AgentEnv
from grpc_env import gen_stubs

WATCH = "/mcp.agent.v1.AgentService/WatchEvents"

# The handler's behaviour is chosen by the request's service field, "MODE:N":
#   stream:N  N events, then wait until the call closes; report what it saw
#   finish:N  N events, then call:finish()
#   fail:N    N events, then call:fail(NOT_FOUND, "gone")
#   forget:N  N events, then return: the __close guard ends the call
#   big:N     N events of 64 KiB each, timing every send, then finish
SCRIPT = r"""
local core = require("mcp.core")
local codes = core.api.codes
local function say(...)
    local t = table.pack(...)
    for i = 1, t.n do t[i] = tostring(t[i]) end
    io.stdout:write(table.concat(t, " "), "\n")
    io.stdout:flush()
end

local function event(i, message)
    return { time_unix_ms = 1000 + i, service = "svc", component = "c" .. i, kind = "started",
             message = message or ("event " .. i), exit_code = i }
end

local handlers = {}

function handlers.stream(call, n)
    for i = 1, n do
        local ok, why = call:send(event(i))
        if not ok then say("send-failed", i, why) return end
    end
    say("sent", n, call:closed())
    local t0 = agent.clock.now()
    while not call:wait_closed(0.1) do end
    say("closed", call:closed(), select(2, call:send(event(0))),
        string.format("%.3f", agent.clock.now() - t0))
end

function handlers.finish(call, n)
    for i = 1, n do assert(call:send(event(i))) end
    say("finished", call:finish())
end

function handlers.fail(call, n)
    for i = 1, n do assert(call:send(event(i))) end
    say("failed", call:fail(codes.NOT_FOUND, "gone"))
end

function handlers.forget(call, n)
    for i = 1, n do assert(call:send(event(i))) end
    say("forgot")
end

function handlers.big(call, n)
    local blob = string.rep("x", 64 * 1024)
    local longest, at = 0, 0
    for i = 1, n do
        local t0 = agent.clock.now()
        local ok, why = call:send(event(i, blob))
        if not ok then say("send-failed", i, why) return end
        local took = agent.clock.now() - t0
        if took > longest then longest, at = took, i end
    end
    say("big-done", n, string.format("%.3f", longest), at, call:finish())
end

local server, err = core.api.serve {
    socket = arg[1],
    handler = function(call, method, request)
        local guard <close> = call -- luacheck: ignore 211
        if method ~= "/mcp.agent.v1.AgentService/WatchEvents" then
            call:fail(codes.UNIMPLEMENTED, "only WatchEvents here")
            return
        end
        local mode, n = request.service:match("^(%a+):(%d+)$")
        handlers[mode](call, tonumber(n))
    end,
}
assert(server, err)
say("READY")
local sig = core.signals.wait()
local t0 = agent.clock.now()
server:shutdown(5)
say("stopped", sig, string.format("%.3f", agent.clock.now() - t0))
"""


class StreamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stub_env = AgentEnv("grpc-stream-stubs")
        cls.pb, cls.pb_grpc, _, _ = gen_stubs(cls.stub_env.dir)

    @classmethod
    def tearDownClass(cls):
        cls.stub_env.cleanup()

    def setUp(self):
        self.env = AgentEnv(self.id().split(".")[-1])
        self.env.write_config(runtime="fake")
        script = self.env.write("stream.lua", SCRIPT)
        self.sock = self.env.path("s.sock")
        self.proc = self.env.start("eval", script, self.sock)
        self.lines = queue.Queue()
        self.out = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.assertEqual(self.next_line(15), "READY")
        self.channel = grpc.insecure_channel("unix:" + self.sock)
        self.stub = self.pb_grpc.AgentServiceStub(self.channel)
        self.finished = False

    def tearDown(self):
        self.channel.close()
        if not self.finished:
            self.stop()
        self.env.cleanup()

    def _read_stdout(self):
        with self.proc.stdout as f:
            for line in f:
                self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout=10):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no line from the script within %ss; so far: %r"
                                 % (timeout, self.out)) from None
        self.out.append(line)
        return line

    def expect(self, prefix, timeout=10):
        """The next line, which must start with prefix; returns its words after it."""
        line = self.next_line(timeout)
        self.assertIsNotNone(line, "the script ended; output: %r" % self.out)
        self.assertTrue(line.startswith(prefix + " ") or line == prefix,
                        "want %r, got %r (output %r)" % (prefix, line, self.out))
        return line.split()[1:]

    def stop(self):
        """SIGTERM; the script shuts the server down and exits 0. Returns its 'stopped' words."""
        self.finished = True
        self.proc.send_signal(signal.SIGTERM)
        words = self.expect("stopped", timeout=15)
        # stdout was consumed by the reader thread: finish() collects stderr and the exit code
        self.proc.stdout = None
        r = self.env.finish(self.proc, timeout=15)
        self.assertEqual(r.rc, 0, r.stderr)
        return words

    def watch(self, spec, **kw):
        return self.stub.WatchEvents(self.pb.WatchEventsRequest(service=spec), **kw)

    def check_event(self, ev, i):
        self.assertEqual((ev.time_unix_ms, ev.service, ev.component, ev.kind, ev.exit_code),
                         (1000 + i, "svc", "c%d" % i, "started", i))

    # ---- tests -------------------------------------------------------------------------

    def test_events_stream_until_the_client_cancels(self):
        it = self.watch("stream:5", timeout=20)
        for i in range(1, 6):
            ev = next(it)
            self.check_event(ev, i)
            self.assertEqual(ev.message, "event %d" % i)
        self.assertEqual(self.expect("sent"), ["5", "false"])
        it.cancel()
        # the handler, parked in wait_closed, learns it at once; later sends say "closed"
        closed, send_reason, waited = self.expect("closed", timeout=5)
        self.assertEqual((closed, send_reason), ("true", "closed"))
        self.assertLess(float(waited), 3.0)
        with self.assertRaises(grpc.RpcError) as cm:
            next(it)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.CANCELLED)
        # the server still serves
        self.assertEqual(len(list(self.watch("finish:2", timeout=10))), 2)
        self.assertEqual(self.expect("finished"), ["true"])

    def test_how_a_stream_ends(self):
        events = list(self.watch("finish:3", timeout=10))
        self.assertEqual([e.time_unix_ms for e in events], [1001, 1002, 1003])
        self.assertEqual(self.expect("finished"), ["true"])

        it = self.watch("fail:2", timeout=10)
        got = []
        with self.assertRaises(grpc.RpcError) as cm:
            for ev in it:
                got.append(ev.time_unix_ms)
        self.assertEqual(got, [1001, 1002])  # the messages, then the status in trailers
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(cm.exception.details(), "gone")
        self.assertEqual(self.expect("failed"), ["true"])

        it = self.watch("forget:1", timeout=10)
        self.check_event(next(it), 1)
        with self.assertRaises(grpc.RpcError) as cm:
            next(it)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("without an answer", cm.exception.details())
        self.assertEqual(self.expect("forgot"), [])

        # no message at all, then finish: an empty stream with status OK
        self.assertEqual(list(self.watch("finish:0", timeout=10)), [])
        self.assertEqual(self.expect("finished"), ["true"])

    def test_a_slow_reader_suspends_only_the_sending_task(self):
        n = 256  # 16 MiB in all: far more than flow control and the send bound hold
        start = time.monotonic()
        it = self.watch("big:%d" % n, timeout=60)
        self.check_event(next(it), 1)
        pause = 2.0
        # while this reader sleeps, the sender is parked; other calls still run
        t0 = time.monotonic()
        self.assertEqual(len(list(self.watch("finish:1", timeout=10))), 1)
        self.assertLess(time.monotonic() - t0, 1.5)
        self.assertEqual(self.expect("finished"), ["true"])
        time.sleep(max(0.0, pause - (time.monotonic() - start)))
        got = [1001]
        for ev in it:
            got.append(ev.time_unix_ms)
            self.assertEqual(len(ev.message), 64 * 1024)
        self.assertEqual(got, [1000 + i for i in range(1, n + 1)])
        count, longest, at, finished = self.expect("big-done", timeout=30)
        self.assertEqual((count, finished), (str(n), "true"))
        # one send waited for most of the pause: the task was parked, not buffering 16 MiB
        self.assertGreater(float(longest), pause / 2, self.out)
        self.assertLess(int(at), n)

    def test_the_deadline_closes_the_stream(self):
        it = self.watch("stream:2", timeout=1.0)
        self.check_event(next(it), 1)
        self.check_event(next(it), 2)
        self.assertEqual(self.expect("sent"), ["2", "false"])
        with self.assertRaises(grpc.RpcError) as cm:
            next(it)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        closed, send_reason, waited = self.expect("closed", timeout=5)
        self.assertEqual((closed, send_reason), ("true", "closed"))
        self.assertLess(float(waited), 3.0)

    def test_shutdown_ends_an_open_stream_at_once(self):
        it = self.watch("stream:3", timeout=30)
        for i in range(1, 4):
            self.check_event(next(it), i)
        self.assertEqual(self.expect("sent"), ["3", "false"])
        self.finished = True
        self.proc.send_signal(signal.SIGTERM)
        with self.assertRaises(grpc.RpcError) as cm:
            next(it)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(cm.exception.details(), "the server is shutting down")
        closed, send_reason, _ = self.expect("closed", timeout=5)
        self.assertEqual((closed, send_reason), ("true", "closed"))
        sig, took = self.expect("stopped", timeout=10)
        self.assertEqual(sig, "SIGTERM")
        self.assertLess(float(took), 2.0)  # not the 5 s grace: the stream was ended
        self.proc.stdout = None
        r = self.env.finish(self.proc, timeout=15)
        self.assertEqual(r.rc, 0, r.stderr)

    def test_codes_table_matches_grpc(self):
        # a unary method on this server answers UNIMPLEMENTED by core.api.codes
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.NodeStatus(self.pb.NodeStatusRequest(), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        r = self.env.run("eval", "-e", """
            local codes = require("mcp.core").api.codes
            local names = {}
            for name, code in pairs(codes) do names[#names + 1] = name .. "=" .. code end
            table.sort(names)
            print(table.concat(names, " "))
        """, timeout=20)
        self.assertEqual(r.rc, 0, r.stderr)
        got = dict(pair.split("=") for pair in r.stdout.split())
        want = {c.name: str(c.value[0]) for c in grpc.StatusCode}
        self.assertEqual(got, want)


if __name__ == "__main__":
    unittest.main()
