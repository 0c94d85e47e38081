"""Crash and fault tests (issue 14), bounded in time.

All of them drive the real mcp-agent binary, daemon-less, against the
scripted fake podman (tests/fixtures/fakepodman/podman) or its misbehaving
wrapper (tests/fixtures/fakepodman/faulty): real SQLite, real processes,
reproducible (seeded) faults, and no container store of the machine's.

- kill -9 of `recover` and of `deploy` at random (seeded) moments: the
  registry passes PRAGMA integrity_check, holds either the whole old or the
  whole new definition, and a final `recover` converges;
- a kill right after the registry commit, before the container is replaced:
  the next `recover` must not call the old container "already running";
- a podman that fails 30 % of calls, prints invalid JSON, hangs, or exits 0
  doing nothing: every command ends within its bound, with a clear error,
  and the registry intact;
- the registry on a full filesystem (a small tmpfs, root only): deploy fails
  clearly, nothing half-written, reads still work.

MCP_FAULT_SEED changes the seed (default 14); MCP_FAULT_KILLS the number of
kills per command (default 20)."""
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
import unittest

from agent_env import FIXTURES, AgentTestCase

FAULTY_PODMAN = os.path.join(FIXTURES, "fakepodman", "faulty")
SEED = int(os.environ.get("MCP_FAULT_SEED", "14"))
KILLS = int(os.environ.get("MCP_FAULT_KILLS", "20"))


def service_toml(version, components):
    """A service "fz" whose every component carries VERSION=version."""
    out = ['name = "fz"']
    for c in components:
        out += ["", "[[components]]", 'name = "%s"' % c, 'image = "localhost/fz-%s:%d"' % (c, version),
                'env = ["VERSION=%d", "COMPONENT=%s"]' % (version, c)]
    return "\n".join(out) + "\n"


# The two definitions a test switches between: they differ in every
# component's env and image, and v2 has one component more.
V1 = (1, ("api", "web"))
V2 = (2, ("api", "web", "worker"))


class RegistryChecks:
    """Reads of the registry file itself (sqlite3, not the agent)."""

    def integrity(self, db):
        con = sqlite3.connect(db, timeout=10)
        try:
            return con.execute("PRAGMA integrity_check").fetchall()
        finally:
            con.close()

    def definition(self, db):
        """{component: env list} of service fz, or None when it is not stored."""
        con = sqlite3.connect(db, timeout=10)
        try:
            if not con.execute("SELECT 1 FROM services WHERE name = 'fz'").fetchall():
                return None
            rows = con.execute("SELECT name, env FROM components WHERE service = 'fz' "
                               "ORDER BY position").fetchall()
            return {name: json.loads(env) for name, env in rows}
        finally:
            con.close()

    def assertWhole(self, db, allowed, context=""):
        """The registry is sound and holds one of the allowed (version, components) whole."""
        self.assertEqual(self.integrity(db), [("ok",)], context)
        got = self.definition(db)
        wants = [None if a is None else
                 {c: ["VERSION=%d" % a[0], "COMPONENT=%s" % c] for c in a[1]} for a in allowed]
        self.assertIn(got, wants, "half-written registry %s" % context)
        return got


