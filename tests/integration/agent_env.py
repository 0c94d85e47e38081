"""agent_env: run the mcp-agent binary from integration tests (stdlib only).

Each test gets an AgentEnv: a private temp dir (under $MCP_TEST_TMP, else
/tmp) holding its config, registry and fixtures. AgentEnv.run executes the
binary as an argv list (never a shell) with a timeout and returns a Result
(rc, stdout, stderr, elapsed). Every run fails the test when the agent's
stderr carries a sanitizer report, its exit code is the sanitizer's, or it
died from a signal it was not sent: a crash is never an acceptable answer to
bad input.

Environment (set by tests/CMakeLists.txt): MCP_AGENT_BIN, MCP_SOURCE_DIR,
MCP_BUILD_DIR, MCP_TEST_TMP. MCP_KEEP_TMP=1 keeps the temp dirs.
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import unittest
import uuid
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MCP_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD_DIR = os.environ.get("MCP_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
AGENT_BIN = os.environ.get("MCP_AGENT_BIN") or os.path.join(BUILD_DIR, "mcp-agent")
TEST_TMP = os.environ.get("MCP_TEST_TMP") or "/tmp"
FIXTURES = os.path.join(SOURCE_DIR, "tests", "fixtures")
FAKE_PODMAN = os.path.join(FIXTURES, "fakepodman", "podman")
HANG_PODMAN = os.path.join(FIXTURES, "fakepodman", "hang")

# Distinct exit codes for sanitizer aborts, so they never pass for 1 or 2.
ASAN_EXIT = 86
UBSAN_EXIT = 87
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer")
DEFAULT_TIMEOUT = 30

Result = namedtuple("Result", "rc stdout stderr elapsed")


class AgentFailure(AssertionError):
    """The agent crashed, hung past its timeout, or a sanitizer spoke."""


def sanitizer_env(base):
    """base plus sanitizer options that make reports fail loudly and distinctly."""
    env = dict(base)
    asan = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = ":".join(filter(None, [asan, "exitcode=%d" % ASAN_EXIT,
                                                  "abort_on_error=0", "detect_leaks=1"]))
    ubsan = env.get("UBSAN_OPTIONS", "")
    env["UBSAN_OPTIONS"] = ":".join(filter(None, [ubsan, "print_stacktrace=1",
                                                   "halt_on_error=1", "exitcode=%d" % UBSAN_EXIT]))
    return env


def check_health(argv, rc, stderr, expected_signal=None):
    """Raises AgentFailure on a sanitizer report, a sanitizer exit code, or an
    unexpected death by signal."""
    for marker in SANITIZER_MARKERS:
        if marker in stderr:
            raise AgentFailure("sanitizer report (%s) from %r:\n%s" % (marker, argv, stderr))
    if rc in (ASAN_EXIT, UBSAN_EXIT):
        raise AgentFailure("sanitizer exit code %d from %r:\n%s" % (rc, argv, stderr))
    if rc < 0 and -rc != expected_signal:
        raise AgentFailure("%r died from signal %d:\n%s" % (argv, -rc, stderr))


def pgrep(marker):
    """PIDs of processes whose command line contains marker (pgrep -f)."""
    out = subprocess.run(["pgrep", "-f", marker], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, timeout=10)
    return [int(p) for p in out.stdout.split()]


def kill_marked(marker):
    """Kills leftovers a failing test may leave behind, by marker (never by name)."""
    for pid in pgrep(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def toml_str(s):
    """s as a TOML basic string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AgentEnv:
    """A temp dir with a config in it, and a way to run the agent there."""

    def __init__(self, name="agent"):
        os.makedirs(TEST_TMP, exist_ok=True)
        safe = "".join(ch if ch.isalnum() else "-" for ch in name)[:20]
        self.dir = tempfile.mkdtemp(prefix="%s-" % safe, dir=TEST_TMP)
        self.db = os.path.join(self.dir, "registry.db")
        self.config = os.path.join(self.dir, "mcp-agent.toml")
        self.podman_state = os.path.join(self.dir, "podman-state")
        os.makedirs(self.podman_state)
        self.markers = []

    # -- files -----------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write(self, rel, text, mode=0o644):
        """Writes text to rel (under the temp dir) with mode; returns the path."""
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def write_bytes(self, rel, data):
        p = self.path(rel)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def write_config(self, runtime="fake", podman=None, podman_timeout=None, policy_dir=None,
                     db=None, extra="", name="mcp-agent.toml"):
        """Writes a config; returns its path (also self.config when name is the default)."""
        agent = ["[agent]", "container_runtime = %s" % toml_str(runtime), 'port_range = "20000-20999"']
        if podman:
            agent.append("podman = %s" % toml_str(podman))
        if podman_timeout:
            agent.append("podman_timeout = %s" % toml_str(podman_timeout))
        text = "\n".join(agent) + "\n\n[database]\npath = %s\n" % toml_str(db or self.db)
        if policy_dir:
            text += "\n[policy]\ndir = %s\n" % toml_str(policy_dir)
        text += extra
        p = self.write(name, text)
        if name == "mcp-agent.toml":
            self.config = p
        return p

    def fake_podman_config(self, podman_timeout="10s", **kw):
        """A config whose podman is the scripted fake (tests/fixtures/fakepodman/podman)."""
        return self.write_config(runtime="podman", podman=FAKE_PODMAN,
                                 podman_timeout=podman_timeout, **kw)

    def hanging_podman(self):
        """A copy of the hanging podman at a path with a unique marker; returns (path, marker)."""
        marker = "mcphang%s" % uuid.uuid4().hex[:12]
        p = self.path(marker)
        shutil.copyfile(HANG_PODMAN, p)
        os.chmod(p, 0o755)
        self.markers.append(marker)
        return p, marker

    # -- running ---------------------------------------------------------------

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if k != "MCP_AGENT_CONFIG"}
        env["FAKEPODMAN_STATE"] = self.podman_state
        env.update(extra or {})
        return sanitizer_env(env)

    def argv(self, args, config=True):
        argv = [AGENT_BIN]
        if config is True:
            argv += ["-c", self.config]
        elif config:
            argv += ["-c", config]
        return argv + list(args)

    def run(self, *args, config=True, timeout=DEFAULT_TIMEOUT, env=None, stdin=None):
        """Runs mcp-agent [-c CONFIG] ARGS in the temp dir; returns Result.
        config: True (self.config), a path, or None/False (no -c).
        Raises AgentFailure on timeout, sanitizer report or crash."""
        argv = self.argv(args, config)
        start = time.monotonic()
        try:
            proc = subprocess.run(argv, cwd=self.dir, env=self.env(env), input=stdin,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired as e:
            raise AgentFailure("%r did not finish within %ss (hang); stderr so far:\n%s"
                               % (argv, timeout, e.stderr)) from None
        elapsed = time.monotonic() - start
        check_health(argv, proc.returncode, proc.stderr)
        return Result(proc.returncode, proc.stdout, proc.stderr, elapsed)

    def start(self, *args, config=True, env=None):
        """Starts mcp-agent in the background; finish() collects it."""
        argv = self.argv(args, config)
        proc = subprocess.Popen(argv, cwd=self.dir, env=self.env(env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        proc.mcp_argv = argv
        proc.mcp_start = time.monotonic()
        return proc

    def finish(self, proc, timeout=DEFAULT_TIMEOUT, expected_signal=None):
        """Waits for a started agent; returns Result (elapsed from start)."""
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AgentFailure("%r did not finish within %ss:\n%s" % (proc.mcp_argv, timeout, err))
        elapsed = time.monotonic() - proc.mcp_start
        check_health(proc.mcp_argv, proc.returncode, err, expected_signal)
        return Result(proc.returncode, out, err, elapsed)

    # -- the fake podman's state ------------------------------------------------

    def podman_containers(self, containers):
        """Sets what the fake podman's `ps -a` lists: [(name, image, state), ...]."""
        records = [{"name": n, "image": i, "state": s, "id": "%064x" % (k + 1)}
                   for k, (n, i, s) in enumerate(containers)]
        with open(os.path.join(self.podman_state, "containers.json"), "w") as f:
            json.dump(records, f)

    def podman_images(self, images):
        with open(os.path.join(self.podman_state, "images.json"), "w") as f:
            json.dump(list(images), f)

    def podman_fail(self, failures):
        """{subcommand: message}: the fake podman fails those calls with exit 125."""
        with open(os.path.join(self.podman_state, "fail.json"), "w") as f:
            json.dump(failures, f)

    def podman_calls(self):
        """The argv (after the program) of every call the fake podman got, in order."""
        p = os.path.join(self.podman_state, "calls.log")
        if not os.path.exists(p):
            return []
        with open(p) as f:
            return [json.loads(line) for line in f if line.strip()]

    def reset_podman_calls(self):
        p = os.path.join(self.podman_state, "calls.log")
        if os.path.exists(p):
            os.unlink(p)

    # -- cleanup -----------------------------------------------------------------

    def cleanup(self):
        for marker in self.markers:
            kill_marked(marker)
        if os.environ.get("MCP_KEEP_TMP"):
            return
        shutil.rmtree(self.dir, ignore_errors=True)


def podman_subcommands(calls):
    """The subcommand word of each podman call (global args skipped)."""
    words = ("ps", "image", "container", "run", "start", "stop", "rm", "inspect")
    out = []
    for argv in calls:
        out.append(next((a for a in argv if a in words), None))
    return out


def sqlite_text_contains(path, needle):
    """True when some text cell of some table of the SQLite file at path holds
    needle. Opens the file read-only (it must stay untouched)."""
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in con.execute('SELECT * FROM "%s"' % table.replace('"', '""')):
                if any(isinstance(v, str) and needle in v for v in row):
                    return True
        return False
    finally:
        con.close()


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


class AgentTestCase(unittest.TestCase):
    """A TestCase with self.env, a fresh AgentEnv per test, cleaned up after."""

    maxDiff = None

    def setUp(self):
        if not os.access(AGENT_BIN, os.X_OK):
            self.fail("MCP_AGENT_BIN is not an executable: %r" % AGENT_BIN)
        self.env = AgentEnv(self.id().split(".")[-1])
        self.addCleanup(self.env.cleanup)

    def assertMentions(self, text, *needles):
        """Every needle occurs in text."""
        for n in needles:
            self.assertIn(n, text, "expected %r in:\n%s" % (n, text))
