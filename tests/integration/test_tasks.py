"""The task scheduler of the real agent (src/lua/task.c) end to end, through
`mcp-agent eval` on the fake runtime (no podman): sleeping, waiting with and
without timeouts, cancelling, errors with tracebacks, misuse of coroutines,
many tasks at once, tasks left running at exit, agent.task.all, the health
probes against real sockets, and SIGTERM/SIGINT.

Every run is bounded by a timeout (a hang fails the test) and checked for
sanitizer reports by AgentEnv. Time bounds are generous: these machines are
noisy, so they catch hangs and serialisation, not speed.
"""
import http.server
import os
import select
import signal
import socket
import threading
import time
import unittest

from agent_env import FIXTURES, AgentFailure, AgentTestCase, check_health

BOOT_FIXTURES = os.path.join(FIXTURES, "boot")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines_with(prefix, text):
    """The rest of every stdout line starting with prefix and a space or tab."""
    return [line[len(prefix) + 1:] for line in text.splitlines()
            if line.startswith(prefix + " ") or line.startswith(prefix + "\t")]


def one_line(prefix, text):
    found = lines_with(prefix, text)
    if len(found) != 1:
        raise AssertionError("expected one %r line in:\n%s" % (prefix, text))
    return found[0]


class TaskTestCase(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.env.write_config(runtime="fake")

    def lua(self, code, *args, timeout=20):
        """Runs `eval -e CODE ARGS…`; returns the Result."""
        return self.env.run("eval", "-e", code, *args, timeout=timeout)

    def lua_ok(self, code, *args, timeout=20):
        r = self.lua(code, *args, timeout=timeout)
        self.assertEqual(r.rc, 0, "stdout:\n%s\nstderr:\n%s" % (r.stdout, r.stderr))
        return r


class SleepAndWait(TaskTestCase):
    def test_concurrent_sleepers_wake_in_order_of_their_deadline(self):
        # Spawned in this order; they must wake by delay, not by spawn order.
        delays = ["0.6", "0.2", "0.4", "0", "0.1", "0.5"]
        r = self.env.run("eval", os.path.join(BOOT_FIXTURES, "sleep_order.lua"), *delays, timeout=20)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(one_line("order", r.stdout).split(), ["4", "5", "2", "3", "6", "1"])
        elapsed = float(one_line("elapsed", r.stdout))
        self.assertGreaterEqual(elapsed, 0.59)  # the longest sleep really slept
        # concurrent, not one after the other (the sum is 1.8 s)
        self.assertLess(elapsed, 1.75, "sleeps look serialised")

    def test_sleep_returns_true_and_rejects_bad_durations(self):
        r = self.lua_ok("""
            print("zero", agent.clock.sleep(0))
            print("small", agent.clock.sleep(0.001))
            for _, bad in ipairs({-1, 0/0}) do
                local ok, err = pcall(agent.clock.sleep, bad)
                print("bad", ok, err)
            end
            local ok, err = pcall(agent.clock.sleep, "soon")
            print("bad", ok, err)
        """)
        self.assertEqual(one_line("zero", r.stdout), "true")
        self.assertEqual(one_line("small", r.stdout), "true")
        bad = lines_with("bad", r.stdout)
        self.assertEqual(len(bad), 3, r.stdout)
        for line in bad:
            self.assertTrue(line.startswith("false\t"), line)
        self.assertMentions(bad[0], "seconds must be a number >= 0")
        self.assertMentions(bad[1], "seconds must be a number >= 0")
        self.assertMentions(bad[2], "number expected")

    def test_wait_timeout_returns_nil_timeout_and_the_task_keeps_running(self):
        r = self.lua_ok("""
            local h = agent.task.spawn(function() agent.clock.sleep(0.5); return "done", 42 end)
            local t0 = agent.clock.now()
            local a, b = agent.task.wait(h, 0.05)
            print("first", tostring(a), tostring(b), string.format("%.3f", agent.clock.now() - t0))
            print("status", agent.task.status(h))
            -- the method form and a second timed wait that the task beats
            print("second", h.wait(5))
            print("status", h:status())
            print("again", agent.task.wait(h, 0))
        """)
        first = one_line("first", r.stdout).split("\t")
        self.assertEqual(first[:2], ["nil", "timeout"])
        self.assertGreaterEqual(float(first[2]), 0.04)
        self.assertLess(float(first[2]), 0.45, "the timed wait waited for the task instead")
        self.assertEqual(lines_with("status", r.stdout), ["waiting", "done"])
        self.assertEqual(one_line("second", r.stdout), "true\tdone\t42")
        self.assertEqual(one_line("again", r.stdout), "true\tdone\t42")

    def test_a_task_cannot_wait_for_itself_and_wait_needs_a_handle(self):
        r = self.lua_ok("""
            local me
            me = agent.task.spawn(function()
                agent.clock.sleep(0.01)
                return pcall(agent.task.wait, me)
            end)
            print("self", agent.task.wait(me))
            print("nohandle", pcall(agent.task.wait, {}))
        """)
        self.assertMentions(one_line("self", r.stdout), "true\tfalse", "a task cannot wait for itself")
        self.assertMentions(one_line("nohandle", r.stdout), "false", "mcp.task expected")


class Cancel(TaskTestCase):
    def test_cancel_of_a_sleeping_task_frees_its_timer_and_waiting_gives_cancelled(self):
        # If the cancelled 600 s timer stayed armed the loop would not end:
        # the 20 s run timeout catches that as a hang. Cancelling is
        # cooperative: the sleep returns nil, "cancelled" and the task winds down.
        r = self.lua_ok("""
            local reached = false
            local h = agent.task.spawn(function()
                local ok, why = agent.clock.sleep(600)
                print("slept", ok, why)
                reached = ok == true
            end)
            agent.clock.sleep(0.05)
            print("status", agent.task.status(h))
            print("cancel", agent.task.cancel(h))
            print("status", agent.task.status(h))
            print("wait", agent.task.wait(h))
            print("timed", agent.task.wait(h, 1))
            print("cancel2", h.cancel())
            print("reached", reached)
        """, timeout=20)
        self.assertEqual(lines_with("status", r.stdout), ["waiting", "cancelled"])
        self.assertEqual(one_line("cancel", r.stdout), "true")
        self.assertEqual(one_line("wait", r.stdout), "nil\tcancelled")
        self.assertEqual(one_line("timed", r.stdout), "nil\tcancelled")
        self.assertEqual(one_line("cancel2", r.stdout), "false")  # already finished
        self.assertEqual(one_line("slept", r.stdout), "nil\tcancelled")
        self.assertEqual(one_line("reached", r.stdout), "false")
        self.assertLess(r.elapsed, 15)

    def test_a_task_waiting_on_a_cancelled_task_wakes_with_cancelled(self):
        r = self.lua_ok("""
            local sleeper = agent.task.spawn(function() agent.clock.sleep(600) end)
            local waiter = agent.task.spawn(function() return agent.task.wait(sleeper) end)
            local timed = agent.task.spawn(function() return agent.task.wait(sleeper, 300) end)
            agent.clock.sleep(0.05)
            agent.task.cancel(sleeper)
            print("waiter", agent.task.wait(waiter, 5))
            print("timed", agent.task.wait(timed, 5))
        """)
        self.assertEqual(one_line("waiter", r.stdout), "true\tnil\tcancelled")
        self.assertEqual(one_line("timed", r.stdout), "true\tnil\tcancelled")

    def test_cancelling_a_task_that_waits_with_a_timeout_frees_that_timer(self):
        r = self.lua_ok("""
            local target = agent.task.spawn(function() agent.clock.sleep(0.2); return "t" end)
            local waiter = agent.task.spawn(function() return agent.task.wait(target, 600) end)
            agent.clock.sleep(0.02)
            print("cancel", agent.task.cancel(waiter))
            print("target", agent.task.wait(target, 5))
            print("waiter", agent.task.wait(waiter))
        """)
        self.assertEqual(one_line("cancel", r.stdout), "true")
        self.assertEqual(one_line("target", r.stdout), "true\tt")
        self.assertEqual(one_line("waiter", r.stdout), "nil\tcancelled")

    def test_a_task_cannot_cancel_itself(self):
        r = self.lua_ok("""
            local me
            me = agent.task.spawn(function()
                agent.clock.sleep(0.01)
                return pcall(agent.task.cancel, me)
            end)
            print("self", agent.task.wait(me))
        """)
        self.assertMentions(one_line("self", r.stdout), "true\tfalse", "cannot cancel itself")

    def test_tasks_left_running_when_the_script_returns_are_cancelled(self):
        r = self.lua_ok("""
            local s = agent.task.spawn(function() agent.clock.sleep(600) end)
            agent.task.spawn(function() agent.task.wait(s, 500) end)
            agent.task.spawn(function() agent.task.wait(s) end)
            agent.task.spawn(function() while true do agent.clock.sleep(0.01) end end)
            agent.clock.sleep(0.05)
            print("bye")
        """, timeout=20)
        self.assertEqual(r.stdout.strip(), "bye")
        self.assertLess(r.elapsed, 15)


class Errors(TaskTestCase):
    def test_a_task_that_raises_gives_false_and_a_message_with_a_traceback(self):
        r = self.lua_ok("""
            local function deep_inner_function() error("boom-from-task") end
            local h = agent.task.spawn(function() agent.clock.sleep(0.01); deep_inner_function() end)
            local ok, msg = agent.task.wait(h)
            print("ok", ok)
            print("status", agent.task.status(h))
            io.stdout:write("msg ", msg:gsub("\\n", " | "), "\\n")
            local t = agent.task.spawn(function() error({code = 7}) end)
            local ok2, msg2 = agent.task.wait(t)
            print("table", ok2, type(msg2))
        """)
        self.assertEqual(one_line("ok", r.stdout), "false")
        self.assertEqual(one_line("status", r.stdout), "failed")
        msg = one_line("msg", r.stdout)
        self.assertMentions(msg, "boom-from-task", "stack traceback", "deep_inner_function")
        self.assertEqual(one_line("table", r.stdout), "false\tstring")

    def test_the_failure_of_one_task_does_not_disturb_the_others(self):
        r = self.lua_ok("""
            local bad = agent.task.spawn(function() error("bad") end)
            local good = agent.task.spawn(function() agent.clock.sleep(0.1); return "fine" end)
            print("good", agent.task.wait(good))
            print("bad", (agent.task.wait(bad)))
        """)
        self.assertEqual(one_line("good", r.stdout), "true\tfine")
        self.assertEqual(one_line("bad", r.stdout), "false")

    def test_a_runaway_yield_at_task_level_is_an_error_not_a_hang(self):
        r = self.lua_ok("""
            local h = agent.task.spawn(function()
                while true do coroutine.yield("spin") end
            end)
            local ok, msg = agent.task.wait(h, 10)
            print("ok", tostring(ok))
            io.stdout:write("msg ", tostring(msg):gsub("\\n", " | "), "\\n")
        """, timeout=20)
        self.assertEqual(one_line("ok", r.stdout), "false")
        self.assertMentions(one_line("msg", r.stdout), "coroutine.yield")

    def test_a_yield_in_the_main_script_is_a_clear_error(self):
        r = self.lua("coroutine.yield()", timeout=20)
        self.assertNotEqual(r.rc, 0)
        self.assertMentions(r.stderr, "coroutine.yield")

    def test_waiting_outside_a_task_is_a_clear_error(self):
        for code in ("coroutine.wrap(function() agent.clock.sleep(0.01) end)()",
                     "local h = agent.task.spawn(function() agent.clock.sleep(1) end)\n"
                     "coroutine.wrap(function() agent.task.wait(h) end)()",
                     "coroutine.wrap(function() agent.probe.tcp('127.0.0.1', 1, 1) end)()"):
            with self.subTest(code=code):
                r = self.lua(code, timeout=20)
                self.assertEqual(r.rc, 1, r.stderr)
                self.assertMentions(r.stderr, "must be called from an agent task")

    def test_a_coroutine_inside_a_task_gets_the_error_and_the_task_goes_on(self):
        r = self.lua_ok("""
            local h = agent.task.spawn(function()
                local co = coroutine.create(function() agent.clock.sleep(0.01) end)
                local ok, err = coroutine.resume(co)
                agent.clock.sleep(0.01)  -- the task itself can still wait
                return ok, err
            end)
            local ok, cok, cerr = agent.task.wait(h, 5)
            print("res", ok, cok)
            print("err", cerr)
        """)
        self.assertEqual(one_line("res", r.stdout), "true\tfalse")
        self.assertMentions(one_line("err", r.stdout), "must be called from an agent task")


class Many(TaskTestCase):
    def test_a_thousand_concurrent_sleepers_finish_fast(self):
        r = self.lua_ok("""
            local hs = {}
            local t0 = agent.clock.now()
            for i = 1, 1000 do
                hs[i] = agent.task.spawn(function(n)
                    agent.clock.sleep(0.2 + (n % 10) * 0.01)
                    return n * 2
                end, i)
            end
            local sum, ok_count = 0, 0
            for i, res in ipairs(agent.task.all(hs, 60)) do
                if res[1] == true and res[2] == i * 2 then ok_count = ok_count + 1 end
                sum = sum + (res[2] or 0)
            end
            print("ok", ok_count)
            print("sum", sum)
            print(string.format("elapsed %.3f", agent.clock.now() - t0))
        """, timeout=60)
        self.assertEqual(one_line("ok", r.stdout), "1000")
        self.assertEqual(one_line("sum", r.stdout), str(1000 * 1001))
        elapsed = float(one_line("elapsed", r.stdout))
        self.assertGreaterEqual(elapsed, 0.29)
        # 1000 x 0.2 s one after the other would be 200 s
        self.assertLess(elapsed, 20)

    def test_task_all_reports_each_outcome_within_one_deadline(self):
        r = self.lua_ok("""
            local hs = {
                agent.task.spawn(function() agent.clock.sleep(0.05); return "a", "b" end),
                agent.task.spawn(function() agent.clock.sleep(0.05); error("nope") end),
                agent.task.spawn(function() agent.clock.sleep(600) end),
                agent.task.spawn(function() agent.clock.sleep(600) end),
            }
            agent.task.cancel(hs[4])
            local t0 = agent.clock.now()
            local res = agent.task.all(hs, 0.3)
            print(string.format("elapsed %.3f", agent.clock.now() - t0))
            print("n", #res)
            for i, r in ipairs(res) do
                print("r" .. i, tostring(r[1]), tostring(r[2]):match("^[^\\n]*"), tostring(r[3]), r.n)
            end
            print("empty", #agent.task.all({}))
            print("slow", agent.task.status(hs[3]))
        """)
        self.assertEqual(one_line("n", r.stdout), "4")
        self.assertEqual(one_line("r1", r.stdout), "true\ta\tb\t3")
        r2 = one_line("r2", r.stdout).split("\t")
        self.assertEqual(r2[0], "false")
        self.assertMentions(r2[1], "nope")
        self.assertEqual(one_line("r3", r.stdout), "nil\ttimeout\tnil\t2")
        self.assertEqual(one_line("r4", r.stdout), "nil\tcancelled\tnil\t2")
        self.assertEqual(one_line("empty", r.stdout), "0")
        self.assertEqual(one_line("slow", r.stdout), "waiting")  # a timeout does not cancel
        elapsed = float(one_line("elapsed", r.stdout))
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 5, "the deadline is shared, not per handle")


class SilentHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok\n"
            self.send_response(200)
        else:
            body = b"missing\n"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Probes(TaskTestCase):
    def setUp(self):
        super().setUp()
        # A bare TCP listener that never reads (the kernel completes the handshake).
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.addCleanup(self.tcp.close)
        self.tcp_port = self.tcp.getsockname()[1]
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SilentHandler)
        self.httpd.daemon_threads = True
        thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        self.addCleanup(self.httpd.server_close)
        self.addCleanup(self.httpd.shutdown)
        self.http_port = self.httpd.server_address[1]
        self.refused_port = free_port()  # bound then closed: nothing listens there

    def probe(self, code):
        return self.lua_ok(code, str(self.tcp_port), str(self.http_port), str(self.refused_port),
                           timeout=30)

    def test_tcp_probe_up_and_refused(self):
        r = self.probe("""
            local tcp, _, refused = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
            local ok, lat = agent.probe.tcp("127.0.0.1", tcp, 2)
            print("up", tostring(ok), type(lat), lat >= 0 and lat < 2)
            local a, reason, lat2 = agent.probe.tcp("127.0.0.1", refused, 2)
            print("down", tostring(a), reason, type(lat2))
        """)
        self.assertEqual(one_line("up", r.stdout), "true\tnumber\ttrue")
        self.assertEqual(one_line("down", r.stdout), "nil\trefused\tnumber")

    def test_http_probe_ok_status_refused_and_silent_peer(self):
        r = self.probe("""
            local tcp, http, refused = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
            print("ok", agent.probe.http("127.0.0.1", http, "/healthz", 5) == true)
            print("404", (select(2, agent.probe.http("127.0.0.1", http, "/nope", 5))))
            print("refused", (select(2, agent.probe.http("127.0.0.1", refused, "/", 5))))
            local t0 = agent.clock.now()
            local a, reason = agent.probe.http("127.0.0.1", tcp, "/", 0.5)
            print("silent", tostring(a), reason, string.format("%.3f", agent.clock.now() - t0))
        """)
        self.assertEqual(one_line("ok", r.stdout), "true")
        self.assertEqual(one_line("404", r.stdout), "http status 404")
        self.assertEqual(one_line("refused", r.stdout), "refused")
        silent = one_line("silent", r.stdout).split("\t")
        self.assertEqual(silent[:2], ["nil", "timeout"])
        self.assertGreaterEqual(float(silent[2]), 0.4)
        self.assertLess(float(silent[2]), 5)

    def test_probes_suspend_only_their_task(self):
        # A slow probe (silent peer, 1 s) in one task; a ticker keeps ticking meanwhile.
        r = self.probe("""
            local tcp = tonumber(arg[1])
            local ticks = 0
            local ticker = agent.task.spawn(function()
                while true do agent.clock.sleep(0.05); ticks = ticks + 1 end
            end)
            local p = agent.task.spawn(function() return agent.probe.http("127.0.0.1", tcp, "/", 1) end)
            local ok, a, reason = agent.task.wait(p, 10)
            agent.task.cancel(ticker)
            print("probe", ok, tostring(a), reason)
            print("ticks", ticks)
        """)
        self.assertEqual(one_line("probe", r.stdout), "true\tnil\ttimeout")
        self.assertGreaterEqual(int(one_line("ticks", r.stdout)), 5)

    def test_probe_bad_arguments_are_errors(self):
        r = self.probe("""
            print("t0", pcall(agent.probe.tcp, "127.0.0.1", 80, 0))
            print("path", pcall(agent.probe.http, "127.0.0.1", 80, "nope", 1))
            print("port", pcall(agent.probe.tcp, "127.0.0.1", 70000, 1))
        """)
        self.assertMentions(one_line("t0", r.stdout), "false", "timeout must be > 0")
        self.assertMentions(one_line("path", r.stdout), "false", 'bad http path "nope"')
        self.assertMentions(one_line("port", r.stdout), "false", "port must be 1..65535")