class FaultCase(AgentTestCase, RegistryChecks):

    def setUp(self):
        super().setUp()
        self.v1 = self.env.write("v1.toml", service_toml(*V1))
        self.v2 = self.env.write("v2.toml", service_toml(*V2))

    def faulty_config(self, timeout="5s"):
        return self.env.write_config(runtime="podman", podman=FAULTY_PODMAN, podman_timeout=timeout)

    def set_fault(self, **fault):
        with open(os.path.join(self.env.podman_state, "fault.json"), "w") as f:
            json.dump(fault, f)

    def clear_fault(self):
        p = os.path.join(self.env.podman_state, "fault.json")
        if os.path.exists(p):
            os.unlink(p)

    def recover_json(self, timeout=60):
        r = self.env.run("recover", "--json", timeout=timeout)
        self.assertIn(r.rc, (0, 1), r.stderr)
        return r, json.loads(r.stdout)

    def wanted_hashes(self):
        """{container: the mcp.spec-hash the registry's definition asks for}."""
        code = ('local spec = require("mcp.spec") '
                'for _, s in ipairs(agent.registry.services()) do '
                'for _, c in ipairs(s.components) do local r = spec.container(s, c) '
                'print(r.name .. " " .. r.labels["mcp.spec-hash"]) end end')
        r = self.env.run("eval", "-e", code)
        self.assertEqual(r.rc, 0, r.stderr)
        return dict(line.split(" ", 1) for line in r.stdout.splitlines() if line.strip())

    def podman_hashes(self):
        """{container: its mcp.spec-hash label} of the fake podman's running containers."""
        p = os.path.join(self.env.podman_state, "containers.json")
        if not os.path.exists(p):
            return {}
        with open(p) as f:
            return {c["name"]: (c.get("labels") or {}).get("mcp.spec-hash")
                    for c in json.load(f) if c["state"] == "running"}

    def wait_for_fake_podman(self):
        """Calls the killed agent left running finish on their own (they hold the lock)."""
        lock = os.path.join(self.env.podman_state, "lock")
        if os.path.exists(lock):
            import fcntl
            with open(lock) as f:
                fcntl.flock(f, fcntl.LOCK_EX)

    def kill_at(self, delay, *args):
        """Starts the agent with args, SIGKILLs it after delay seconds (if
        still running); returns True when it was killed."""
        proc = self.env.start(*args)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        killed = proc.returncode == -signal.SIGKILL
        if not killed:
            self.assertIn(proc.returncode, (0, 1), err)
        self.wait_for_fake_podman()
        return killed

    def duration(self, *args):
        start = time.monotonic()
        r = self.env.run(*args)
        self.assertIn(r.rc, (0, 1), r.stderr)
        return time.monotonic() - start


