#!/usr/bin/python3
"""Supervision benchmark (issue #9, item 8): the daemon (`mcp-agent run`)
supervising containers on real podman, in an isolated store with its own
--tmpdir (tests/integration/podman_env.py), so both event streams see only
this run's containers.

    /usr/bin/python3 bench/supervise_bench.py [--agent build/mcp-agent]
        [--kills 30] [--idle 60] [--loop-restarts 6] [--json FILE]

Measures, in one run (about 3 min 40 s with the defaults):

  idle      (c) 20 supervised `sleep` containers, nothing happening, for
            --idle seconds: CPU (utime+stime ticks and schedstat ns) and
            VmRSS of the agent and of its `podman events` child. The agent's
            other children are its periodic lists (`podman ps`); a sampler
            (every 20 ms) sees each one, and the agent's CPU is split into
            "during a list" (from 0.1 s before a list child appears to 0.5 s
            after it is gone) and "between lists".
  kills     (a) and (d), interleaved: --kills times, a supervised container
            (each one only once, so the built-in policy restarts it at once)
            and a reference container run by podman with --restart=always
            (conmon and `podman container cleanup` restart it) are killed
            with SIGKILL to their process (`podman kill` counts as a user
            stop: podman would not restart it). Times come from a second
            `podman events` the benchmark runs itself: podman's `died` and
            the next `start` of the container (podman's own clock, ns), and
            the agent's `died` event (`events NAME --json`, agent clock, ms).
            detection = agent died - podman died; kill-to-running = podman
            start - the moment of the kill. The arrival of podman's `died`
            line at the benchmark's own reader, and in podman's events file
            (read every 5 ms), shows how much of the detection time is
            podman's event stream itself.
  traced    (where the time goes) --trace more containers killed twice
            each (a restart at once, then a kill within 2 s of it) while a
            thread notes the agent's podman children every 5 ms; and the
            podman calls of a restart timed from outside. Not in (a)/(d).
  loop      (b) a container that exits 1 after 0.2 s, under the built-in
            policy, for --loop-restarts restarts: each restart's gap (podman
            died -> podman start) against the delay the agent announced in
            its `backoff` event ("restarting loop in 2.1s", 0.1 s
            resolution).

Targets (issue #9): detection median <= 50 ms; restarts within +-20 % of
each delay past the first; idle agent ~ 0 ticks between lists and RSS <= 10
MiB; agent / reference kill-to-running <= 1.3. Prints each figure and
whether its target is met; --json writes every sample. The daemon is
stopped by pid (SIGTERM), every container and the store are removed at the
end, also on failure or Ctrl-C.
"""

import argparse
import calendar
import json
import os
import re
import signal
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

CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_CONTAINERS = 20
SLEEP_CMD = ["sleep", "3600"]
LOOP_CMD = ["sh", "-c", "sleep 0.2; exit 1"]
REF_NAME = "ref-always"
LOOP_NAME = "loop"
CLI_TIMEOUT = 120
WAIT_TIMEOUT = 30  # s for one container to come back
SAMPLE_EVERY = 0.02
TRACE_EVERY = 0.005
FILE_EVERY = 0.005
LIST_BEFORE, LIST_AFTER = 0.1, 0.5  # s around a list child counted as "during a list"
TARGET_DETECTION_MS = 50
TARGET_DELAY_ERR = 0.20
TARGET_RSS_KIB = 10 * 1024
TARGET_RATIO = 1.3


class BenchError(RuntimeError):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def toml_str(s):
    return json.dumps(s)  # a TOML basic string for the ASCII text used here


def service_toml(name, image, cmd):
    return "\n".join(["name = %s" % toml_str(name), "active = true", "[[components]]",
                      "name = %s" % toml_str(name), "image = %s" % toml_str(image),
                      "cmd = [%s]" % ", ".join(toml_str(c) for c in cmd)]) + "\n"


TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def parse_time(s):
    """Epoch seconds (float) of an RFC 3339 time with any fraction."""
    m = TIME_RE.match(s)
    if not m:
        raise BenchError("not an RFC 3339 time: %r" % s)
    t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    if m.group(2):
        t += float("0" + m.group(2))
    if m.group(3) != "Z":
        sign = 1 if m.group(3)[0] == "+" else -1
        t -= sign * (int(m.group(3)[1:3]) * 3600 + int(m.group(3)[4:6]) * 60)
    return t


