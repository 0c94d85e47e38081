"""The base of the suites that run the daemon (`mcp-agent run`) on a private
podman store (podman_env.PodmanEnv): the store, the agent's directory, the
environment both need, a config on that store, and the CLI beside it."""
import unittest

from agent_env import AgentEnv, toml_str
from podman_env import PodmanEnv
from test_boot_podman import LiveAgent


class PodmanDaemonTest(unittest.TestCase):
    """self.pod: the store; self.agent: the agent's dir (AgentEnv); self.env:
    what the agent and podman need in their environment; self.socket: the
    agent's unix socket."""

    def setUp(self):
        self.pod = PodmanEnv()
        self.addCleanup(self.pod.cleanup)
        self.agent = AgentEnv(self.id().split(".")[-1])
        self.addCleanup(self.agent.cleanup)
        self.env = {"CONTAINERS_CONF": self.pod.conf, "TMPDIR": self.pod.env["TMPDIR"]}
        self.socket = self.agent.path("agent.sock")

    def run_daemon(self, agent=(), sections=()):
        """Writes the config ([agent] on this store plus the `agent` lines,
        [database], then the `sections` lines), starts `run` and waits for its
        boot. Returns the LiveAgent (killed at cleanup)."""
        lines = ["[agent]", 'container_runtime = "podman"',
                 "podman_args = [%s]" % ", ".join(toml_str(a) for a in self.pod.podman_args),
                 'podman_timeout = "60s"', "socket = %s" % toml_str(self.socket)]
        lines += list(agent) + ["[database]", "path = %s" % toml_str(self.agent.db)] + list(sections)
        self.agent.write("mcp-agent.toml", "\n".join(lines) + "\n")
        live = LiveAgent(self.agent, ["run"], self.env)
        self.addCleanup(live.kill)
        self.assertTrue(live.wait_for_log("boot finished", 60), live.stderr())
        return live

    def cli(self, *args, timeout=60):
        return self.agent.run(*args, timeout=timeout, env=self.env)