class KillNine(FaultCase):
    """kill -9 at random moments: the registry stays whole, recover converges."""

    def converge(self):
        self.clear_fault()
        r, first = self.recover_json()
        self.assertEqual(first["failed"], [], r.stdout)
        r, second = self.recover_json()
        self.assertEqual((second["failed"], second["recovered"]), ([], []), r.stdout)
        return second

    def test_kill_deploy_at_random_moments(self):
        self.env.fake_podman_config()
        rng = random.Random(SEED)
        full = self.duration("deploy", self.v1)
        killed = 0
        for i in range(KILLS):
            path, target = (self.v2, V2) if i % 2 == 0 else (self.v1, V1)
            before = self.definition(self.env.db)
            delay = rng.uniform(0, full * 1.2)
            killed += self.kill_at(delay, "deploy", path)
            ctx = "(kill %d after %.3fs, deploying %s)" % (i, delay, os.path.basename(path))
            got = self.assertWhole(self.env.db, [V1, V2], ctx)
            # the old definition or the one being deployed, nothing else
            self.assertIn(got, (before, {c: ["VERSION=%d" % target[0], "COMPONENT=%s" % c]
                                         for c in target[1]}), ctx)
        # most draws land inside the run; a few after it are the control
        self.assertGreaterEqual(killed, KILLS // 2, "the kills missed the deploys")
        self.converge()
        # reads still work and see what the registry holds
        r = self.env.run("status", "fz", "--json")
        self.assertEqual(r.rc, 0, r.stderr)
        comps = [c["name"] for c in json.loads(r.stdout)["services"][0]["components"]]
        self.assertEqual(comps, list(self.definition(self.env.db)))

    def test_kill_recover_at_random_moments(self):
        self.env.fake_podman_config()
        r = self.env.run("deploy", self.v2)
        self.assertEqual(r.rc, 0, r.stderr)
        rng = random.Random(SEED + 1)
        self.env.podman_containers([])
        full = self.duration("recover")
        killed = 0
        for i in range(KILLS):
            # a fresh crash scene each time: all gone, or all exited
            if i % 2 == 0:
                self.env.podman_containers([])
            else:
                self.env.podman_containers([("fz-%s" % c, "localhost/fz-%s:2" % c, "exited")
                                            for c in V2[1]])
            delay = rng.uniform(0, full * 1.2)
            killed += self.kill_at(delay, "recover")
            self.assertWhole(self.env.db, [V2], "(kill %d after %.3fs)" % (i, delay))
        self.assertGreaterEqual(killed, KILLS // 2, "the kills missed the recovers")
        report = self.converge()
        self.assertEqual(sorted(e["container"] for e in report["already_running"]),
                         ["fz-api", "fz-web", "fz-worker"])

    def test_kill_after_commit_before_replace_is_caught_by_recover(self):
        self.env.fake_podman_config()
        r = self.env.run("deploy", self.v1)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(self.podman_hashes(), self.wanted_hashes())
        old = self.podman_hashes()
        # the redeploy dies at its first mutating podman call: the registry
        # has v2, the running containers are still v1's
        self.faulty_config()
        self.set_fault(mode="kill-parent", on="rm")
        proc = self.env.start("deploy", self.v2)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, -signal.SIGKILL, err)
        self.wait_for_fake_podman()
        self.assertWhole(self.env.db, [V2])
        self.assertEqual(self.podman_hashes()["fz-api"], old["fz-api"])
        r, report = self.recover_json()
        stale = [e["container"] for e in report["already_running"]
                 if self.podman_hashes().get(e["container"]) != self.wanted_hashes().get(e["container"])]
        self.assertEqual(stale, [], "recover called containers of the old definition "
                         "already running:\n" + r.stdout)
        self.assertEqual(self.podman_hashes(), self.wanted_hashes())


class MisbehavingPodman(FaultCase):
    """Every command ends within its bound with a clear error; the registry stays intact."""

    BOUND = 45  # seconds for any one command, whatever podman does

    def deploy_v1(self):
        self.env.fake_podman_config()
        r = self.env.run("deploy", self.v1)
        self.assertEqual(r.rc, 0, r.stderr)

    def commands(self):
        return [("deploy", self.v2), ("recover",), ("status", "fz"), ("stop", "fz"),
                ("start", "fz"), ("restart", "fz"), ("deploy", self.v1), ("recover", "--json")]

    def test_flaky_podman_fails_30_percent(self):
        self.deploy_v1()
        self.faulty_config()
        self.set_fault(mode="flaky", rate=0.3, seed=SEED)
        failures = 0
        for rnd in range(3):
            for args in self.commands():
                r = self.env.run(*args, timeout=self.BOUND)
                self.assertIn(r.rc, (0, 1), "%r: %s" % (args, r.stderr))
                if r.rc == 1:
                    failures += 1
                    # the injected error reaches the operator, not a crash or silence
                    self.assertMentions(r.stdout + r.stderr, "injected fault")
                self.assertWhole(self.env.db, [V1, V2], repr(args))
        with open(os.path.join(self.env.podman_state, "faults.log")) as f:
            verdicts = [line.split()[2] for line in f]
        share = verdicts.count("failed") / len(verdicts)
        self.assertTrue(0.15 < share < 0.45, "injected %.0f%% of %d calls" % (share * 100, len(verdicts)))
        self.assertGreater(failures, 0)
        # once podman behaves, recover converges
        self.clear_fault()
        r, report = self.recover_json()
        self.assertEqual(report["failed"], [], r.stdout)

    def test_invalid_json(self):
        self.deploy_v1()
        self.faulty_config()
        self.set_fault(mode="badjson")
        r = self.env.run("recover", timeout=self.BOUND)
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        self.assertMentions(r.stdout + r.stderr, "cannot list containers")
        r = self.env.run("status", "fz", timeout=self.BOUND)
        self.assertNotEqual(r.rc, 0, r.stdout)  # podman's state is unknown: not reported as fine
        self.assertTrue(r.stdout or r.stderr)
        r = self.env.run("deploy", self.v2, timeout=self.BOUND)
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        self.assertRegex(r.stdout + r.stderr, r"(?i)json|malformed|cannot inspect")
        self.assertWhole(self.env.db, [V2])

    def test_hanging_podman(self):
        self.deploy_v1()
        hang, marker = self.env.hanging_podman()
        self.env.write_config(runtime="podman", podman=hang, podman_timeout="1s")
        for args in (("recover",), ("deploy", self.v2), ("stop", "fz")):
            r = self.env.run(*args, timeout=self.BOUND)
            self.assertEqual(r.rc, 1, "%r: %s" % (args, r.stdout + r.stderr))
            self.assertMentions(r.stdout + r.stderr, "timeout")
            self.assertLess(r.elapsed, self.BOUND)
            self.assertWhole(self.env.db, [V1, V2], repr(args))
        # nothing of the hung calls is left behind
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and subprocess.run(
                ["pgrep", "-f", marker], stdout=subprocess.DEVNULL, timeout=10).returncode == 0:
            time.sleep(0.1)
        self.assertNotEqual(subprocess.run(["pgrep", "-f", marker], stdout=subprocess.DEVNULL,
                                           timeout=10).returncode, 0, "hung podman calls left running")

    def test_podman_that_does_nothing(self):
        self.deploy_v1()
        self.faulty_config()
        self.set_fault(mode="noop")
        for args in (("recover",), ("deploy", self.v2), ("start", "fz")):
            r = self.env.run(*args, timeout=self.BOUND)
            # an empty answer is not a success: nothing runs
            self.assertEqual(r.rc, 1, "%r: %s" % (args, r.stdout + r.stderr))
            self.assertTrue((r.stdout + r.stderr).strip())
            self.assertWhole(self.env.db, [V1, V2], repr(args))


class FullFilesystem(FaultCase):
    """The registry on a small tmpfs, filled up: deploy fails clearly, reads still work."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0 or not shutil.which("mount"):
            self.skipTest("mounting a tmpfs needs root")
        self.mnt = self.env.path("small")
        os.makedirs(self.mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", self.mnt],
                           stderr=subprocess.PIPE, text=True, timeout=30)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs here: %s" % r.stderr.strip())
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt], timeout=30)

    def fill(self):
        """Fills the tmpfs; returns the filler's path."""
        filler = os.path.join(self.mnt, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096) > 0:
                pass
        except OSError:
            pass  # ENOSPC: full
        finally:
            os.close(fd)
        return filler

    def deploy_v1_then_fill(self, hold_open):
        """deploy v1, then fill the tmpfs; hold_open keeps a reader on the
        registry meanwhile, as the running daemon does (its -wal and -shm
        files stay, at full size). Returns (db, definition, filler, big.toml)."""
        db = os.path.join(self.mnt, "registry.db")
        self.env.write_config(db=db)  # fake runtime: only the registry matters here
        r = self.env.run("deploy", self.v1)
        self.assertEqual(r.rc, 0, r.stderr)
        before = self.definition(db)
        if hold_open:
            holder = sqlite3.connect(db, timeout=10)
            self.addCleanup(holder.close)
            self.assertEqual(holder.execute("SELECT count(*) FROM components").fetchall(), [(2,)])
        # a definition big enough to need new pages
        big = self.env.write("big.toml", service_toml(*V2).replace(
            'env = ["VERSION=2"', 'env = [%s"VERSION=2"' % "".join(
                '"PAD_%d=%s", ' % (i, "x" * 200) for i in range(2000)), 1))
        return db, before, self.fill(), big

    # Issue 14: with nobody holding the registry open, every command failed to
    # open it on a full disk (SQLite could not size the -shm file), exit 2,
    # "corrupt or unreadable SQLite database (disk I/O error)".
    def assert_deploy_refused_reads_work(self, big):
        """On the full disk: the big deploy exits 1 saying so, and status
        still reads the old definition (exit 1: the fake runtime runs nothing,
        so observed differs from desired)."""
        r = self.env.run("deploy", big)
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        self.assertRegex(r.stdout + r.stderr, r"(?i)full|no space")
        r = self.env.run("status", "fz", "--json")
        self.assertIn(r.rc, (0, 1), r.stderr)
        self.assertEqual([c["name"] for c in json.loads(r.stdout)["services"][0]["components"]],
                         list(V1[1]))

    def assert_whole_with_room_again(self, db, before, filler):
        """With room again (sqlite3 here needs some for the -shm file): the
        old definition is there whole."""
        os.unlink(filler)
        self.assertEqual(self.definition(db), before)
        self.assertEqual(self.integrity(db), [("ok",)])

    def test_reads_on_full_filesystem_with_registry_closed(self):
        db, before, filler, big = self.deploy_v1_then_fill(hold_open=False)
        self.assert_deploy_refused_reads_work(big)
        self.assert_whole_with_room_again(db, before, filler)

    def test_daemon_on_full_filesystem_with_registry_closed_says_so(self):
        # the daemon does not take the registry for itself (that would lock
        # every CLI command out): it stops, naming the file and the cause
        db, before, filler, big = self.deploy_v1_then_fill(hold_open=False)
        r = self.env.run("run", timeout=30)
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        self.assertIn(db, r.stderr)
        self.assertRegex(r.stderr, r"WAL index.*disk full")
        self.assert_whole_with_room_again(db, before, filler)

    def test_deploy_on_full_filesystem(self):
        db, before, filler, big = self.deploy_v1_then_fill(hold_open=True)
        self.assert_deploy_refused_reads_work(big)
        r = self.env.run("ls")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertMentions(r.stdout, "fz")
        # with room again the next deploy goes through
        self.assert_whole_with_room_again(db, before, filler)
        r = self.env.run("deploy", self.v2)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertWhole(db, [V2])


if __name__ == "__main__":
    unittest.main()