def percentile(sorted_values, pct):
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, int(round(pct / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def dist_ms(values):
    v = sorted(1000.0 * x for x in values)
    if not v:
        return None
    return {"median": statistics.median(v), "p90": percentile(v, 90), "min": v[0], "max": v[-1], "n": len(v)}


# ---- /proc ------------------------------------------------------------------------


def proc_status(pid):
    return proc_status_of("/proc/%d/status" % pid)


def proc_status_of(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def kib(status, key):
    return int(status.get(key, "0 kB").split()[0])


def stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_ticks(pid):
    """utime + stime of the process (all its threads), in clock ticks."""
    f = stat_fields(pid)
    return int(f[11]) + int(f[12])


def child_ticks(pid):
    """cutime + cstime: the CPU of its children it has reaped (the lists)."""
    f = stat_fields(pid)
    return int(f[13]) + int(f[14])


def tasks(pid):
    try:
        return [int(t) for t in os.listdir("/proc/%d/task" % pid)]
    except OSError:
        return []


def cpu_ns(pid):
    """Time on CPU (ns) summed over the threads, from schedstat: exact where ticks are 10 ms."""
    total = 0
    for tid in tasks(pid):
        try:
            with open("/proc/%d/task/%d/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def ctx_switches(pid):
    """Context switches summed over the threads (a Go program has several)."""
    total = 0
    for tid in tasks(pid):
        try:
            st = proc_status_of("/proc/%d/task/%d/status" % (pid, tid))
        except OSError:
            continue
        total += int(st["voluntary_ctxt_switches"]) + int(st["nonvoluntary_ctxt_switches"])
    return total


def children(pid):
    out = []
    for tid in tasks(pid):
        try:
            with open("/proc/%d/task/%d/children" % (pid, tid)) as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def machine_notes():
    notes = {"cpus": os.cpu_count(), "kernel": os.uname().release}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            notes["cpu"] = m.group(1) if m else "?"
        with open("/proc/meminfo") as f:
            notes["mem_gib"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return notes


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---- podman's own event stream ------------------------------------------------------


class EventTail:
    """The benchmark's own `podman events --format json --filter type=container`
    on the store: every line with podman's time (ns) and the moment the line
    reached this reader (time.time())."""

    def __init__(self, env):
        argv = [env.podman_bin] + env.podman_args + ["events", "--format", "json", "--filter", "type=container"]
        self.proc = subprocess.Popen(argv, env=env.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.events = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            arrived = time.time()
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            nano = ev.get("timeNano")
            t = nano / 1e9 if isinstance(nano, int) else parse_time(ev["Time"])
            rec = {"name": ev.get("Name"), "status": ev.get("Status"), "time": t, "arrived": arrived,
                   "exit_code": ev.get("ContainerExitCode")}
            with self.cond:
                self.events.append(rec)
                self.cond.notify_all()

    def wait_for(self, name, status, after, timeout):
        """The first event of name with status whose podman time is >= after."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev in self.events:
                    if ev["name"] == name and ev["status"] == status and ev["time"] >= after:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError("no %r event for %s after %.3f within %ss" % (status, name, after, timeout))
                self.cond.wait(left)

    def of(self, name, status):
        with self.cond:
            return [e for e in self.events if e["name"] == name and e["status"] == status]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.thread.join(5)
        self.proc.stdout.close()


class FileWatch:
    """When does podman's died line reach its events file? A thread reads new
    bytes of <tmpdir>/events/events.log every FILE_EVERY and notes when each
    died line appeared: the part of the detection time that is podman writing
    (the rest is podman's own reader of the file)."""

    def __init__(self, path):
        self.path = path
        self.arrived = {}  # (name, podman time rounded to 1 us) -> arrival
        self._pos = os.path.getsize(path) if os.path.exists(path) else 0
        self._partial = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                size = os.path.getsize(self.path)
            except OSError:
                size = self._pos
            if size > self._pos:
                now = time.time()
                with open(self.path, "rb") as f:
                    f.seek(self._pos)
                    data = f.read(size - self._pos)
                self._pos += len(data)
                lines = (self._partial + data).split(b"\n")
                self._partial = lines.pop()
                for line in lines:
                    try:
                        ev = json.loads(line)
                        if ev.get("status") == "died" or ev.get("Status") == "died":
                            t = parse_time(ev.get("time") or ev.get("Time"))
                            self.arrived[(ev.get("name") or ev.get("Name"), round(t, 6))] = now
                    except (ValueError, BenchError, TypeError):
                        continue
            self._stop.wait(FILE_EVERY)

    def when(self, name, podman_time):
        return self.arrived.get((name, round(podman_time, 6)))

    def stop(self):
        self._stop.set()
        self._thread.join(5)


class ChildTrace:
    """Which podman calls the agent makes, and when: a thread that looks at
    the agent's children every TRACE_EVERY and records each one's subcommand,
    first and last sighting (wall clock). Used only on the traced kills, which
    are not part of the figures (the polling costs CPU)."""

    def __init__(self, pid, skip, n_global_args):
        self.pid, self.skip, self.n_global = pid, skip, n_global_args
        self.seen = {}  # child pid -> {"argv", "first", "last"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            now = time.time()
            for c in children(self.pid):
                if c == self.skip:
                    continue
                rec = self.seen.setdefault(c, {"argv": None, "first": now})
                if rec["argv"] is None:  # until its exec, a child shows the agent's own argv
                    argv = cmdline(c)
                    if argv and os.path.basename(argv[0]) == "podman":
                        rec["argv"] = " ".join(a for a in argv[1 + self.n_global:] if a != "--")[:40]
                rec["last"] = now
            self._stop.wait(TRACE_EVERY)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        return sorted(self.seen.values(), key=lambda r: r["first"])


# ---- the daemon ---------------------------------------------------------------------


class Daemon:
    def __init__(self, agent, env, tmp, interval):
        self.agent = agent
        self.env = env
        self.tmp = tmp
        self.socket = os.path.join(tmp, "agent.sock")
        self.config = os.path.join(tmp, "mcp-agent.toml")
        self.stderr_path = os.path.join(tmp, "daemon.stderr")
        self.proc = None
        lines = ["[agent]", 'node_name = "bench"', 'container_runtime = "podman"',
                 "podman_args = [%s]" % ", ".join(toml_str(a) for a in env.podman_args),
                 'podman_timeout = "60s"', "socket = %s" % toml_str(self.socket),
                 "[database]", "path = %s" % toml_str(os.path.join(tmp, "registry.db")),
                 "[monitor]", "interval = %s" % toml_str(interval),
                 "[log]", 'level = "info"']
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        self.stderr_file = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([self.agent, "-c", self.config, "run"], cwd=self.tmp, env=self.env.env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr_file, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "boot finished" in self.stderr():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise BenchError("daemon did not boot:\n" + self.stderr()[-4000:])

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def cli(self, *args, check=True):
        argv = [self.agent, "-c", self.config] + list(args)
        r = subprocess.run(argv, cwd=self.tmp, env=self.env.env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=CLI_TIMEOUT)
        if check and r.returncode != 0:
            raise BenchError("%s: exit %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
        return r

    def deploy(self, names, cmd, image):
        files = []
        for name in names:
            path = os.path.join(self.tmp, name + ".toml")
            with open(path, "w") as f:
                f.write(service_toml(name, image, cmd))
            files.append(path)
            self.env.track(name)
        self.cli("deploy", *files)

    def events(self, service):
        out = self.cli("events", service, "--json").stdout
        evs = [json.loads(line) for line in out.splitlines() if line.strip()]
        for e in evs:
            e["t"] = parse_time(e["time"])
        return evs

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                return "killed after 30 s"
        return self.proc.returncode if self.proc else None


# ---- the benchmark ------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.env = None
        self.tail = None
        self.daemon = None
        self.tmp = None
        self.results = {"machine": machine_notes(), "agent": args.agent,
                        "settings": {"kills": args.kills, "idle_s": args.idle, "loop_restarts": args.loop_restarts,
                                     "interval": args.interval, "idle_containers": IDLE_CONTAINERS}}

    def setup(self):
        self.results["machine"]["loadavg_at_start"] = loadavg()
        self.env = PodmanEnv(prefix="mcp-sbench-")
        self.results["machine"]["podman"] = self.env.podman("--version").stdout.strip()
        self.tmp = tempfile.mkdtemp(prefix="mcp-sbench-cfg-", dir="/tmp")
        self.tail = EventTail(self.env)
        self.daemon = Daemon(self.args.agent, self.env, self.tmp, self.args.interval)
        self.daemon.start()

    def wait_running(self, names, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {(c.get("Names") or [""])[0]: c.get("State") for c in self.env.containers()}
            if all(states.get(n) == "running" for n in names):
                return
            time.sleep(0.2)
        raise BenchError("not all running within %ss: %s" % (timeout, names))

    def pid_of(self, name):
        info = self.env.inspect(name)
        if not info or info["State"]["Status"] != "running" or not info["State"]["Pid"]:
            raise BenchError("%s is not running: %s" % (name, info and info["State"]))
        return info["State"]["Pid"]

    # ---- (c) idle ----

    def measure_idle(self, names):
        pid = self.daemon.proc.pid
        time.sleep(3.0)  # past the daemon's release of memory 2 s after the last call
        ev_pid = self.events_child()
        st0, est0 = proc_status(pid), proc_status(ev_pid)
        a0 = {"ticks": cpu_ticks(pid), "ns": cpu_ns(pid), "ctx": ctx_switches(pid), "cticks": child_ticks(pid)}
        e0 = {"ticks": cpu_ticks(ev_pid), "ns": cpu_ns(ev_pid), "ctx": ctx_switches(ev_pid)}
        samples = []  # (time, agent ticks, agent ns, list children alive)
        lists = {}    # list child pid -> [first seen, last seen]
        list_argv = {}  # the children's podman subcommands, counted
        labelled = set()
        rss, ev_rss = [], []
        t0 = time.monotonic()
        end = t0 + self.args.idle
        next_rss = t0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            kids = [c for c in children(pid) if c != ev_pid]
            for c in kids:
                lists.setdefault(c, [now, now])[1] = now
                if c not in labelled:  # until its exec, a child shows the agent's own argv
                    argv = cmdline(c)
                    if argv and os.path.basename(argv[0]) == "podman":
                        labelled.add(c)
                        what = " ".join(argv[1 + len(self.env.podman_args):])
                        list_argv[what] = list_argv.get(what, 0) + 1
            samples.append((now, cpu_ticks(pid), cpu_ns(pid)))
            if now >= next_rss:
                rss.append(kib(proc_status(pid), "VmRSS"))
                ev_rss.append(kib(proc_status(ev_pid), "VmRSS"))
                next_rss += 5.0
            time.sleep(SAMPLE_EVERY)
        wall = time.monotonic() - t0
        st1, est1 = proc_status(pid), proc_status(ev_pid)
        a1 = {"ticks": cpu_ticks(pid), "ns": cpu_ns(pid), "ctx": ctx_switches(pid), "cticks": child_ticks(pid)}
        e1 = {"ticks": cpu_ticks(ev_pid), "ns": cpu_ns(ev_pid), "ctx": ctx_switches(ev_pid)}
        windows = sorted((a - LIST_BEFORE, b + LIST_AFTER) for a, b in lists.values())

        def in_list(t):
            return any(a <= t <= b for a, b in windows)

        split = {"ticks_during_lists": 0, "ticks_between_lists": 0, "ns_during_lists": 0, "ns_between_lists": 0}
        for (t_prev, k_prev, n_prev), (t, k, n) in zip(samples, samples[1:]):
            where = "during" if in_list(t) or in_list(t_prev) else "between"
            split["ticks_%s_lists" % where] += k - k_prev
            split["ns_%s_lists" % where] += n - n_prev
        still_running = sum(1 for c in self.env.containers() if c.get("State") == "running"
                            and (c.get("Names") or [""])[0] in names)
        self.results["idle"] = {
            "seconds": wall, "containers": len(names), "running_at_end": still_running,
            "lists_seen": len(lists), "list_children": list_argv,
            "agent": {"cpu_ticks": a1["ticks"] - a0["ticks"], "cpu_ms": (a1["ns"] - a0["ns"]) / 1e6,
                      "context_switches": a1["ctx"] - a0["ctx"],
                      "children_cpu_ticks": a1["cticks"] - a0["cticks"],
                      "rss_kib_min": min(rss), "rss_kib_max": max(rss),
                      "rss_anon_kib": kib(st1, "RssAnon"), "rss_file_kib": kib(st1, "RssFile"),
                      "rss_kib_start": kib(st0, "VmRSS"), **split},
            "events_child": {"pid": ev_pid, "argv": cmdline(ev_pid)[-6:],
                             "cpu_ticks": e1["ticks"] - e0["ticks"], "cpu_ms": (e1["ns"] - e0["ns"]) / 1e6,
                             "context_switches": e1["ctx"] - e0["ctx"],
                             "rss_kib_min": min(ev_rss), "rss_kib_max": max(ev_rss),
                             "rss_kib_start": kib(est0, "VmRSS"), "rss_kib_end": kib(est1, "VmRSS")},
        }

    # ---- (a) and (d) ----

    def kill_once(self, name):
        """SIGKILL to the container's process; returns (kill time, podman died, podman start after it)."""
        pid = self.pid_of(name)
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL)
        died = self.tail.wait_for(name, "died", t_kill - 0.01, WAIT_TIMEOUT)
        start = self.tail.wait_for(name, "start", died["time"], WAIT_TIMEOUT)
        init = self.tail.wait_for(name, "init", died["time"], WAIT_TIMEOUT)
        return t_kill, died, dict(start, init=init["time"])

    def kill_agent(self, name):
        t_kill, died, start = self.kill_once(name)
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:  # the agent's events are read once it has said "restarted"
            evs = [e for e in self.daemon.events(name) if e["t"] >= t_kill - 0.01]
            if any(e["kind"] == "restarted" for e in evs) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        agent_died = [e for e in evs if e["kind"] == "died"]
        restarted = [e for e in evs if e["kind"] == "restarted"]
        if not agent_died or not restarted:
            raise BenchError("no died/restarted event of the agent for %s: %s" % (name, evs))
        finished = self.env.inspect(name)["State"].get("FinishedAt")
        return {"name": name, "kill": t_kill, "exited": parse_time(finished) if finished else None,
                "podman_died": died["time"], "died_arrived": died["arrived"], "agent_died": agent_died[0]["t"],
                "podman_init": start["init"], "podman_start": start["time"], "agent_restarted": restarted[0]["t"],
                "exit_code": agent_died[0]["exit_code"]}

    def kill_ref(self):
        t_kill, died, start = self.kill_once(REF_NAME)
        return {"kill": t_kill, "podman_died": died["time"], "died_arrived": died["arrived"],
                "podman_init": start["init"], "podman_start": start["time"]}

    def measure_kills(self, names):
        self.env.track(REF_NAME)
        self.env.podman("run", "-d", "--pull=never", "--restart=always", "--name", REF_NAME, self.env.image,
                        *SLEEP_CMD)
        self.wait_running([REF_NAME] + names)
        time.sleep(2.5)  # past the supervisor's "recent lifecycle work" window of the deploys
        agent, ref = [], []
        watch = FileWatch(os.path.join(self.env.tmpdir, "events", "events.log"))
        try:
            self._kills(names, agent, ref)
        finally:
            watch.stop()
        for k in agent + ref:
            k["died_in_file"] = watch.when(k.get("name", REF_NAME), k["podman_died"])
        self.results["kills"] = {"agent": agent, "reference": ref}

    def _kills(self, names, agent, ref):
        for i, name in enumerate(names):
            order = ("agent", "ref") if i % 2 == 0 else ("ref", "agent")
            for who in order:
                if who == "agent":
                    agent.append(self.kill_agent(name))
                else:
                    ref.append(self.kill_ref())
                time.sleep(0.3)  # let the restart's own work settle
            a, r = agent[-1], ref[-1]
            log("kill %2d/%d  agent: detection %4.0f ms, kill->running %4.0f ms   reference: kill->running %4.0f ms"
                % (i + 1, len(names), 1000 * (a["agent_died"] - a["podman_died"]),
                   1000 * (a["podman_start"] - a["kill"]), 1000 * (r["podman_start"] - r["kill"])))

    def trace_kills(self, names):
        """Where the agent's restart time goes: its podman calls during a kill
        of a container (restart at once) and a second kill within 2 s of that
        restart (1 s backoff; the supervisor inspects before acting)."""
        pid = self.daemon.proc.pid
        ev_pid = self.events_child()
        traces = []
        for name in names:
            for which in ("first", "second"):
                trace = ChildTrace(pid, ev_pid, len(self.env.podman_args))
                try:
                    k = self.kill_agent(name)
                finally:
                    calls = trace.stop()
                k["which"] = which
                k["calls"] = [{"argv": c["argv"], "from_died_ms": 1000 * (c["first"] - k["podman_died"]),
                               "ms": 1000 * (c["last"] - c["first"])} for c in calls
                              if c["last"] >= k["podman_died"] - 0.05]
                traces.append(k)
                log("traced %s kill of %s: %s" % (which, name, ", ".join(
                    "%s @%+.0f ms (%.0f ms)" % (c["argv"], c["from_died_ms"], c["ms"]) for c in k["calls"])))
        self.results["traced_kills"] = traces

    def events_child(self):
        pid = self.daemon.proc.pid
        ev_child = [c for c in children(pid) if "events" in cmdline(c)]
        if len(ev_child) != 1:
            raise BenchError("cannot find the agent's podman events child: %s"
                             % [(c, cmdline(c)) for c in children(pid)])
        return ev_child[0]

    def measure_podman_calls(self, reps=5):
        """What one CLI call costs here: the agent's restart path is `container
        inspect`, `image exists` and `start` of the exited container, in turn."""
        name = "calls-probe"
        self.env.track(name)
        self.env.podman("run", "-d", "--pull=never", "--restart=no", "--name", name, self.env.image, *SLEEP_CMD)
        calls = {"container inspect": ["container", "inspect", name],
                 "image exists": ["image", "exists", self.env.image], "start": ["start", name]}
        times = {k: [] for k in calls}
        for _ in range(reps):
            self.env.podman("stop", "-t", "0", name)
            for what, argv in calls.items():
                t0 = time.monotonic()
                self.env.podman(*argv)
                times[what].append(time.monotonic() - t0)
        self.env.podman("rm", "-f", "-t", "0", name)
        self.results["podman_calls_ms"] = {k: dist_ms(v) for k, v in times.items()}

    # ---- (b) ----

    def measure_loop(self):
        n = self.args.loop_restarts
        self.daemon.deploy([LOOP_NAME], LOOP_CMD, self.env.image)
        budget = sum(min(60, 2 ** (k - 1)) * 1.25 + 2 for k in range(1, n)) + 30
        deadline = time.monotonic() + budget
        while True:
            evs = self.daemon.events(LOOP_NAME)
            if len([e for e in evs if e["kind"] == "restarted"]) >= n:
                break
            if time.monotonic() > deadline:
                raise BenchError("the crash loop made fewer than %d restarts in %.0f s: %s" % (n, budget, evs))
            time.sleep(0.5)
        self.daemon.cli("stop", LOOP_NAME)
        # podman's own times: start 0 is the deploy, died k is followed by start k+1
        starts = sorted(e["time"] for e in self.tail.of(LOOP_NAME, "start"))
        dieds = sorted(e["time"] for e in self.tail.of(LOOP_NAME, "died"))
        agent_died = sorted(e["t"] for e in evs if e["kind"] == "died")
        backoff = {}
        for e in evs:
            m = re.search(r"in ([0-9.]+)s \(restart (\d+)\)", e["message"] or "")
            if e["kind"] == "backoff" and m:
                backoff[int(m.group(2))] = {"delay": float(m.group(1)), "t": e["t"]}
        rows = []
        for k in range(1, n + 1):
            if k >= len(starts) or k > len(dieds) or k > len(agent_died):
                raise BenchError("crash loop: restart %d not in podman's events (starts %d, dieds %d)"
                                 % (k, len(starts), len(dieds)))
            died, start = dieds[k - 1], starts[k]
            b = backoff.get(k)
            delay = b["delay"] if b else 0.0
            gap = start - died
            rows.append({"restart": k, "policy_delay": delay, "gap": gap,
                         "error": (gap - delay) / delay if delay > 0 else None,
                         "detection": agent_died[k - 1] - died,
                         "backoff_event_to_start": (start - b["t"]) if b else None,
                         "overshoot": gap - delay})
            log("loop restart %d: policy delay %.1f s, measured %.3f s" % (k, delay, gap))
        self.results["loop"] = rows

    # ---- all of it ----

    def run(self):
        idle = ["sv-%02d" % i for i in range(1, IDLE_CONTAINERS + 1)]
        log("deploying %d idle containers ..." % len(idle))
        self.daemon.deploy(idle, SLEEP_CMD, self.env.image)
        self.wait_running(idle)
        log("idle for %.0f s ..." % self.args.idle)
        self.measure_idle(idle)
        total = self.args.kills + self.args.trace
        extra = ["sv-%02d" % i for i in range(IDLE_CONTAINERS + 1, total + 1)]
        if extra:
            log("deploying %d more containers to kill ..." % len(extra))
            self.daemon.deploy(extra, SLEEP_CMD, self.env.image)
        everyone = idle + extra
        targets = everyone[:self.args.kills]
        log("%d kills of supervised and reference containers ..." % len(targets))
        self.measure_kills(targets)
        if self.args.trace:
            log("%d traced kills (the agent's podman calls) ..." % self.args.trace)
            self.trace_kills(everyone[self.args.kills:total])
        log("timing the podman calls of a restart ...")
        self.measure_podman_calls()
        log("crash loop: %d restarts ..." % self.args.loop_restarts)
        self.measure_loop()
        self.results["machine"]["loadavg_at_end"] = loadavg()

    def cleanup(self):
        if self.daemon:
            self.results["daemon_exit"] = self.daemon.stop()
            try:
                err = self.daemon.stderr()
                self.results["daemon_errors"] = [l for l in err.splitlines() if "level=ERROR" in l][:5]
                if self.args.logs:
                    with open(self.args.logs, "w") as f:
                        f.write(err)
            except OSError:
                pass
        if self.tail:
            self.tail.close()
        if self.env:
            self.env.cleanup()
        if self.tmp:
            subprocess.run(["rm", "-rf", self.tmp], timeout=60)


# ---- the summary ------------------------------------------------------------------------


def summarize(r):
    s = {}
    ag, ref = r["kills"]["agent"], r["kills"]["reference"]
    s["detection_ms"] = dist_ms([k["agent_died"] - k["podman_died"] for k in ag])
    s["stream_delivery_ms"] = dist_ms([k["died_arrived"] - k["podman_died"] for k in ag + ref])
    in_file = [k["died_in_file"] - k["podman_died"] for k in ag + ref if k.get("died_in_file")]
    s["died_in_file_ms"] = dist_ms(in_file)
    s["exit_to_died_event_ms"] = dist_ms([k["podman_died"] - k["exited"] for k in ag if k["exited"]])
    s["kill_to_died_event_ms"] = {"agent": dist_ms([k["podman_died"] - k["kill"] for k in ag]),
                                  "reference": dist_ms([k["podman_died"] - k["kill"] for k in ref])}
    s["kill_to_running_ms"] = {"agent": dist_ms([k["podman_start"] - k["kill"] for k in ag]),
                               "reference": dist_ms([k["podman_start"] - k["kill"] for k in ref])}
    s["died_to_running_ms"] = {"agent": dist_ms([k["podman_start"] - k["podman_died"] for k in ag]),
                               "reference": dist_ms([k["podman_start"] - k["podman_died"] for k in ref])}
    s["agent_died_to_running_ms"] = dist_ms([k["podman_start"] - k["agent_died"] for k in ag])
    s["agent_died_to_init_ms"] = dist_ms([k["podman_init"] - k["agent_died"] for k in ag])
    s["died_to_init_ms"] = {"agent": dist_ms([k["podman_init"] - k["podman_died"] for k in ag]),
                            "reference": dist_ms([k["podman_init"] - k["podman_died"] for k in ref])}
    s["init_to_start_ms"] = {"agent": dist_ms([k["podman_start"] - k["podman_init"] for k in ag]),
                             "reference": dist_ms([k["podman_start"] - k["podman_init"] for k in ref])}
    s["ratio_kill_to_running"] = (s["kill_to_running_ms"]["agent"]["median"]
                                  / s["kill_to_running_ms"]["reference"]["median"])
    s["ratio_died_to_running"] = (s["died_to_running_ms"]["agent"]["median"]
                                  / s["died_to_running_ms"]["reference"]["median"])
    past_first = [row for row in r["loop"] if row["policy_delay"] > 0]
    s["loop_max_abs_error"] = max(abs(row["error"]) for row in past_first) if past_first else None
    s["loop_overshoot_ms"] = dist_ms([row["overshoot"] for row in past_first])
    return s


def yes(ok):
    return "met" if ok else "MISSED"


def ms(d):
    return "median %.0f ms, p90 %.0f ms (min %.0f, max %.0f, n=%d)" % (
        d["median"], d["p90"], d["min"], d["max"], d["n"])


def report(r, s):
    m = r["machine"]
    print("machine: %s CPUs, %s, %s GiB, kernel %s, %s; load %s at start, %s at end" % (
        m["cpus"], m.get("cpu"), m.get("mem_gib"), m["kernel"], m.get("podman"), m.get("loadavg_at_start"),
        m.get("loadavg_at_end")))
    print("agent: %s; [monitor] interval %s" % (r["agent"], r["settings"]["interval"]))
    print()
    print("(a) detection, podman died -> agent died (%d kills)" % s["detection_ms"]["n"])
    print("    agent's died event:           %s" % ms(s["detection_ms"]))
    print("    where it goes: podman's died line reaching a reader of its stream (the bench's own):")
    print("                                  %s" % ms(s["stream_delivery_ms"]))
    if s["died_in_file_ms"]:
        print("    of which podman writing the line to its events file (seen by a 5 ms poll of the file):")
        print("                                  %s" % ms(s["died_in_file_ms"]))
    print("    before it: process exit (FinishedAt) -> podman's died event: %s" % ms(s["exit_to_died_event_ms"]))
    print()
    print("(b) crash loop under the built-in policy (podman died -> podman start):")
    print("    | restart | policy delay s | measured s | error | detection ms | backoff event -> start ms |")
    print("    |---|---|---|---|---|---|")
    for row in r["loop"]:
        print("    | %d | %.1f | %.3f | %s | %.0f | %s |" % (
            row["restart"], row["policy_delay"], row["gap"],
            "%+.1f %%" % (100 * row["error"]) if row["error"] is not None else "(first: at once)",
            1000 * row["detection"],
            "%.0f" % (1000 * row["backoff_event_to_start"]) if row["backoff_event_to_start"] is not None else "-"))
    if s["loop_overshoot_ms"]:
        print("    overshoot past the delay: %s" % ms(s["loop_overshoot_ms"]))
    print()
    i = r["idle"]
    a, e = i["agent"], i["events_child"]
    print("(c) %d idle supervised containers over %.0f s (%d lists seen, %d running at the end)" % (
        i["containers"], i["seconds"], i["lists_seen"], i["running_at_end"]))
    print("    agent:          %d ticks (%.1f ms CPU): %d ticks / %.1f ms during lists, %d ticks / %.1f ms between;"
          % (a["cpu_ticks"], a["cpu_ms"], a["ticks_during_lists"], a["ns_during_lists"] / 1e6,
             a["ticks_between_lists"], a["ns_between_lists"] / 1e6))
    print("                    %d context switches; RSS %.2f-%.2f MiB (anon %.2f, file %.2f)" % (
        a["context_switches"], a["rss_kib_min"] / 1024, a["rss_kib_max"] / 1024, a["rss_anon_kib"] / 1024,
        a["rss_file_kib"] / 1024))
    print("    its children (%s), reaped: %d ticks" % (
        ", ".join("%d x %s" % (n, what) for what, n in i["list_children"].items()), a["children_cpu_ticks"]))
    print("    podman events:  %d ticks (%.1f ms CPU), %d context switches; RSS %.2f-%.2f MiB" % (
        e["cpu_ticks"], e["cpu_ms"], e["context_switches"], e["rss_kib_min"] / 1024, e["rss_kib_max"] / 1024))
    print()
    print("(d) kill -> running (SIGKILL -> podman start event), %d kills each:" % s["kill_to_running_ms"]["agent"]["n"])
    print("    agent:      %s" % ms(s["kill_to_running_ms"]["agent"]))
    print("    reference:  %s   (podman run --restart=always)" % ms(s["kill_to_running_ms"]["reference"]))
    print("    split: kill -> podman died: agent %.0f ms, reference %.0f ms (medians);"
          % (s["kill_to_died_event_ms"]["agent"]["median"], s["kill_to_died_event_ms"]["reference"]["median"]))
    print("           podman died -> start: agent %.0f ms, reference %.0f ms; agent died event -> start %.0f ms"
          % (s["died_to_running_ms"]["agent"]["median"], s["died_to_running_ms"]["reference"]["median"],
             s["agent_died_to_running_ms"]["median"]))
    print("           podman died -> init: agent %.0f ms (of it agent died event -> init %.0f ms), reference %.0f ms;"
          % (s["died_to_init_ms"]["agent"]["median"], s["agent_died_to_init_ms"]["median"],
             s["died_to_init_ms"]["reference"]["median"]))
    print("           init -> start (runc): agent %.0f ms, reference %.0f ms" % (
        s["init_to_start_ms"]["agent"]["median"], s["init_to_start_ms"]["reference"]["median"]))
    for k in r.get("traced_kills", []):
        print("    traced %-6s kill of %s: agent died %+.0f ms; %s; podman start event %+.0f ms (from podman died)" % (
            k["which"], k["name"], 1000 * (k["agent_died"] - k["podman_died"]),
            ", ".join("%s @%+.0f ms for %.0f ms" % (c["argv"], c["from_died_ms"], c["ms"]) for c in k["calls"]),
            1000 * (k["podman_start"] - k["podman_died"])))
    calls = r.get("podman_calls_ms") or {}
    if calls:
        print("    one podman CLI call from outside, stopped container (medians): %s; sum %.0f ms" % (
            ", ".join("%s %.0f ms" % (k, v["median"]) for k, v in calls.items()),
            sum(v["median"] for v in calls.values())))
    print()
    print("targets (issue #9):")
    print("  (a) detection median <= %d ms:           %.0f ms  %s" % (
        TARGET_DETECTION_MS, s["detection_ms"]["median"], yes(s["detection_ms"]["median"] <= TARGET_DETECTION_MS)))
    if s["loop_max_abs_error"] is not None:
        print("  (b) each delay past the first within +-20 %%: worst %.1f %%  %s" % (
            100 * s["loop_max_abs_error"], yes(s["loop_max_abs_error"] <= TARGET_DELAY_ERR)))
    print("  (c) agent ~ 0 ticks between lists:       %d ticks  %s" % (
        a["ticks_between_lists"], yes(a["ticks_between_lists"] <= 1)))
    print("  (c) agent RSS <= 10 MiB:                 %.2f MiB  %s" % (
        a["rss_kib_max"] / 1024, yes(a["rss_kib_max"] <= TARGET_RSS_KIB)))
    print("  (d) agent / reference kill->running <= %.1f: %.2f  %s   (died->running: %.2f)" % (
        TARGET_RATIO, s["ratio_kill_to_running"], yes(s["ratio_kill_to_running"] <= TARGET_RATIO),
        s["ratio_died_to_running"]))
    print("daemon exit status: %s; error lines: %s" % (r.get("daemon_exit"), r.get("daemon_errors") or "none"))


def main():
    default_agent = os.path.join(SOURCE_DIR, "build", "mcp-agent")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default=os.environ.get("MCP_AGENT_BIN") or default_agent,
                    help="the mcp-agent binary (default %(default)s)")
    ap.add_argument("--kills", type=int, default=30, help="kills of each kind for (a) and (d) (default 30)")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of the idle measurement (c) (default 60)")
    ap.add_argument("--loop-restarts", type=int, default=6,
                    help="restarts of the crash loop (b): delays 0, 1, 2, 4, 8, 16 s (default 6)")
    ap.add_argument("--trace", type=int, default=3,
                    help="extra containers killed twice with the agent's podman calls traced (default 3)")
    ap.add_argument("--interval", default="10s", help="[monitor] interval of the daemon (default 10s)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure and sample as JSON to FILE")
    ap.add_argument("--logs", metavar="FILE", help="keep the daemon's log (stderr) in FILE")
    args = ap.parse_args()
    # Every path is made absolute before anything runs in another directory.
    args.agent = os.path.abspath(args.agent)
    args.json = os.path.abspath(args.json) if args.json else None
    args.logs = os.path.abspath(args.logs) if args.logs else None
    if args.kills < 1 or args.loop_restarts < 2 or args.idle <= 0 or args.trace < 0:
        ap.error("--kills >= 1, --loop-restarts >= 2, --idle > 0 and --trace >= 0, please")
    if not os.access(args.agent, os.X_OK):
        ap.error("%s is not an executable: build it (cmake -S . -B build && cmake --build build)" % args.agent)
    bench = Bench(args)
    interrupted = False
    try:
        bench.setup()
        bench.run()
    except BenchError as e:
        print("supervise_bench: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bench.cleanup()
    if interrupted:
        return 130
    summary = summarize(bench.results)
    report(bench.results, summary)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, **bench.results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
