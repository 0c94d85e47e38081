"""libsystemd and libmicrohttpd are loaded on first use, like libcurl: the
binary does not link them (no DT_NEEDED), a plain command (`version`) and a
daemon run without NOTIFY_SOCKET and without `[metrics] listen` never map
them nor the libraries they bring (libgcrypt, GnuTLS, …: read from
/proc/PID/maps of the running daemon), and each is mapped once its feature is
on. A library that is there but cannot be loaded is a clear error. Fake
runtime: no podman."""
import os
import re
import socket
import subprocess
import unittest

from agent_env import AGENT_BIN, AgentTestCase
from test_daemon import Daemon, daemon_config, free_port
from test_metrics import metrics_config, scrape

LAZY = ("libsystemd.so", "libmicrohttpd.so", "libcurl.so")
# what Debian's libsystemd0 and libmicrohttpd12 link and nothing else here does
BROUGHT = ("libgcrypt.so", "libgpg-error.so", "liblzma.so", "libzstd.so", "liblz4.so",
           "libcap.so", "libgnutls.so", "libp11-kit.so", "libidn2.so", "libunistring.so",
           "libtasn1.so", "libnettle.so", "libhogweed.so", "libgmp.so", "libffi.so")
SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def mapped_libraries(pid):
    """The basenames of the shared objects mapped by pid."""
    names = set()
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and ".so" in parts[5]:
                names.add(os.path.basename(parts[5]))
    return names


def matching(names, prefixes):
    return sorted(n for n in names if n.startswith(prefixes))


class LazyCase(AgentTestCase):
    def setUp(self):
        super().setUp()
        # the test's own environment (a systemd unit, a CI) must not turn them on
        saved = {k: os.environ.pop(k) for k in SYSTEMD_VARS if k in os.environ}
        self.addCleanup(os.environ.update, saved)

    def daemon(self, extra_env=None):
        d = Daemon(self.env, extra_env=extra_env)
        self.addCleanup(d.kill)
        return d.wait_ready()

    def stop(self, d):
        self.assertEqual(d.stop(), 0, d.log())
        self.assertIsNone(d.sanitizer_report())


class NotLinked(LazyCase):
    def test_the_binary_does_not_need_them(self):
        out = subprocess.run(["readelf", "-d", AGENT_BIN], stdout=subprocess.PIPE, text=True,
                             check=True, timeout=30).stdout
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+)\]", out)
        self.assertIn("libsqlite3.so.0", needed)  # the parse found the list
        self.assertEqual(matching(needed, LAZY), [], needed)

    def test_version_loads_neither(self):
        # ld.so reports every object it loads, at start and by dlopen, on stderr
        self.env.write_config()
        r = self.env.run("version", config=False, env={"LD_DEBUG": "files"})
        self.assertEqual(r.rc, 0, r.stderr)
        loaded = set(re.findall(r"file=(\S+)\s+\[\d+\];\s+(?:needed|dynamically loaded) by",
                                r.stderr))
        self.assertIn("libsqlite3.so.0", loaded)  # the parse found the list
        self.assertEqual(matching(loaded, LAZY + BROUGHT), [], sorted(loaded))
        self.assertIn("mcp-agent", r.stdout)


class IdleDaemon(LazyCase):
    def test_run_without_notify_socket_or_metrics_maps_neither(self):
        daemon_config(self.env)
        d = self.daemon()
        d.wait_boot_done()
        libs = mapped_libraries(d.pid)
        self.assertTrue(matching(libs, ("libsqlite3.so",)), libs)  # the maps were read
        self.assertEqual(matching(libs, LAZY + BROUGHT), [], sorted(libs))
        self.stop(d)

    def test_a_watchdog_for_another_pid_loads_nothing(self):
        daemon_config(self.env)
        d = self.daemon({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"})
        d.wait_boot_done()
        self.assertEqual(matching(mapped_libraries(d.pid), LAZY + BROUGHT), [])
        self.stop(d)


class OnFirstUse(LazyCase):
    def test_notify_socket_loads_libsystemd_only(self):
        sock_path = self.env.path("notify.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(sock_path)
            sock.settimeout(20)
            daemon_config(self.env)
            d = self.daemon({"NOTIFY_SOCKET": sock_path})
            while not sock.recv(4096).startswith(b"READY=1"):
                pass
            libs = mapped_libraries(d.pid)
            self.assertEqual(len(matching(libs, ("libsystemd.so.0",))), 1, libs)
            self.assertEqual(matching(libs, ("libmicrohttpd.so", "libgnutls.so")), [])
            self.stop(d)

    def test_watchdog_usec_alone_loads_libsystemd(self):
        daemon_config(self.env)
        d = self.daemon({"WATCHDOG_USEC": "10000000"})
        d.wait_boot_done()
        libs = mapped_libraries(d.pid)
        self.assertEqual(len(matching(libs, ("libsystemd.so.0",))), 1, libs)
        self.stop(d)

    def test_metrics_listen_loads_libmicrohttpd_only(self):
        port = free_port()
        metrics_config(self.env, "127.0.0.1:%d" % port)
        d = self.daemon()
        self.assertEqual(scrape(port)[0], 200)
        libs = mapped_libraries(d.pid)
        self.assertEqual(len(matching(libs, ("libmicrohttpd.so.12",))), 1, libs)
        self.assertEqual(matching(libs, ("libsystemd.so", "libgcrypt.so")), [])
        self.stop(d)


class CannotLoad(LazyCase):
    """A library found first on LD_LIBRARY_PATH that is not an ELF object."""

    def broken(self, soname):
        self.env.write("broken-libs/" + soname, "not a shared object\n")
        return {"LD_LIBRARY_PATH": self.env.path("broken-libs")}

    def test_metrics_say_why_and_the_daemon_does_not_start(self):
        metrics_config(self.env, "127.0.0.1:%d" % free_port())
        r = self.env.run("run", timeout=30, env=self.broken("libmicrohttpd.so.12"))
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertIn("[metrics] listen: metrics: cannot load libmicrohttpd: ", r.stderr)
        self.assertIn("libmicrohttpd.so.12", r.stderr)

    def test_notify_says_why_once_and_the_daemon_serves(self):
        sock_path = self.env.path("notify.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(sock_path)
            daemon_config(self.env)
            env = dict(self.broken("libsystemd.so.0"), NOTIFY_SOCKET=sock_path)
            d = self.daemon(env)
            d.wait_boot_done()
            sock.settimeout(0.5)
            with self.assertRaises(socket.timeout):
                sock.recv(4096)
            self.stop(d)
        log = d.log()
        self.assertEqual(log.count("cannot load libsystemd"), 1, log)
        self.assertIn("libsystemd.so.0", log)


if __name__ == "__main__":
    unittest.main()