class Signals(TaskTestCase):
    def start_and_wait_ready(self, code):
        """Starts `eval -e CODE` (which prints "ready" once its tasks wait);
        returns the process once that line came."""
        proc = self.env.start("eval", "-e", code)
        self.addCleanup(self.reap, proc)
        deadline = time.monotonic() + 20
        seen = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
                seen += line
                if line.strip() == "ready":
                    return proc
        proc.kill()
        out, err = proc.communicate()
        self.fail("the agent never said ready (rc %s):\n%s\n%s" % (proc.returncode, seen + out, err))

    @staticmethod
    def reap(proc):
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    def signal_exits_promptly(self, signum, code):
        proc = self.start_and_wait_ready(code)
        time.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(signum)
        try:
            out, err = proc.communicate(timeout=10)
        except Exception:
            proc.kill()
            out, err = proc.communicate()
            raise AgentFailure("no exit within 10 s of signal %d:\n%s" % (signum, err))
        after = time.monotonic() - t0
        check_health(proc.mcp_argv, proc.returncode, err)  # sanitizers, crash signals
        self.assertLess(after, 2.0, "exited %.2f s after the signal" % after)
        self.assertGreater(proc.returncode, 0, "a clean non-zero exit code, not a death by signal")
        self.assertMentions(err, "cancelled")
        return out, err

    def test_sigterm_during_a_long_sleep_exits_within_2s(self):
        out, err = self.signal_exits_promptly(
            signal.SIGTERM, "io.stdout:write('ready\\n'); io.stdout:flush(); agent.clock.sleep(600)")
        self.assertMentions(err, "SIGTERM")
        self.assertEqual(out, "")  # "ready" was read already; nothing after it

    def test_sigint_cancels_every_task(self):
        out, err = self.signal_exits_promptly(signal.SIGINT, """
            local hs = {}
            for i = 1, 200 do hs[i] = agent.task.spawn(function() agent.clock.sleep(600) end) end
            local w = agent.task.spawn(function() return agent.task.wait(hs[1], 500) end)
            io.stdout:write("ready\\n"); io.stdout:flush()
            -- cancelling is cooperative: every wait now answers "cancelled"
            local cancelled = 0
            for _, r in ipairs(agent.task.all(hs)) do
                if r[1] == nil and r[2] == "cancelled" then cancelled = cancelled + 1 end
            end
            print("cancelled", cancelled)
            print("late", agent.clock.sleep(1))
        """)
        self.assertMentions(err, "SIGINT")
        self.assertEqual(one_line("cancelled", out), "200")
        self.assertEqual(one_line("late", out), "nil\tcancelled")

    def test_sigterm_during_a_probe_exits_within_2s(self):
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        self.addCleanup(silent.close)
        port = silent.getsockname()[1]
        self.signal_exits_promptly(signal.SIGTERM, """
            local p = agent.task.spawn(function() return agent.probe.http("127.0.0.1", %d, "/", 300) end)
            io.stdout:write("ready\\n"); io.stdout:flush()
            agent.task.wait(p)
        """ % port)


if __name__ == "__main__":
    unittest.main()
