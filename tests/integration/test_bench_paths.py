"""Every bench/*.py takes the relative paths its README shows (issue 14, item 12).

Each benchmark is run from a scratch directory with `--agent` (and `--json`)
given relative to it. The agent is a stub that records how it was called and
then fails, so every benchmark stops at its first use of the agent after a
change of directory: what matters is that the stub ran (the path was resolved
before) and that no FileNotFoundError came out.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MCP_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
BENCH = os.path.join(SOURCE_DIR, "bench")

# Succeeds at everything but running the daemon, which it refuses: the benchmark then gives up.
STUB = """#!/bin/sh
echo "$PWD $*" >> "$STUB_LOG"
for a in "$@"; do
  if [ "$a" = run ]; then echo "stub agent: no daemon here" >&2; exit 1; fi
done
exit 0
"""


class BenchPathsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bench-paths-")
        os.makedirs(os.path.join(self.tmp, "build"))
        self.stub = os.path.join(self.tmp, "build", "mcp-agent")
        with open(self.stub, "w") as f:
            f.write(STUB)
        os.chmod(self.stub, 0o755)
        self.log = os.path.join(self.tmp, "calls.log")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_bench(self, script, *extra):
        env = dict(os.environ, STUB_LOG=self.log, MCP_AGENT_BIN="")
        env.pop("MCP_AGENT_BIN")
        proc = subprocess.run(
            ["/usr/bin/python3", os.path.join(BENCH, script), "--agent", "build/mcp-agent",
             "--json", "out.json", *extra],
            cwd=self.tmp, env=env, capture_output=True, text=True, timeout=120)
        out = proc.stdout + proc.stderr
        self.assertNotIn("FileNotFoundError", out)
        self.assertNotIn("No such file or directory: 'build/mcp-agent'", out)
        self.assertTrue(os.path.exists(self.log), f"{script} never ran the agent:\n{out}")
        with open(self.log) as f:
            return proc, f.read().splitlines(), out

    def test_api_bench_starts_the_daemon_from_its_temp_dir(self):
        proc, calls, out = self.run_bench("api_bench.py", "--seconds", "1", "--grpcio-seconds", "1",
                                          "--idle", "1")
        runs = [c for c in calls if c.endswith(" run")]
        self.assertEqual(len(runs), 1, out)
        self.assertNotEqual(runs[0].split()[0], self.tmp)  # it ran in the daemon's own temp dir
        self.assertIn("daemon did not boot", out)

    def test_liveness_bench_resolves_its_agent(self):
        proc, calls, out = self.run_bench("liveness_bench.py", "--components", "1", "--seconds", "1")
        self.assertTrue(any(c.endswith(" run") for c in calls), out)


if __name__ == "__main__":
    unittest.main()
