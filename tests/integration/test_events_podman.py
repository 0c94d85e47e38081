"""core.podman.events() end to end (SPEC §10 inputs).

On real podman, in an isolated store (its own --root, --runroot and
--tmpdir, so no other test's events show up): a script run by
`mcp-agent eval` opens the stream, runs a labelled container, and waits; the
test kills the container with podman; the script must see `died` with exit
code 137 (the time from the kill is printed), and after close() no
`podman events` process may be left. On the scripted fake podman: the
recorded event lines come through the binding as tables, and a stream child
that dies ends the stream with its status and stderr.
"""
import os
import queue
import shutil
import threading
import time
import unittest

from agent_env import AgentEnv, FIXTURES, check_health, pgrep, toml_str
from podman_env import PodmanEnv, podman_missing_reason

READ_TIMEOUT = 60  # seconds for any one line from the agent

# arg[1] container name, arg[2] image, arg[3] a file the test creates when
# it has looked at the processes after close().
SCRIPT = r"""
local rt = agent.runtime
local name, image, go = arg[1], arg[2], arg[3]
local function say(...)
    io.stdout:write(table.concat({ ... }, " "), "\n")
    io.stdout:flush()
end
local function find(s, status)
    while true do
        local ev, why, detail = s:next(30)
        if not ev then error("no " .. status .. " event: " .. tostring(why) .. " " .. tostring(detail)) end
        if ev.name == name and ev.status == status then return ev end
    end
end
local s = assert(rt.events())
assert(rt.run{ name = name, image = image, cmd = { "sleep", "300" }, restart = "always",
               labels = { ["mcp.spec-hash"] = "it-1", ["mcp.test"] = "events" } })
local started = find(s, "start")
say("STARTED", started.id, started.labels["mcp.spec-hash"], started.labels["mcp.test"])
local died = find(s, "died")
say("DIED", tostring(died.exit_code), string.format("%.6f", died.time),
    string.format("%.6f", agent.clock.wallclock()), died.labels["mcp.spec-hash"])
local rec = assert(rt.inspect(name))
say("INSPECT", rec.state, tostring(rec.exit_code), tostring(rec.oom), rec.restart,
    rec.labels["mcp.spec-hash"], rec.finished_at ~= "" and "finished" or "unfinished")
local listed
for _, c in ipairs(assert(rt.list())) do if c.name == name then listed = c end end
say("LIST", listed.labels["mcp.test"], tostring(listed.exit_code), tostring(listed.oom),
    listed.finished_at ~= "" and "finished" or "unfinished")
s:close()
say("CLOSED", select(2, s:next(1)))
for _ = 1, 300 do
    if io.open(go) then break end
    agent.clock.sleep(0.1)
end
assert(rt.remove(name))
"""


