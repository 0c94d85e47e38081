"""The daemon supervises (SPEC §10) on real podman, in an isolated store with
its own --tmpdir (so its event stream sees only this test's containers):
a killed container comes back on its own with died/restarted events, a
crash loop follows the policy until it gives up, `start` brings a given-up
component back, a stopped one stays down, and the event log is followed
live by `events --follow` and by a stock grpcio WatchEvents client."""
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from agent_env import pgrep, toml_str
from grpc_env import gen_stubs
from podman_daemon import PodmanDaemonTest
from podman_env import podman_missing_reason

GIVE_UP_AFTER_TWO = """\
-- an operator's supervise.lua: two restarts, then give up
local M = {}
function M.on_exit(_agent, _component, info)
    if info.restarts >= 2 then return false, "two strikes" end
    return 0.5
end
return M
"""


def service_toml(name, image, cmd):
    return "\n".join(["name = %s" % toml_str(name), "[[components]]", "name = %s" % toml_str(name),
                      "image = %s" % toml_str(image),
                      "cmd = [%s]" % ", ".join(toml_str(c) for c in cmd)]) + "\n"


@unittest.skipIf(podman_missing_reason(), podman_missing_reason() or "")
class SuperviseOnPodman(PodmanDaemonTest):
    maxDiff = None

    def start_daemon(self, policy_dir=None, interval="2s"):
        sections = ["[monitor]", "interval = %s" % toml_str(interval)]
        if policy_dir:
            sections += ["[policy]", "dir = %s" % toml_str(policy_dir)]
        return self.run_daemon(sections=sections)

    def deploy(self, name, cmd):
        self.pod.track(name)
        r = self.cli("deploy", self.agent.write(name + ".toml", service_toml(name, self.pod.image, cmd)))
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)

    def events(self, service):
        r = self.cli("events", service, "--json")
        self.assertEqual(r.rc, 0, r.stderr)
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]

    def wait_for_event(self, service, kind, timeout, count=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = [e for e in self.events(service) if e["kind"] == kind]
            if len(evs) >= count:
                return evs
            time.sleep(0.2)
        self.fail("no %d %r event(s) for %s within %ss: %s" % (count, kind, service, timeout,
                                                              self.events(service)))

    def component(self, service):
        r = self.cli("status", service, "--json")
        return json.loads(r.stdout)["services"][0]["components"][0]

    def test_a_killed_container_comes_back_on_its_own(self):
        live = self.start_daemon()
        self.deploy("web", ["sleep", "3600"])
        before = self.pod.inspect("web")["Id"]
        self.pod.podman("kill", "web")
        died = self.wait_for_event("web", "died", 10)
        self.assertEqual(died[0]["exit_code"], 137)
        restarted = self.wait_for_event("web", "restarted", 10)
        self.assertEqual(restarted[0]["exit_code"], 137)
        self.assertRegex(died[0]["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        info = self.pod.inspect("web")
        self.assertEqual(info["State"]["Status"], "running")
        self.assertEqual(info["Id"], before, "the same container is started again")
        self.assertEqual(info["Config"]["Labels"]["mcp.service"], "web")
        self.assertIn("mcp.spec-hash", info["Config"]["Labels"])
        self.assertEqual(info["HostConfig"]["RestartPolicy"]["Name"], "no")
        comp = self.component("web")
        self.assertEqual((comp["restarts"], comp["last_exit_code"], comp["state"]), (1, 137, "running"))
        # stop: desired state stopped is never restarted
        r = self.cli("stop", "web")
        self.assertEqual(r.rc, 0, r.stderr)
        time.sleep(3)  # longer than a list interval
        self.assertEqual(self.pod.inspect("web")["State"]["Status"], "exited")
        self.assertEqual(len([e for e in self.events("web") if e["kind"] == "died"]), 1)
        live.proc.terminate()
        rc, _, err = live.finish(30)
        self.assertEqual(rc, 0, err)

    def test_a_crash_loop_follows_the_policy_until_it_gives_up(self):
        pol = tempfile.mkdtemp(dir=self.agent.dir)
        with open(os.path.join(pol, "supervise.lua"), "w") as f:
            f.write(GIVE_UP_AFTER_TWO)
        live = self.start_daemon(policy_dir=pol)
        self.deploy("loop", ["sh", "-c", "sleep 0.2; exit 1"])
        gave = self.wait_for_event("loop", "gave-up", 30)
        self.assertIn("two strikes", gave[0]["message"])
        evs = self.events("loop")
        self.assertEqual(len([e for e in evs if e["kind"] == "restarted"]), 2, evs)
        comp = self.component("loop")
        self.assertEqual(comp["state"], "given up")
        self.assertEqual(comp["last_exit_code"], 1)
        time.sleep(3)
        self.assertEqual(self.pod.inspect("loop")["State"]["Status"], "exited", "a given-up component stays down")
        r = self.cli("status", "loop")
        self.assertIn("given up", r.stdout)
        # start clears the given-up state and brings it back
        r = self.cli("start", "loop")
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertNotEqual(self.component("loop")["state"], "given up")
        self.wait_for_event("loop", "gave-up", 30, count=2)
        live.proc.terminate()
        live.finish(30)

    def test_a_crash_loop_backs_off_with_growing_delays(self):
        live = self.start_daemon()  # the built-in policy: at once, then 1 s doubling, ±25 %
        self.deploy("grow", ["sh", "-c", "sleep 0.2; exit 1"])
        self.wait_for_event("grow", "restarted", 40, count=4)
        backoffs = [e for e in self.events("grow") if e["kind"] == "backoff"]
        delays = [float(e["message"].split(" in ")[1].split("s ")[0]) for e in backoffs]
        self.assertGreaterEqual(len(delays), 3, backoffs)
        for n, d in enumerate(delays[:3], start=1):
            want = 2 ** (n - 1)
            self.assertTrue(0.75 * want <= d <= 1.25 * want, "restart %d after %gs" % (n + 1, d))
        restarted = [e for e in self.events("grow") if e["kind"] == "restarted"]
        self.assertTrue(all(e["exit_code"] == 1 for e in restarted), restarted)
        comp = self.component("grow")
        self.assertGreaterEqual(comp["restarts"], 4)
        live.proc.terminate()
        live.finish(30)

    def test_the_event_log_is_followed_live(self):
        live = self.start_daemon()
        self.deploy("app", ["sleep", "3600"])
        follow = subprocess.Popen(self.agent.argv(["events", "app", "--follow", "--json"]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=self.agent.env(self.env), cwd=self.agent.dir)
        self.addCleanup(lambda: follow.poll() is None and follow.kill())
        agent_pb2, agent_pb2_grpc, _, _ = gen_stubs(tempfile.mkdtemp(dir=self.agent.dir))
        import grpc
        channel = grpc.insecure_channel("unix:" + self.socket)
        self.addCleanup(channel.close)
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        stream = stub.WatchEvents(agent_pb2.WatchEventsRequest(service="app"), timeout=30)
        seen = []

        def read():
            try:
                for ev in stream:
                    seen.append(ev)
                    if ev.kind == "restarted":
                        return
            except grpc.RpcError:
                pass

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.5)  # both followers are listening
        self.pod.podman("kill", "app")
        reader.join(20)
        stream.cancel()
        kinds = [e.kind for e in seen]
        self.assertIn("died", kinds)
        self.assertIn("restarted", kinds)
        died = seen[kinds.index("died")]
        self.assertEqual((died.service, died.exit_code), ("app", 137))
        self.assertGreater(died.time_unix_ms, 1.6e12)
        # events --follow printed the same, one JSON object a line
        deadline = time.monotonic() + 10
        lines = []

        def read_follow():
            for line in follow.stdout:
                lines.append(line)
                if '"restarted"' in line:
                    return

        follower = threading.Thread(target=read_follow, daemon=True)
        follower.start()
        follower.join(max(0, deadline - time.monotonic()))
        follow.terminate()
        follow.wait(10)
        follow.stdout.close()
        follow.stderr.close()
        got = [json.loads(l)["kind"] for l in lines if l.strip()]
        self.assertIn("died", got)
        self.assertIn("restarted", got)
        live.proc.terminate()
        live.finish(30)

    def events_children(self):
        """PIDs of `podman … events` children watching this test's store."""
        return [p for p in pgrep(self.pod.root) if p in pgrep("events --format json")]

    def the_events_child(self):
        """[pid] of the one events child, once it runs (within 10 s)."""
        deadline = time.monotonic() + 10
        while not self.events_children() and time.monotonic() < deadline:
            time.sleep(0.1)
        child = self.events_children()
        self.assertEqual(len(child), 1, "one events child follows the store")
        return child

    def test_a_killed_events_child_is_restarted_and_nothing_is_missed(self):
        live = self.start_daemon()
        self.deploy("gap", ["sleep", "3600"])
        old = self.the_events_child()
        os.kill(old[0], 9)
        self.pod.podman("kill", "gap")  # dies while nobody follows podman's events
        restarted = self.wait_for_event("gap", "restarted", 15)
        self.assertEqual(restarted[0]["exit_code"], 137)
        self.assertEqual(self.pod.inspect("gap")["State"]["Status"], "running")
        self.assertTrue(live.wait_for_log("event stream ended", 5), live.stderr())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            new = self.events_children()
            if new and new != old:
                break
            time.sleep(0.1)
        self.assertTrue(new and new[0] != old[0], "a new events child follows the store")
        live.proc.terminate()
        live.finish(30)

    def test_a_death_is_seen_in_podmans_events_file_while_its_reader_lags(self):
        # podman's own reader polls the events file every 250 ms; the agent
        # also follows the file itself (inotify). With the reader stopped
        # dead and no list due for a minute, the file alone brings the death.
        live = self.start_daemon(interval="60s")
        self.deploy("quick", ["sleep", "3600"])
        child = self.the_events_child()
        os.kill(child[0], signal.SIGSTOP)
        try:
            self.pod.podman("kill", "quick")
            restarted = self.wait_for_event("quick", "restarted", 15)
            self.assertEqual(restarted[0]["exit_code"], 137)
            self.assertEqual(self.pod.inspect("quick")["State"]["Status"], "running")
        finally:
            os.kill(child[0], signal.SIGCONT)
        # the reader, going again, tells of the same death: it is not a second one
        time.sleep(2)
        kinds = [e["kind"] for e in self.events("quick")]
        self.assertEqual((kinds.count("died"), kinds.count("restarted")), (1, 1), kinds)
        self.assertEqual(self.pod.inspect("quick")["State"]["Status"], "running")
        live.proc.terminate()
        live.finish(30)

    def test_podman_losing_its_state_is_one_recover_pass(self):
        live = self.start_daemon()
        for name in ("s1", "s2", "s3"):
            self.deploy(name, ["sleep", "3600"])
        self.pod.lose_state_at_once()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all((self.pod.inspect(n) or {}).get("State", {}).get("Status") == "running"
                   for n in ("s1", "s2", "s3")):
                break
            time.sleep(0.3)
        for n in ("s1", "s2", "s3"):
            self.assertEqual((self.pod.inspect(n) or {}).get("State", {}).get("Status"), "running",
                             n + "\n" + live.stderr())
        # the passes took every container that went down; a loss seen only
        # after a pass (a slow stop, a later list) joins the burst by another
        # pass. Only the first death, before it was a burst, may have been
        # restarted on its own. (A pass's event follows its containers.)
        deadline = time.monotonic() + 15
        while True:
            r = self.cli("events", "--json")
            evs = [json.loads(l) for l in r.stdout.splitlines()]
            node = [e for e in evs if e["kind"] == "recovered" and e["service"] == ""]
            passed = set()
            for e in node:
                passed |= set(e["message"].split("(")[1].split(")")[0].split(", "))
            alone = {e["service"] for e in evs if e["kind"] == "restarted"}
            if passed | alone == {"s1", "s2", "s3"} or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertGreaterEqual(len(node), 1, r.stdout + r.stderr + live.stderr())
        self.assertIn("went down at once", node[0]["message"])
        self.assertLessEqual(len(alone), 1, r.stdout)
        self.assertGreaterEqual(len(passed), 2, r.stdout)
        self.assertEqual(passed | alone, {"s1", "s2", "s3"}, r.stdout)
        live.proc.terminate()
        live.finish(30)


if __name__ == "__main__":
    unittest.main()
