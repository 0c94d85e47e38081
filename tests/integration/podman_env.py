"""An isolated podman store for integration tests (stdlib only; run with
/usr/bin/python3).

    env = PodmanEnv()                 # temp store + the busybox test image
    try:
        agent_config["podman_args"] = env.podman_args
        subprocess.run([agent, ...], env=env.env)
        env.podman("ps", "-a", "--format", "json")
        env.wipe_store()              # "podman lost its state"
    finally:
        env.cleanup()

Everything lives under one temp dir: --root, --runroot, --tmpdir (libpod's
own state, which otherwise is the machine-wide /run/libpod) and a
containers.conf (runc, ulimits this machine allows, cgroupfs, file events;
see /work/shared/ENV.md) passed through CONTAINERS_CONF.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MCP_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
MAKE_IMAGE = os.path.join(SOURCE_DIR, "scripts", "make-test-image.sh")

TEST_IMAGE = "localhost/mcp-test:1"
CALL_TIMEOUT = 120  # seconds; no podman call here may hang a test run

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def podman_missing_reason():
    """None when podman can run here, else why not (for unittest.skip)."""
    path = shutil.which("podman")
    if not path:
        return "podman not found in PATH"
    try:
        subprocess.run([path, "--version"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return "podman does not run: %s" % e
    return None


class PodmanError(RuntimeError):
    def __init__(self, argv, proc):
        self.argv = argv
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        super().__init__("%s: exit %d: %s" % (" ".join(argv), proc.returncode, proc.stderr.strip()))


class PodmanEnv:
    """A private podman store with the test image imported.

    podman_args: the global args for the agent's podman_args (a list)
    env:         the environment to run the agent and podman with (a dict)
    image:       the test image name
    """

    def __init__(self, image=TEST_IMAGE, prefix="mcp-pm-"):
        reason = podman_missing_reason()
        if reason:
            raise RuntimeError(reason)
        self.podman_bin = shutil.which("podman")
        self.image = image
        # Short on purpose: podman and conmon put unix socket paths in here.
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        self.root = os.path.join(self.dir, "root")
        self.runroot = os.path.join(self.dir, "run")
        self.tmpdir = os.path.join(self.dir, "t")
        self.conf = os.path.join(self.dir, "containers.conf")
        self._names = set()
        with open(self.conf, "w") as f:
            f.write(CONTAINERS_CONF)
        os.makedirs(os.path.join(self.dir, "tmp"))
        self.podman_args = ["--root", self.root, "--runroot", self.runroot, "--tmpdir", self.tmpdir]
        self.env = dict(os.environ)
        self.env["CONTAINERS_CONF"] = self.conf
        self.env["TMPDIR"] = os.path.join(self.dir, "tmp")  # image copies stay in here too
        self.import_seconds = None
        try:
            self.import_image()
        except Exception:
            self.cleanup()
            raise

    # ---- running podman ----

    def podman(self, *args, check=True, timeout=CALL_TIMEOUT):
        """Runs podman in this store; returns the CompletedProcess (text).
        Raises PodmanError on a nonzero exit when check is true."""
        argv = [self.podman_bin] + self.podman_args + [str(a) for a in args]
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        if check and proc.returncode != 0:
            raise PodmanError(argv, proc)
        return proc

    def import_image(self):
        """Builds and imports the busybox test image (a second call re-imports)."""
        t0 = time.monotonic()
        proc = subprocess.run([MAKE_IMAGE, self.image] + self.podman_args, env=self.env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=CALL_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError("make-test-image.sh failed: %s" % proc.stderr.strip())
        self.import_seconds = time.monotonic() - t0

    def image_exists(self, image=None):
        return self.podman("image", "exists", image or self.image, check=False).returncode == 0

    def containers(self):
        """`ps -a` as a list of dicts (podman's JSON)."""
        out = self.podman("ps", "-a", "--format", "json").stdout
        return json.loads(out) if out.strip() else []

    def container(self, name):
        """The ps entry of name, or None."""
        for c in self.containers():
            if name in (c.get("Names") or []):
                return c
        return None

    def inspect(self, name):
        """`container inspect` of name as a dict, or None when podman does not know it."""
        proc = self.podman("container", "inspect", name, check=False)
        if proc.returncode != 0:
            return None
        data = json.loads(proc.stdout)
        return data[0] if data else None

    def run(self, name, *args):
        """`run -d --name NAME ARGS…` (ARGS: options, image, command); returns the id.
        The name is remembered for cleanup."""
        self.track(name)
        return self.podman("run", "-d", "--pull=never", "--name", name, *args).stdout.strip()

    def track(self, name):
        """Remembers a container name (e.g. one the agent creates) for cleanup."""
        self._names.add(name)

    # ---- incidents ----

    def stop_all(self):
        """Kills every container of the store (running ones only)."""
        running = [n for c in self.containers() if c.get("State") == "running"
                   for n in (c.get("Names") or [])[:1]]
        for name in running:
            self._names.add(name)
        if running:
            self.podman("stop", "-t", "0", *running, check=False)

    def wipe_store(self, keep_storage=True):
        """Simulates "podman lost its state": stops what runs, then deletes
        libpod's database (keep_storage=True: container storage still holds
        the names, so `run --name` fails "already in use" until `rm -f -i`),
        or the whole store (keep_storage=False). The image is there after."""
        self.stop_all()
        if keep_storage:
            self._forget_database()
        else:
            self._unmount_under(self.dir)
            for d in (self.root, self.runroot, self.tmpdir):
                shutil.rmtree(d, ignore_errors=True)
        if not self.image_exists():
            self.import_image()

    def _forget_database(self):
        db = os.path.join(self.root, "libpod", "bolt_state.db")
        if os.path.exists(db):
            os.unlink(db)
        # libpod's tmp state refers to the old database; a reboot empties it too
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def lose_state_at_once(self):
        """"podman lost its state" as a crash would do it, for a supervisor
        watching: libpod's database and tmp state go, and every container's
        process (and its conmon) is SIGKILLed right after, so the loss is one
        moment rather than a stop followed by a loss (wipe_store). Container
        storage keeps the names, as with wipe_store(keep_storage=True)."""
        pids = []
        for c in self.containers():
            if c.get("State") != "running":
                continue
            name = (c.get("Names") or [""])[0]
            self._names.add(name)
            state = (self.inspect(name) or {}).get("State", {})
            pids += [p for p in (state.get("Pid"), state.get("ConmonPid")) if p]
        self._forget_database()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # ---- cleanup ----

    def cleanup(self):
        """Removes every container it knows of (tracked names and all the store
        lists), unmounts what is left and deletes the temp dir."""
        if not os.path.isdir(self.dir):
            return
        names = set(self._names)
        try:
            if os.path.isdir(self.root):
                for c in self.containers():
                    names.update((c.get("Names") or [])[:1])
        except (PodmanError, ValueError, subprocess.SubprocessError):
            pass
        for name in sorted(names):
            try:
                self.podman("rm", "-f", "-i", "-t", "0", name, check=False)
            except subprocess.SubprocessError:
                pass
        # Containers podman forgot (database deleted) may still run under runc.
        cleanup_script = os.path.join(SOURCE_DIR, "scripts", "podman-store-cleanup.sh")
        if os.path.exists(cleanup_script):
            subprocess.run([cleanup_script, self.dir], capture_output=True, timeout=120)
        self._unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def _unmount_under(path):
        """Lazily unmounts overlay and shm mounts left below path (deepest first)."""
        prefix = os.path.realpath(path) + "/"
        try:
            with open("/proc/self/mounts") as f:
                points = [line.split()[1] for line in f]
        except OSError:
            return
        points = [p.replace("\\040", " ") for p in points if p.startswith(prefix)]
        for p in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", p], capture_output=True, timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def _self_check():
    """Exercises the helper end to end and prints timings."""
    env = PodmanEnv()
    try:
        print("import: %.2f s" % env.import_seconds)
        t0 = time.monotonic()
        env.run("mcp-envcheck", "-p", "127.0.0.1::8080", env.image, "httpd", "-f", "-p", "8080")
        print("run -d: %.2f s" % (time.monotonic() - t0))
        assert env.container("mcp-envcheck")["State"] == "running"
        env.wipe_store()
        assert env.container("mcp-envcheck") is None, "still listed after wipe"
        proc = env.podman("run", "-d", "--pull=never", "--name", "mcp-envcheck", env.image, "sleep", "1",
                          check=False)
        assert "already in use" in proc.stderr, proc.stderr
        env.podman("rm", "-f", "-i", "-t", "0", "mcp-envcheck")
        env.run("mcp-envcheck", env.image, "sleep", "100")
        env.wipe_store(keep_storage=False)
        assert env.containers() == [] and env.image_exists()
        env.run("mcp-envcheck", env.image, "sleep", "100")
    finally:
        env.cleanup()
    assert not os.path.exists(env.dir)
    print("ok")


if __name__ == "__main__":
    _self_check()
