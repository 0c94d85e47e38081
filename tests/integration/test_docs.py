"""Man pages and bash completion (SPEC §11): built from the command table
(`mcp-agent complete`), lint-clean under man(1), and the completion script
completes commands, flags and service names from the registry."""
import os
import subprocess
import unittest

from agent_env import AGENT_BIN, BUILD_DIR, SOURCE_DIR, AgentTestCase

MAN_DIR = os.path.join(BUILD_DIR, "man")
PAGES = ["mcp-agent.8", "mcp-agent.toml.5", "mcp-agent-policy.7"]
COMPLETION = os.path.join(SOURCE_DIR, "completion", "mcp-agent.bash")


def render(page):
    """(text, warnings) of man -l page."""
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80", MAN_KEEP_FORMATTING="")
    r = subprocess.run(["man", "--warnings", "-l", os.path.join(MAN_DIR, page)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


def words(*args):
    r = subprocess.run([AGENT_BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


class ManPages(unittest.TestCase):
    def test_pages_render_without_warnings(self):
        for page in PAGES:
            rc, text, warnings = render(page)
            self.assertEqual(rc, 0, warnings)
            self.assertEqual(warnings, "", page)
            self.assertIn("NAME", text)

    def test_agent_page_has_every_command_and_flag(self):
        _, text, _ = render("mcp-agent.8")
        for section in ("SYNOPSIS", "COMMANDS", "EXIT STATUS", "FILES", "SIGNALS", "ENVIRONMENT"):
            self.assertIn("\n" + section + "\n", text)
        commands = words("complete", "commands")
        self.assertIn("run", commands)
        self.assertNotIn("complete", commands)  # hidden
        for cmd in commands:
            self.assertRegex(text, r"\n       %s( |\n)" % cmd)
            for flag in words("complete", "flags", cmd):
                if flag != "--help":
                    self.assertIn(flag, text, cmd)

    def test_config_page_has_every_key_of_the_example(self):
        _, text, _ = render("mcp-agent.toml.5")
        with open(os.path.join(SOURCE_DIR, "examples", "mcp-agent.toml")) as f:
            for line in f:
                key = line.lstrip("# ").split(" = ", 1)[0]
                if " = " in line and key.isidentifier():
                    self.assertIn(key, text)


class ReferenceInTheRepo(unittest.TestCase):
    def test_readme_and_docs_link_only_to_files_in_the_repository(self):
        import re
        for rel in ("README.md", "docs/REFERENCE.md", "docs/GRPC_API.md"):
            with open(os.path.join(SOURCE_DIR, rel)) as f:
                text = f.read()
            self.assertNotIn("../shared", text, rel)
            for target in re.findall(r"\]\(([^)#]+)\)", text):
                if "://" in target:
                    continue
                path = os.path.normpath(os.path.join(SOURCE_DIR, os.path.dirname(rel), target))
                self.assertTrue(os.path.exists(path), "%s links to missing %s" % (rel, target))
                self.assertTrue(path.startswith(SOURCE_DIR + os.sep), "%s: %s" % (rel, target))

    def test_reference_has_every_command_and_config_key(self):
        with open(os.path.join(SOURCE_DIR, "docs", "REFERENCE.md")) as f:
            text = f.read()
        for cmd in words("complete", "commands"):
            self.assertIn("`%s" % cmd, text)
            for flag in words("complete", "flags", cmd):
                if flag != "--help":
                    self.assertIn(flag, text, cmd)
        with open(os.path.join(SOURCE_DIR, "examples", "mcp-agent.toml")) as f:
            for line in f:
                key = line.lstrip("# ").split(" = ", 1)[0]
                if " = " in line and key.isidentifier():
                    self.assertIn(key, text)


class Completion(AgentTestCase):
    def complete(self, *line):
        """COMPREPLY for the command line (the last word is the one completed)."""
        script = ('source %s\nCOMP_WORDS=("$@")\nCOMP_CWORD=$(($# - 1))\n'
                  '_mcp_agent\nprintf "%%s\\n" "${COMPREPLY[@]}"\n') % COMPLETION
        r = subprocess.run(["bash", "--norc", "-c", script, "bash", AGENT_BIN, *line],
                           cwd=self.env.dir, env=self.env.env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.split()

    def test_commands_and_flags(self):
        self.assertEqual(self.complete("st"), ["start", "stop", "status"])
        self.assertEqual(self.complete("events", "--f"), ["--follow"])

    def test_service_names_from_the_registry(self):
        self.env.write_config()
        self.env.write("alpha.toml", 'name = "alpha"\n\n[[components]]\nname = "web"\n'
                       'image = "localhost/alpha:1"\n')
        self.env.write("alps.toml", 'name = "alps"\n\n[[components]]\nname = "alps"\n'
                       'image = "localhost/alps:1"\n')
        r = self.env.run("deploy", self.env.path("alpha.toml"), self.env.path("alps.toml"))
        self.assertEqual(r.rc, 0, r.stderr)
        got = self.complete("-c", self.env.config, "restart", "al")
        self.assertEqual(sorted(got), ["alpha", "alpha/web", "alps", "alps/alps"])
        self.assertEqual(self.complete("-c", self.env.config, "stop", "alp"),
                         ["alpha", "alpha/web", "alps", "alps/alps"])

    def test_no_registry_completes_nothing_and_creates_none(self):
        self.env.write_config()
        self.assertEqual(self.complete("-c", self.env.config, "status", ""), [])
        self.assertFalse(os.path.exists(self.env.db))


if __name__ == "__main__":
    unittest.main()
