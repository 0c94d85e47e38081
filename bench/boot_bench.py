#!/usr/bin/python3
"""Boot benchmark (issue #3, item 5): `mcp-agent boot` on real podman.

    /usr/bin/python3 bench/boot_bench.py [--reps 3] [--agent build-bench/mcp-agent]

Builds an isolated podman store (tests/integration/podman_env.py), stores
3 stages x 8 services in a registry (busybox httpd on pinned host ports,
some listening only after a delay), then measures in the same run,
alternating the order, N repetitions of:

  default   `mcp-agent boot --json` with the built-in policies/boot.lua
  seed      the same with [policy] dir = the seed-compatible example (a copy
            with one log line added so its detection latency can be read)
  lower     the lower bound: per stage, `podman run -d` of the stage's 8
            containers at once (the agent's arguments) until the slowest
            listens, summed over stages

A poller thread records when each port first accepts (a connect every 2 ms
to every port whose container podman has created, see PortWatch); the
detection latency of a service is the `time=` of the agent's "<name> is
healthy" log line minus that moment (both wall clock, ms). Containers are removed between runs; every container and the
store are removed at the end, also on failure or Ctrl-C.

Prints medians, ratios (default/seed, default/lower) and detection latency
(median, p90) per policy; --json FILE also writes every figure.
"""

import argparse
import calendar
import errno
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))

from podman_env import PodmanEnv  # noqa: E402

STAGES = 3
PER_STAGE = 8
CONTAINER_PORT = 8080
# Seconds before a service's httpd listens, by its index in the stage.
DELAYS = (0, 0, 0, 0, 0.5, 0.5, 1, 1)
STAGE_TIMEOUT = "60s"
AGENT_TIMEOUT = 300  # seconds for one boot; a hang fails the benchmark
POLL_INTERVAL = 0.002
SEED_DIR = os.path.join(SOURCE_DIR, "policies", "examples", "seed-compatible")
# The seed example logs nothing per service: its bench copy logs this after the
# line below, in the same words as boot.lua, so both are measured the same way.
SEED_ANCHOR = "res.time_to_healthy = agent.clock.now() - started\n"
SEED_LOG = 'agent.log.info(name .. " is healthy", { service = name })\n'


class BenchError(RuntimeError):
    pass


# ---- the services ----

def service_names():
    """[[names of stage 1], [stage 2], ...]"""
    return [["bs%d-%02d" % (s + 1, i + 1) for i in range(PER_STAGE)] for s in range(STAGES)]


def service_cmd(index):
    delay = DELAYS[index % len(DELAYS)]
    httpd = "httpd -f -p %d" % CONTAINER_PORT
    if delay:
        return ["sh", "-c", "sleep %g; exec %s" % (delay, httpd)]
    return httpd.split()


def toml_list(items):
    return "[" + ", ".join(json.dumps(x) for x in items) + "]"


def service_toml(name, image, host_port, cmd):
    # One component named like the service: its container is called `name`.
    return "\n".join([
        'name = "%s"' % name,
        "active = true",
        "[[components]]",
        'name = "%s"' % name,
        'image = "%s"' % image,
        'ports = ["127.0.0.1:%d:%d/tcp"]' % (host_port, CONTAINER_PORT),
        "cmd = %s" % toml_list(cmd),
        "",
    ])


class Layout:
    """Names, ports and commands of the benchmark's services."""

    def __init__(self, port_base):
        self.stages = service_names()
        self.port = {}
        self.cmd = {}
        n = 0
        for stage in self.stages:
            for i, name in enumerate(stage):
                self.port[name] = port_base + n
                self.cmd[name] = service_cmd(i)
                n += 1

    def all_names(self):
        return [n for stage in self.stages for n in stage]


def check_ports_free(ports):
    for p in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))
        except OSError as e:
            raise BenchError("port %d is taken (%s): choose another --port-base" % (p, e))
        finally:
            s.close()


def accepts(port, timeout=0.05):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


