#!/usr/bin/python3
"""Cost of liveness probing (issue #10): the daemon (`mcp-agent run`) on the
fake runtime with N components (default 100), each with
[components.health] check = "tcp", interval = "1s", probing a real TCP
listener of this script on loopback.

    /usr/bin/python3 bench/liveness_bench.py [--agent build/mcp-agent]
        [--components 100] [--seconds 60] [--json FILE]

Measures, in one run: the daemon's CPU time (utime+stime from
/proc/PID/stat) over --seconds once every component is probed, as a share
of one core, with the probes counted by the listeners (accepted
connections), and the same daemon's CPU over the same time with no health
checks (the baseline). Target: below 2 % of one core. The daemon is stopped
by pid at the end, also on failure.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


class Listeners:
    """N TCP listeners on loopback; each accepts and closes, counting."""

    def __init__(self, n):
        self.socks, self.count, self.lock = [], 0, threading.Lock()
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(64)
            self.socks.append(s)
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import selectors
        sel = selectors.DefaultSelector()
        for s in self.socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        while not self.stop:
            for key, _ in sel.select(0.2):
                try:
                    c, _ = key.fileobj.accept()
                    c.close()
                    with self.lock:
                        self.count += 1
                except BlockingIOError:
                    pass

    def close(self):
        self.stop = True
        self.thread.join(2)
        for s in self.socks:
            s.close()


def service(i, port, health):
    text = "name = \"p%03d\"\n[[components]]\nname = \"p%03d\"\nimage = \"localhost/p:1\"\n" % (i, i)
    text += "ports = [\"127.0.0.1:%d:8080/tcp\"]\n" % port
    if health:
        text += "[components.health]\ncheck = \"tcp\"\nport = 8080\ninterval = \"1s\"\ntimeout = \"1s\"\n"
    return text


def measure(agent, n, seconds, health, tmp):
    d = tempfile.mkdtemp(prefix="live-", dir=tmp)
    listeners = Listeners(n)
    sock = os.path.join(d, "agent.sock")
    cfg = os.path.join(d, "mcp-agent.toml")
    with open(cfg, "w") as f:
        f.write("[agent]\ncontainer_runtime = \"fake\"\nsocket = \"%s\"\n[database]\npath = \"%s\"\n"
                "[log]\nlevel = \"warn\"\n" % (sock, os.path.join(d, "r.db")))
    files = []
    for i, port in enumerate(listeners.ports):
        p = os.path.join(d, "p%03d.toml" % i)
        with open(p, "w") as f:
            f.write(service(i, port, health))
        files.append(p)
    daemon = subprocess.Popen([agent, "-c", cfg, "run"], stderr=subprocess.DEVNULL, cwd=d)
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        r = subprocess.run([agent, "-c", cfg, "deploy", *files], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise SystemExit("deploy failed: " + r.stderr)
        time.sleep(3)  # every prober has made its first probe
        before, probes_before = cpu_ticks(daemon.pid), listeners.count
        time.sleep(seconds)
        ticks, probes = cpu_ticks(daemon.pid) - before, listeners.count - probes_before
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
        listeners.close()
        shutil.rmtree(d, ignore_errors=True)
    return {"ticks": ticks, "core_share": ticks / CLK_TCK / seconds, "probes": probes,
            "probes_per_s": probes / seconds}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", default=os.path.join(HERE, "..", "build", "mcp-agent"))
    ap.add_argument("--components", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--json")
    args = ap.parse_args()
    agent = os.path.abspath(args.agent)  # before any change of directory
    args.json = os.path.abspath(args.json) if args.json else None
    tmp = tempfile.mkdtemp(prefix="mcp-liveness-bench-")
    try:
        probed = measure(agent, args.components, args.seconds, True, tmp)
        idle = measure(agent, args.components, args.seconds, False, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"components": args.components, "seconds": args.seconds, "probed": probed, "no_health": idle,
           "target_core_share": 0.02, "met": probed["core_share"] < 0.02}
    print("components %d, %gs each run" % (args.components, args.seconds))
    print("probed     %4d ticks  %.2f %% of one core  %d probes (%.1f/s)" % (
        probed["ticks"], 100 * probed["core_share"], probed["probes"], probed["probes_per_s"]))
    print("no health  %4d ticks  %.2f %% of one core" % (idle["ticks"], 100 * idle["core_share"]))
    print("target < 2 %% of one core: %s" % ("met" if out["met"] else "NOT met"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0 if out["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
