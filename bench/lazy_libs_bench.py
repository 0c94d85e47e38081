#!/usr/bin/python3
"""lazy_libs_bench: what loading libsystemd and libmicrohttpd on first use
saves (docs/BENCHMARKS.md, "libsystemd and libmicrohttpd on first use").

For each binary given (--agent, and --before for a build of the code before
the change): the start-up of `mcp-agent version` (hyperfine -N), and the
VmRSS / RssAnon / RssFile and number of mapped shared objects of an idle
daemon (`run`, fake runtime, empty registry) in four modes: plain (no
NOTIFY_SOCKET, no [metrics] listen), notify (NOTIFY_SOCKET set to a bound
datagram socket), metrics ([metrics] listen on loopback) and both. The
daemons of one round run side by side and are read after --idle seconds;
the figure is the median over --rounds. Every wait is bounded; what is
started is stopped by pid.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
MODES = ("plain", "notify", "metrics", "both")
SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def startup_ms(agent, runs, podman=True):
    """(mean, median) ms of `agent version` from hyperfine. `version` runs
    `podman --version`; without podman on PATH what is left is the agent's
    own start-up (dynamic linking, Lua state)."""
    out = tempfile.mktemp(suffix=".json")
    env = dict(os.environ) if podman else dict(os.environ, PATH="/nonexistent")
    subprocess.run([shutil.which("hyperfine"), "-N", "--warmup", "20", "--runs", str(runs),
                    "--export-json", out, "%s version" % agent], check=True, env=env,
                   stdout=subprocess.DEVNULL, timeout=600)
    with open(out) as f:
        r = json.load(f)["results"][0]
    os.unlink(out)
    return r["mean"] * 1e3, r["median"] * 1e3


class Daemon:
    def __init__(self, agent, mode, d):
        self.dir = os.path.join(d, mode)
        os.makedirs(self.dir)
        cfg = os.path.join(self.dir, "mcp-agent.toml")
        text = ('[agent]\ncontainer_runtime = "fake"\nsocket = "%s"\n[database]\npath = "%s"\n'
                % (os.path.join(self.dir, "agent.sock"), os.path.join(self.dir, "registry.db")))
        if mode in ("metrics", "both"):
            text += '[metrics]\nlisten = "127.0.0.1:%d"\n' % free_port()
        with open(cfg, "w") as f:
            f.write(text)
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
        self.notify = None
        if mode in ("notify", "both"):
            self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.notify.bind(os.path.join(self.dir, "notify.sock"))
            env["NOTIFY_SOCKET"] = os.path.join(self.dir, "notify.sock")
        self.log = os.path.join(self.dir, "daemon.log")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([agent, "-c", cfg, "run"], cwd=self.dir, env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=log, start_new_session=True)

    def wait_booted(self, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with open(self.log) as f:
                if "boot finished" in f.read():
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit("daemon did not start: " + open(self.log).read())

    def memory(self):
        fields = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    fields[key] = int(rest.split()[0])
        libs = set()
        with open("/proc/%d/maps" % self.proc.pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and ".so" in parts[5]:
                    libs.add(parts[5])
        fields["libs"] = len(libs)
        return fields

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.notify:
            self.notify.close()


def idle_round(binaries, idle):
    d = tempfile.mkdtemp(prefix="lazy-libs-bench-")
    daemons = {}
    try:
        for label, agent in binaries.items():
            for mode in MODES:
                daemons[(label, mode)] = Daemon(agent, mode, os.path.join(d, label))
        for dm in daemons.values():
            dm.wait_booted()
        time.sleep(idle)
        return {key: dm.memory() for key, dm in daemons.items()}
    finally:
        for dm in daemons.values():
            dm.stop()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agent", default=os.path.join(SOURCE, "build", "mcp-agent"))
    ap.add_argument("--before", help="a build of the code before the change, to compare")
    ap.add_argument("--idle", type=float, default=10, help="seconds idle before reading RSS")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=300, help="hyperfine runs of `version`")
    ap.add_argument("--json")
    a = ap.parse_args()
    binaries = {"after": os.path.abspath(a.agent)}
    if a.before:
        binaries = {"before": os.path.abspath(a.before), **binaries}
    out = {"startup": {}, "idle": {}}
    for podman in (True, False):
        for label, agent in binaries.items():
            mean, median = startup_ms(agent, a.runs, podman)
            key = "%s/%s" % (label, "version" if podman else "version-no-podman")
            out["startup"][key] = {"mean_ms": round(mean, 2), "median_ms": round(median, 2)}
            print("%-6s %-18s mean %.2f ms, median %.2f ms" % (label, key.split("/")[1], mean,
                                                               median))
    rounds = [idle_round(binaries, a.idle) for _ in range(a.rounds)]
    for label in binaries:
        for mode in MODES:
            per = [r[(label, mode)] for r in rounds]
            fig = {k: statistics.median(p[k] for p in per) for k in per[0]}
            out["idle"]["%s/%s" % (label, mode)] = fig
            print("%-6s %-7s VmRSS %6.2f MiB  RssAnon %5.2f  RssFile %5.2f  %d .so" %
                  (label, mode, fig["VmRSS"] / 1024, fig["RssAnon"] / 1024,
                   fig["RssFile"] / 1024, fig["libs"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