# ---- the poller ----

class PortWatch:
    """When does each port first accept? One thread, independent of the
    agent: every POLL_INTERVAL it reads new lines of podman's events file and
    arms the port of every container that was just *created* (well before its
    process can listen), then tries a non-blocking connect to every armed port
    that has not accepted yet, recording the first success (time.time(), wall
    clock). Unarmed ports are tried every FALLBACK_INTERVAL only, as a safety
    net (`unarmed_accepts` counts ports found that way: it should stay 0).
    Polling all 24 ports every 2 ms from 24 threads took a whole core of the
    two, slowing podman itself; this keeps the 2 ms resolution where it
    matters for a fraction of that."""

    FALLBACK_INTERVAL = 0.1

    def __init__(self, events_log, port_of):
        self.events_log = events_log
        self.port_of = dict(port_of)  # container name -> host port
        self.first_accept = {}        # port -> wall time
        self.armed_at = {}            # port -> wall time
        self.unarmed_accepts = 0
        self._pending = {}            # port -> socket with a connect in progress
        self._stop = threading.Event()
        self._pos = os.path.getsize(events_log) if os.path.exists(events_log) else 0
        self._partial = ""
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _read_events(self):
        try:
            size = os.path.getsize(self.events_log)
        except OSError:
            return
        if size < self._pos:  # rotated
            self._pos = 0
        if size == self._pos:
            return
        with open(self.events_log, "rb") as f:
            f.seek(self._pos)
            data = f.read(size - self._pos)
        self._pos += len(data)
        text = self._partial + data.decode(errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        now = time.time()
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("Type") == "container" and ev.get("Status") == "create":
                port = self.port_of.get(ev.get("Name"))
                if port is not None and port not in self.first_accept:
                    self.armed_at.setdefault(port, now)

    def _try(self, port, now):
        """One connect attempt (or a look at the one in progress)."""
        s = self._pending.pop(port, None)
        if s is not None:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                try:
                    s.getpeername()
                    self.first_accept[port] = now
                    s.close()
                    return True
                except OSError:  # still connecting
                    self._pending[port] = s
                    return False
            s.close()
            return False
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err == 0:
            self.first_accept[port] = time.time()
            s.close()
            return True
        if err in (errno.EINPROGRESS, errno.EAGAIN):
            self._pending[port] = s
        else:
            s.close()
        return False

    def _loop(self):
        last_fallback = 0.0
        while not self._stop.is_set():
            t0 = time.time()
            self._read_events()
            fallback = t0 - last_fallback >= self.FALLBACK_INTERVAL
            if fallback:
                last_fallback = t0
            for port in self.port_of.values():
                if port in self.first_accept:
                    continue
                armed = port in self.armed_at
                if (armed or fallback) and self._try(port, time.time()) and not armed:
                    self.unarmed_accepts += 1
            left = POLL_INTERVAL - (time.time() - t0)
            if left > 0:
                self._stop.wait(left)

    def wait_all(self, ports, deadline):
        """True when every port accepted before the monotonic deadline."""
        while time.monotonic() < deadline:
            if all(p in self.first_accept for p in ports):
                return True
            time.sleep(0.002)
        return False

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        for s in self._pending.values():
            s.close()
        self._pending.clear()

    def stats(self):
        lead = [self.first_accept[p] - self.armed_at[p] for p in self.first_accept if p in self.armed_at]
        return {"unarmed_accepts": self.unarmed_accepts,
                "min_arm_lead_ms": round(1000 * min(lead), 1) if lead else None}


# ---- the agent ----

LOG_RE = re.compile(r'^time=(\S+) level=\S+ msg="?(\S+) is healthy"?')


def log_time(stamp):
    """Epoch seconds of an agent `time=` stamp (UTC, ms)."""
    base, frac = stamp.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + int(frac) / 1000.0


def healthy_times(stderr):
    """container name -> wall time of its "is healthy" log line."""
    out = {}
    for line in stderr.splitlines():
        m = LOG_RE.match(line)
        if m and m.group(2) not in out:
            out[m.group(2)] = log_time(m.group(1))
    return out


class Bench:
    def __init__(self, args):
        self.args = args
        self.layout = Layout(args.port_base)
        self.env = None
        self.dir = None
        self.kinds = ["default", "seed", "lower"] + (["before"] if args.before else [])
        self.results = {k: [] for k in self.kinds}

    # ---- setup ----

    def setup(self):
        check_ports_free(self.layout.port.values())
        self.env = PodmanEnv(prefix="mcp-bench-")
        self.dir = tempfile.mkdtemp(prefix="mcp-bench-cfg-", dir="/tmp")
        svc_dir = os.path.join(self.dir, "services")
        os.makedirs(svc_dir)
        files = []
        for name in self.layout.all_names():
            path = os.path.join(svc_dir, name + ".toml")
            with open(path, "w") as f:
                f.write(service_toml(name, self.env.image, self.layout.port[name], self.layout.cmd[name]))
            files.append(path)
            self.env.track(name)
        seed_dir = os.path.join(self.dir, "seed-policy")
        os.makedirs(seed_dir, mode=0o755)
        self.write_seed_policy(os.path.join(seed_dir, "boot.lua"))
        db = os.path.join(self.dir, "registry.db")
        self.configs = {
            "default": self.write_config("default.toml", db, None),
            "seed": self.write_config("seed.toml", db, seed_dir),
        }
        if self.args.before:
            self.configs["before"] = self.write_config("before.toml", db, self.args.before)
        # Store the definitions without starting anything: deploy on the fake runtime.
        fake = self.write_config("fake.toml", db, None, runtime="fake")
        self.agent([fake, "deploy"] + files, check=True)

    def write_seed_policy(self, path):
        with open(os.path.join(SEED_DIR, "boot.lua")) as f:
            text = f.read()
        if text.count(SEED_ANCHOR) != 1:
            raise BenchError("seed-compatible boot.lua changed: cannot find %r once" % SEED_ANCHOR)
        indent = re.search(r"\n([ \t]*)" + re.escape(SEED_ANCHOR), text).group(1)
        text = text.replace(SEED_ANCHOR, SEED_ANCHOR + indent + SEED_LOG)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)

    def write_config(self, fname, db, policy_dir, runtime="podman"):
        lines = [
            "[agent]",
            'node_name = "bench"',
            'container_runtime = "%s"' % runtime,
            "podman_args = %s" % toml_list(self.env.podman_args),
            'port_range = "%d-%d"' % (self.args.port_base + 100, self.args.port_base + 199),
            # no daemon answers here: the CLI works on the registry itself
            "socket = %s" % json.dumps(os.path.join(self.dir, "agent.sock")),
            "[database]",
            "path = %s" % json.dumps(db),
            "[log]",
            'level = "info"',
        ]
        if policy_dir:
            lines += ["[policy]", "dir = %s" % json.dumps(policy_dir)]
        for i, stage in enumerate(self.layout.stages):
            lines += ["[[boot.sequence]]",
                      'name = "stage%d"' % (i + 1),
                      "services = %s" % toml_list(stage),
                      'timeout = "%s"' % STAGE_TIMEOUT,
                      'health = "tcp"']
        path = os.path.join(self.dir, fname)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def agent(self, argv, check=False, timeout=AGENT_TIMEOUT):
        full = [self.args.agent, "-c"] + argv
        proc = subprocess.run(full, env=self.env.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        if check and proc.returncode != 0:
            raise BenchError("%s: exit %d\n%s%s" % (" ".join(full), proc.returncode, proc.stdout, proc.stderr))
        return proc

    # ---- between runs ----

    def wipe_containers(self):
        self.env.podman("rm", "-a", "-f", "-t", "0", timeout=120)
        ports = list(self.layout.port.values())
        deadline = time.monotonic() + 30
        while any(accepts(p) for p in ports):
            if time.monotonic() > deadline:
                raise BenchError("ports still answer 30 s after removing every container")
            time.sleep(0.05)

    # ---- the three measurements ----

    def port_watch(self):
        events = os.path.join(self.env.tmpdir, "events", "events.log")
        return PortWatch(events, self.layout.port)

    def run_agent(self, kind):
        poller = self.port_watch().start()
        try:
            t0 = time.monotonic()
            proc = self.agent([self.configs[kind], "boot", "--json"])
            wall = time.monotonic() - t0
        finally:
            poller.stop()
        if self.args.logs:
            self.save_log(kind, proc.stderr)
        if proc.returncode != 0:
            raise BenchError("%s boot: exit %d\n%s" % (kind, proc.returncode, proc.stderr[-4000:]))
        report = json.loads(proc.stdout)
        if not report.get("healthy"):
            raise BenchError("%s boot not healthy:\n%s" % (kind, proc.stdout[-4000:]))
        logged = healthy_times(proc.stderr)
        latency = {}
        for name in self.layout.all_names():
            opened = poller.first_accept.get(self.layout.port[name])
            if name not in logged or opened is None:
                raise BenchError("%s boot: no healthy line or accept for %s\n%s" % (kind, name, proc.stderr[-4000:]))
            latency[name] = logged[name] - opened
        return {"wall": wall, "latency": latency, "watch": poller.stats()}

    def save_log(self, kind, text):
        os.makedirs(self.args.logs, exist_ok=True)
        n = len(self.results[kind]) + 1
        with open(os.path.join(self.args.logs, "%s-%d.log" % (kind, n)), "w") as f:
            f.write(text)

    def run_lower(self):
        poller = self.port_watch().start()
        procs = []
        stage_times = []
        try:
            for stage in self.layout.stages:
                t0 = time.monotonic()
                wall0 = time.time()
                for name in stage:
                    argv = [self.env.podman_bin] + self.env.podman_args + [
                        "run", "-d", "--pull=never", "--name", name,
                        "-p", "127.0.0.1:%d:%d/tcp" % (self.layout.port[name], CONTAINER_PORT),
                        self.env.image] + self.layout.cmd[name]
                    procs.append(subprocess.Popen(argv, env=self.env.env, stdin=subprocess.DEVNULL,
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
                stage_ports = [self.layout.port[n] for n in stage]
                if not poller.wait_all(stage_ports, t0 + 120):
                    raise BenchError("lower bound: stage %s did not listen within 120 s" % stage)
                stage_times.append(max(poller.first_accept[p] for p in stage_ports) - wall0)
        finally:
            poller.stop()
            for p in procs:
                try:
                    _, err = p.communicate(timeout=120)
                except subprocess.TimeoutExpired:
                    p.kill()
                    err = b""
                if p.returncode:
                    raise BenchError("lower bound: podman run failed: %s" % err.decode(errors="replace"))
        return {"wall": sum(stage_times), "stages": stage_times, "watch": poller.stats()}

    def measure(self):
        kinds = self.kinds
        for rep in range(self.args.reps):
            k = rep % len(kinds)
            order = kinds[k:] + kinds[:k]
            for kind in order:
                self.wipe_containers()
                res = self.run_lower() if kind == "lower" else self.run_agent(kind)
                self.results[kind].append(res)
                extra = ""
                if "latency" in res:
                    lat = sorted(res["latency"].values())
                    extra = "  detection median %.0f ms, p90 %.0f ms" % (
                        1000 * statistics.median(lat), 1000 * percentile(lat, 90))
                w = res["watch"]
                if w["unarmed_accepts"]:
                    extra += "  WARNING: %d ports accepted before podman logged their create" % (
                        w["unarmed_accepts"])
                print("rep %d %-8s %6.2f s%s" % (rep + 1, kind, res["wall"], extra), flush=True)

    def cleanup(self):
        if self.env:
            self.env.cleanup()
        if self.dir:
            subprocess.run(["rm", "-rf", self.dir], timeout=60)

    # ---- the summary ----

    def summary(self):
        med = {k: statistics.median(r["wall"] for r in v) for k, v in self.results.items()}
        out = {
            "machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())},
            "layout": {"stages": STAGES, "per_stage": PER_STAGE, "delays": DELAYS, "reps": self.args.reps},
            "median_wall_s": med,
            "ratio_default_over_seed": med["default"] / med["seed"],
            "ratio_default_over_lower": med["default"] / med["lower"],
            "ratio_seed_over_lower": med["seed"] / med["lower"],
            "ratio_before_over_seed": med["before"] / med["seed"] if "before" in med else None,
            "ratio_before_over_lower": med["before"] / med["lower"] if "before" in med else None,
            "detection_ms": {},
            "runs": self.results,
        }
        for kind in [k for k in self.kinds if k != "lower"]:
            lat = sorted(v for r in self.results[kind] for v in r["latency"].values())
            out["detection_ms"][kind] = {"median": 1000 * statistics.median(lat),
                                         "p90": 1000 * percentile(lat, 90),
                                         "max": 1000 * lat[-1], "samples": len(lat)}
        return out


def percentile(sorted_values, pct):
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, int(round(pct / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def print_summary(s):
    med = s["median_wall_s"]
    print()
    print("boot of %d stages x %d services, %d repetitions, %s CPUs" % (
        STAGES, PER_STAGE, s["layout"]["reps"], s["machine"]["cpus"]))
    for kind in med:
        print("  median wall %-8s %6.2f s" % (kind, med[kind]))
    print("  default / seed  = %.2f   (target <= 0.50)" % s["ratio_default_over_seed"])
    print("  default / lower = %.2f   (target <= 1.25)" % s["ratio_default_over_lower"])
    print("  seed / lower    = %.2f" % s["ratio_seed_over_lower"])
    if s["ratio_before_over_seed"] is not None:
        print("  before / seed   = %.2f" % s["ratio_before_over_seed"])
        print("  before / lower  = %.2f" % s["ratio_before_over_lower"])
    for kind in s["detection_ms"]:
        d = s["detection_ms"][kind]
        print("  detection %-8s median %5.0f ms  p90 %5.0f ms  max %5.0f ms  (n=%d)%s" % (
            kind, d["median"], d["p90"], d["max"], d["samples"],
            "   (target median <= 50 ms)" if kind == "default" else ""))


def main():
    default_agent = os.path.join(SOURCE_DIR, "build-bench", "mcp-agent")
    if not os.path.exists(default_agent):
        default_agent = os.path.join(SOURCE_DIR, "build", "mcp-agent")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (default 3)")
    ap.add_argument("--agent", default=default_agent, help="the mcp-agent binary (default %(default)s)")
    ap.add_argument("--port-base", type=int, default=18700,
                    help="first pinned host port; %d are used (default %%(default)s)" % (STAGES * PER_STAGE))
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON to FILE")
    ap.add_argument("--logs", metavar="DIR", help="keep each boot's agent log (stderr) in DIR")
    ap.add_argument("--before", metavar="POLICY_DIR",
                    help="also measure the policies in POLICY_DIR (e.g. an older boot.lua/recover.lua) as 'before'")
    args = ap.parse_args()
    # resolved before anything runs elsewhere: relative paths mean the caller's cwd
    args.agent = os.path.abspath(args.agent)
    for name in ("json", "logs", "before"):
        if getattr(args, name):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    if not os.access(args.agent, os.X_OK):
        ap.error("%s is not an executable: build it (cmake -S . -B build-bench && cmake --build build-bench)"
                 % args.agent)
    bench = Bench(args)
    try:
        bench.setup()
        bench.measure()
        s = bench.summary()
    except BenchError as e:
        print("boot_bench: %s" % e, file=sys.stderr)
        return 1
    finally:
        bench.cleanup()
    print_summary(s)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(s, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
