"""deploy pulls a missing image from a real image registry on loopback
(issue 13.6, SPEC §5): Debian's docker-registry started here with a temp
storage dir and a generated config on 127.0.0.1, the test image pushed to it
with `podman push --tls-verify=false`, then deploy of an image not yet
present pulls and runs it; `[agent] pull = "never"` refuses with a clear
error; with the registry stopped (by pid) the pull fails, bounded and clear;
recover never pulls."""
import os
import shutil
import signal
import socket
import subprocess
import time
import unittest
import urllib.request

from agent_env import AgentEnv, toml_str
from podman_env import PodmanEnv, podman_missing_reason

REGISTRY = shutil.which("docker-registry")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def skip_reason():
    return podman_missing_reason() or (None if REGISTRY else
                                       "docker-registry (Debian docker-registry) not installed")


class LoopbackRegistry:
    """docker-registry serving a temp dir on 127.0.0.1:port, stopped by pid."""

    def __init__(self, base):
        self.port = free_port()
        self.dir = os.path.join(base, "registry")
        os.makedirs(os.path.join(self.dir, "storage"))
        self.config = os.path.join(self.dir, "config.yml")
        with open(self.config, "w") as f:
            f.write("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    "    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%d\n"
                    % (os.path.join(self.dir, "storage"), self.port))
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen([REGISTRY, "serve", self.config], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.address = "127.0.0.1:%d" % self.port
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen("http://%s/v2/" % self.address, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("docker-registry did not come up on %s" % self.address)
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


@unittest.skipIf(skip_reason(), skip_reason() or "")
class PullOnDeploy(unittest.TestCase):
    def setUp(self):
        self.pod = PodmanEnv()
        self.addCleanup(self.pod.cleanup)
        self.agent = AgentEnv(self.id())
        self.addCleanup(self.agent.cleanup)
        self.registry = LoopbackRegistry(self.agent.dir)
        self.addCleanup(self.registry.stop)
        self.image = "%s/mcp/pulltest:1" % self.registry.address
        self.pod.podman("tag", self.pod.image, self.image)
        self.pod.podman("push", "--tls-verify=false", self.image)
        self.pod.podman("rmi", self.image)  # only the tag: the test image stays
        self.assertFalse(self.pod.image_exists(self.image))
        # podman reaches the loopback registry over plain HTTP
        self.registries_conf = self.agent.write(
            "registries.conf", '[[registry]]\nlocation = "%s"\ninsecure = true\n' % self.registry.address)
        self.write_config("missing")
        self.agent.write("app.toml", 'name = "pulled"\n\n[[components]]\nname = "pulled"\n'
                         'image = %s\ncmd = ["sleep", "600"]\n' % toml_str(self.image))
        self.addCleanup(lambda: self.pod.podman("rm", "-f", "-t", "0", "pulled", check=False))

    def write_config(self, pull):
        self.agent.write("mcp-agent.toml", "\n".join([
            "[agent]",
            'container_runtime = "podman"',
            "podman_args = [%s]" % ", ".join(toml_str(a) for a in self.pod.podman_args),
            'podman_timeout = "60s"',
            'pull = "%s"' % pull,
            "[database]",
            "path = %s" % toml_str(self.agent.db),
            "",
        ]))

    def run_agent(self, *args, timeout=120):
        return self.agent.run(*args, timeout=timeout, env={
            "CONTAINERS_CONF": self.pod.conf, "TMPDIR": self.pod.env["TMPDIR"],
            "CONTAINERS_REGISTRIES_CONF": self.registries_conf, "MCP_AGENT_LOCAL": "1"})

    def test_deploy_pulls_a_missing_image_and_runs_it(self):
        r = self.run_agent("deploy", self.agent.path("app.toml"))
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertIn("pulling image " + self.image, r.stderr)
        self.assertIn("pulled image " + self.image, r.stderr)
        self.assertTrue(self.pod.image_exists(self.image))
        self.assertEqual(self.pod.inspect("pulled")["State"]["Status"], "running")

    def test_pull_never_refuses_with_a_clear_error(self):
        self.write_config("never")
        r = self.run_agent("deploy", self.agent.path("app.toml"))
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        self.assertIn('image %s is not present and [agent] pull = "never"' % self.image, r.stdout)
        self.assertFalse(self.pod.image_exists(self.image))

    def test_registry_stopped_is_a_bounded_clear_error(self):
        self.registry.stop()
        start = time.monotonic()
        r = self.run_agent("deploy", self.agent.path("app.toml"))
        took = time.monotonic() - start
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        self.assertIn("cannot pull " + self.image, r.stdout)
        self.assertIn("registry unreachable", r.stdout)
        self.assertLess(took, 60, "bounded by podman_timeout")
        self.assertIsNone(self.pod.container("pulled"))

    def test_recover_never_pulls(self):
        r = self.run_agent("deploy", self.agent.path("app.toml"))
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.pod.podman("rm", "-f", "-t", "0", "pulled")
        self.pod.podman("rmi", self.image)
        r = self.run_agent("recover")
        self.assertEqual(r.rc, 1, r.stdout + r.stderr)
        self.assertIn("no such image", r.stdout)
        self.assertFalse(self.pod.image_exists(self.image))


if __name__ == "__main__":
    unittest.main()