class AgentLines:
    """Reads the agent's stdout line by line (a thread), with a deadline per line."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = queue.Queue()
        self.seen = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, word, timeout=READ_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no %s line within %ss; saw %r" % (word, timeout, self.seen)) from None
            if line is None:
                self.proc.wait(10)
                raise AssertionError("agent exited (%s) before %s; saw %r; stderr:\n%s"
                                     % (self.proc.returncode, word, self.seen, self.proc.stderr.read()))
            self.seen.append(line)
            if line.split(" ", 1)[0] == word:
                return line.split(" ")[1:]

    def finish(self, timeout=READ_TIMEOUT):
        """Waits for the agent; returns (rc, stderr) after the health checks."""
        rc = self.proc.wait(timeout)
        self.thread.join(10)
        err = self.proc.stderr.read()
        check_health(self.proc.mcp_argv, rc, err)
        return rc, err


def events_processes(marker):
    """PIDs of `podman events` children whose argv carries marker (the store's dir)."""
    return [p for p in pgrep(marker) if _is_events(p)]


def _is_events(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"events" in argv and b"type=container" in argv


@unittest.skipIf(podman_missing_reason(), podman_missing_reason() or "")
class EventsOnPodman(unittest.TestCase):
    def setUp(self):
        self.pod = PodmanEnv(prefix="mcp-ev-")
        self.addCleanup(self.pod.cleanup)
        self.agent = AgentEnv(self.id())
        self.addCleanup(self.agent.cleanup)
        self.agent.write("mcp-agent.toml", "\n".join([
            "[agent]",
            'container_runtime = "podman"',
            "podman_args = [%s]" % ", ".join(toml_str(a) for a in self.pod.podman_args),
            'podman_timeout = "60s"',
            "[database]",
            "path = %s" % toml_str(self.agent.db),
            "",
        ]))
        self.script = self.agent.write("events.lua", SCRIPT)
        self.go = self.agent.path("go")

    def test_died_137_arrives_and_close_ends_the_child(self):
        name = "mcp-ev-kill"
        self.pod.track(name)
        env = {"CONTAINERS_CONF": self.pod.env["CONTAINERS_CONF"], "TMPDIR": self.pod.env["TMPDIR"]}
        proc = self.agent.start("eval", self.script, name, self.pod.image, self.go, env=env)
        try:
            lines = AgentLines(proc)
            started = lines.expect("STARTED")
            self.assertEqual(len(started[0]), 64, started)
            self.assertEqual(started[1:], ["it-1", "events"])
            # the stream child runs, in this store only
            self.assertEqual(len(events_processes(self.pod.dir)), 1)
            # podman itself never restarts what the agent creates
            self.assertEqual(self.pod.inspect(name)["HostConfig"]["RestartPolicy"]["Name"], "no")

            t_kill = time.time()
            self.pod.podman("kill", name)
            t_killed = time.time()
            died = lines.expect("DIED")
            self.assertEqual(died[0], "137")
            event_time, seen_at = float(died[1]), float(died[2])
            self.assertEqual(died[3], "it-1")
            self.assertGreaterEqual(event_time, t_kill - 1.0)  # podman's own timestamp
            print("\ndied event: podman stamped it %.3f s after the kill began; the script had it "
                  "%.3f s after the kill began (podman kill itself took %.3f s)"
                  % (event_time - t_kill, seen_at - t_kill, t_killed - t_kill))

            # the died line is read from podman's events file at once, maybe
            # before podman's cleanup turned "stopped" into "exited"
            inspect = lines.expect("INSPECT")
            self.assertIn(inspect[0], ("stopped", "exited"), inspect)
            self.assertEqual(inspect[1:], ["137", "false", "no", "it-1", "finished"])
            self.assertEqual(lines.expect("LIST"), ["events", "137", "false", "finished"])
            self.assertEqual(" ".join(lines.expect("CLOSED")), "closed the stream was closed")
            deadline = time.monotonic() + 5
            while events_processes(self.pod.dir) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(events_processes(self.pod.dir), [], "podman events outlived close()")
            with open(self.go, "w"):
                pass
            rc, err = lines.finish()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()
        self.assertEqual(rc, 0, err)
        self.assertIsNone(self.pod.container(name))


class EventsOnFakePodman(unittest.TestCase):
    """The binding over the scripted podman: parsing, the end of the child."""

    def setUp(self):
        self.agent = AgentEnv(self.id())
        self.addCleanup(self.agent.cleanup)
        self.agent.fake_podman_config()
        shutil.copyfile(os.path.join(FIXTURES, "podman", "events.jsonl"),
                        os.path.join(self.agent.podman_state, "events.jsonl"))
        with open(os.path.join(self.agent.podman_state, "events_end.json"), "w") as f:
            f.write('{"status": 125, "stderr": "Error: events file gone\\n"}')

    def test_recorded_lines_then_closed_with_status_and_stderr(self):
        code = r"""
local s = assert(agent.runtime.events())
local out = {}
while true do
    local ev, why, detail = s:next(10)
    if not ev then out[#out + 1] = why .. ": " .. tostring(detail); break end
    local keys = {}
    for k, v in pairs(ev.labels) do keys[#keys + 1] = k .. "=" .. v end
    table.sort(keys)
    out[#out + 1] = string.format("%s %s %s %s %s %s", ev.status, ev.name, tostring(ev.exit_code),
        math.type(ev.time) or "?", ev.image, table.concat(keys, ","))
end
print(table.concat(out, "\n"))
print(s:next(0))
s:close()
"""
        res = self.agent.run("eval", "-e", code)
        self.assertEqual(res.rc, 0, res.stderr)
        lines = res.stdout.splitlines()
        self.assertEqual(len(lines), 14, res.stdout)
        self.assertEqual(lines[0], "create evcap nil float localhost/mcp-test:1 "
                                   "mcp.service=web,mcp.spec-hash=abc123")
        self.assertEqual(lines[4], "died evcap 137 float localhost/mcp-test:1 "
                                   "mcp.service=web,mcp.spec-hash=abc123")
        self.assertEqual(lines[10], "died evcap2 3 float localhost/mcp-test:1 a=b")
        self.assertEqual(lines[12], "closed: podman events exited with status 125: Error: events file gone")
        self.assertEqual(lines[13], "nil\tclosed\tpodman events exited with status 125: Error: events file gone")
        calls = self.agent.podman_calls()
        self.assertIn(["events", "--format", "json", "--filter", "type=container"], calls)

    def test_missing_podman_is_a_reason_not_a_crash(self):
        self.agent.write_config(runtime="podman", podman="/nonexistent/podman")
        res = self.agent.run("eval", "-e", "print(agent.runtime.events())")
        self.assertEqual(res.rc, 0, res.stderr)
        self.assertRegex(res.stdout, r"^nil\tpodman not found\t/nonexistent/podman: executable not found")


if __name__ == "__main__":
    unittest.main()
