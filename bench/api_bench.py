#!/usr/bin/python3
"""gRPC API benchmark (issue #4, item 3): the daemon (`mcp-agent run`) on the
fake runtime with 50 services deployed.

    /usr/bin/python3 bench/api_bench.py [--agent build-daemon/mcp-agent]
        [--requests 20000] [--idle 60] [--json FILE]

Measures, in one run (about 1m40s with the defaults):

  h2load   ListServices over plaintext loopback TCP (grpc_addr 127.0.0.1:PORT,
           insecure_loopback = true), one connection carrying 50 concurrent
           streams (h2load -c 1 -m 50), then 5 connections x 10 streams;
           latency per request from h2load's --log-file, throughput from
           its summary. h2load does not read gRPC trailers, so every answer's
           size is checked against one a grpcio client decoded (50 services).
  grpcio   the same call from python grpcio over the unix socket, 50 calls
           in flight (futures); the client's own cost is part of the figure.
  idle     the daemon's VmRSS (/proc/PID/status) after boot, after the load,
           and its CPU time (utime+stime from /proc/PID/stat) and context
           switches over --idle seconds doing nothing.

Targets (issue #4): idle RSS <= 8 MiB, idle CPU ~ 0, p99 <= 5 ms. Prints a
table with each figure and whether its target is met; --json writes them all.
The daemon is stopped by pid (SIGTERM) at the end, also on failure.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(HERE)
PYTHON = "/usr/bin/python3"
N_SERVICES = 50
STREAMS = 50
METHOD = "/mcp.agent.v1.AgentService/ListServices"
TARGET_RSS_KIB = 8 * 1024
TARGET_P99_MS = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def service_toml(i):
    name = "svc%02d" % i
    return ('name = "%s"\n\n[[components]]\nname = "%s"\nimage = "localhost/%s:v1"\n'
            'ports = ["127.0.0.1:%d:8080/tcp"]\n\n[[components]]\nname = "worker"\n'
            'image = "localhost/%s-worker:v1"\n' % (name, name, name, 30000 + i, name))


def gen_stubs(tmp):
    out = os.path.join(tmp, "py")
    os.makedirs(out)
    subprocess.run([PYTHON, "-m", "grpc_tools.protoc", "-I" + os.path.join(SOURCE_DIR, "proto"),
                    "--python_out=" + out, "--grpc_python_out=" + out,
                    "mcp/agent/v1/agent.proto"], check=True, timeout=60)
    sys.path.insert(0, out)
    from mcp.agent.v1 import agent_pb2, agent_pb2_grpc
    return agent_pb2, agent_pb2_grpc


# ---- /proc -----------------------------------------------------------------------


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def rss_kib(pid):
    return int(proc_status(pid)["VmRSS"].split()[0])


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def ctx_switches(pid):
    st = proc_status(pid)
    return int(st["voluntary_ctxt_switches"]) + int(st["nonvoluntary_ctxt_switches"])


# ---- the daemon ---------------------------------------------------------------------


class Daemon:
    def __init__(self, agent, tmp, port):
        self.tmp = tmp
        self.port = port
        self.socket = os.path.join(tmp, "agent.sock")
        self.config = os.path.join(tmp, "mcp-agent.toml")
        with open(self.config, "w") as f:
            f.write("[agent]\nnode_name = \"bench\"\ncontainer_runtime = \"fake\"\n"
                    "socket = %s\ngrpc_addr = \"127.0.0.1:%d\"\ninsecure_loopback = true\n"
                    "port_range = \"20000-20999\"\n\n[database]\npath = %s\n"
                    % (toml_str(self.socket), port, toml_str(os.path.join(tmp, "registry.db"))))
        self.agent = agent
        self.proc = None
        self.stderr_path = os.path.join(tmp, "daemon.stderr")

    def deploy_locally(self):
        files = []
        for i in range(N_SERVICES):
            p = os.path.join(self.tmp, "svc%02d.toml" % i)
            with open(p, "w") as f:
                f.write(service_toml(i))
            files.append(p)
        env = dict(os.environ, MCP_AGENT_LOCAL="1")
        r = subprocess.run([self.agent, "-c", self.config, "deploy", *files], env=env,
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise SystemExit("deploy failed:\n" + r.stderr)

    def start(self):
        self.stderr_file = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([self.agent, "-c", self.config, "run"], cwd=self.tmp,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr_file, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(self.stderr_path) as f:
                if "boot finished" in f.read():
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit("daemon did not boot:\n" + open(self.stderr_path).read())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return "killed after 20 s"
        return self.proc.returncode if self.proc else None


# ---- load ------------------------------------------------------------------------------


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def latency_summary(lat_ms):
    s = sorted(lat_ms)
    return {"n": len(s), "p50_ms": percentile(s, 50), "p90_ms": percentile(s, 90),
            "p99_ms": percentile(s, 99), "max_ms": s[-1] if s else float("nan"),
            "mean_ms": statistics.fmean(s) if s else float("nan")}


def run_h2load(port, tmp, seconds, clients, streams, expected_len, tag, method=METHOD):
    body = os.path.join(tmp, "req.bin")
    with open(body, "wb") as f:
        f.write(b"\0\0\0\0\0")  # an empty ListServicesRequest, gRPC-framed
    logf = os.path.join(tmp, "h2load-%s.log" % tag)
    argv = ["h2load", "-D", str(seconds), "--warm-up-time", "1", "-c", str(clients),
            "-m", str(streams),
            "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers",
            "--log-file=" + logf, "http://127.0.0.1:%d%s" % (port, method)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    out = r.stdout
    if r.returncode != 0:
        raise SystemExit("h2load failed:\n" + out + r.stderr)
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    rps = float(m.group(3))
    m2 = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                   r"(\d+) errored", out)
    lat, statuses = [], {}
    with open(logf) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                statuses[parts[1]] = statuses.get(parts[1], 0) + 1
                lat.append(int(parts[2]) / 1000.0)
    data = re.search(r"\((\d+)\) data", out)
    res = {"tool": "h2load", "connections": clients, "streams_per_connection": streams,
           "seconds": seconds, "requests": int(m2.group(3)), "req_per_s": rps,
           "http_status": statuses,
           "succeeded": int(m2.group(4)), "failed": int(m2.group(5)) + int(m2.group(6)),
           "command": " ".join(argv)}
    res.update(latency_summary(lat))
    if data:
        # DATA bytes per counted answer: at least the decoded 50-service answer + its
        # 5-byte prefix (an error answer has none; warm-up answers add a few per cent)
        res["data_bytes_per_answer"] = int(data.group(1)) / max(1, res["succeeded"])
        res["answers_full_size"] = res["data_bytes_per_answer"] >= expected_len + 5
    return res


def run_grpcio(sock, agent_pb2, agent_pb2_grpc, seconds, in_flight):
    import grpc
    lat = []
    lock = threading.Lock()
    sem = threading.Semaphore(in_flight)
    errors = []
    pending = [0]

    with grpc.insecure_channel("unix:" + sock) as ch:
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        stub.ListServices(agent_pb2.ListServicesRequest(), timeout=10)  # connect

        def finished(fut, t0):
            t = (time.perf_counter() - t0) * 1000.0
            try:
                n = len(fut.result().services)
                if n != N_SERVICES:
                    errors.append("got %d services" % n)
            except Exception as e:  # noqa: BLE001 - recorded and reported
                errors.append(repr(e))
            with lock:
                lat.append(t)
                pending[0] -= 1
            sem.release()

        start = time.perf_counter()
        requests = 0
        while time.perf_counter() - start < seconds:
            sem.acquire()
            t0 = time.perf_counter()
            with lock:
                pending[0] += 1
            requests += 1
            fut = stub.ListServices.future(agent_pb2.ListServicesRequest(), timeout=30)
            fut.add_done_callback(lambda f, t0=t0: finished(f, t0))
        for _ in range(in_flight):  # wait for the calls still in flight
            sem.acquire()
        elapsed = time.perf_counter() - start
    res = {"tool": "grpcio (python, unix socket)", "in_flight": in_flight, "requests": requests,
           "req_per_s": requests / elapsed, "errors": len(errors), "first_error": errors[:1]}
    res.update(latency_summary(lat))
    return res


# ---- main -----------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default=os.environ.get("MCP_AGENT_BIN")
                    or os.path.join(SOURCE_DIR, "build-daemon", "mcp-agent"))
    ap.add_argument("--seconds", type=int, default=15, help="per h2load run")
    ap.add_argument("--grpcio-seconds", type=int, default=10)
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    # the daemon runs in a temp dir: paths given relative to the caller's cwd are resolved now
    args.agent = os.path.abspath(args.agent)
    args.json = os.path.abspath(args.json) if args.json else None
    if not os.access(args.agent, os.X_OK):
        raise SystemExit("no agent binary at %s (build it, or pass --agent)" % args.agent)
    have_h2load = shutil.which("h2load") is not None

    tmp = tempfile.mkdtemp(prefix="api-bench-")
    d = Daemon(args.agent, tmp, free_port())
    results = {"agent": args.agent, "services": N_SERVICES,
               "machine": machine_notes()}
    try:
        agent_pb2, agent_pb2_grpc = gen_stubs(tmp)
        log("deploying %d services (2 components each) ..." % N_SERVICES)
        d.deploy_locally()
        d.start()
        pid = d.proc.pid
        time.sleep(1.0)
        results["rss_after_boot_kib"] = rss_kib(pid)
        import grpc
        with grpc.insecure_channel("unix:" + d.socket) as ch:
            answer = agent_pb2_grpc.AgentServiceStub(ch).ListServices(
                agent_pb2.ListServicesRequest(), timeout=10)
        assert len(answer.services) == N_SERVICES, answer
        assert all(c.observed_state == "running" for s in answer.services for c in s.components)
        expected_len = answer.ByteSize()
        results["answer_bytes"] = expected_len
        cpu0 = cpu_ticks(pid)
        t0 = time.monotonic()
        runs = []
        rss_during = []
        if have_h2load:
            log("h2load: 1 connection x %d streams ..." % STREAMS)
            runs.append(measured(pid, run_h2load, d.port, tmp, args.seconds, 1, STREAMS, expected_len, "1x50"))
            rss_during.append(rss_kib(pid))
            log("h2load: 5 connections x 10 streams ...")
            runs.append(measured(pid, run_h2load, d.port, tmp, args.seconds, 5, 10, expected_len, "5x10"))
            rss_during.append(rss_kib(pid))
            log("h2load: Health/Check, 1 connection x %d streams (the server without the registry) ..."
                % STREAMS)
            health = measured(pid, run_h2load, d.port, tmp, 5, 1, STREAMS, 0, "health",
                              "/grpc.health.v1.Health/Check")
            health["method"] = "grpc.health.v1.Health/Check"
            health.pop("answers_full_size", None)
            results["health_check_h2load"] = health
            rss_during.append(rss_kib(pid))
        log("grpcio: %d in flight ..." % STREAMS)
        runs.append(measured(pid, run_grpcio, d.socket, agent_pb2, agent_pb2_grpc, args.grpcio_seconds, STREAMS))
        rss_during.append(rss_kib(pid))
        results["rss_kib_after_each_load"] = rss_during
        load_cpu_s = (cpu_ticks(pid) - cpu0) / CLK_TCK
        load_wall_s = time.monotonic() - t0
        results["load"] = runs
        results["load_daemon_cpu_s"] = load_cpu_s
        results["load_wall_s"] = load_wall_s
        results["load_requests"] = sum(r["requests"] for r in runs) + \
            results.get("health_check_h2load", {}).get("requests", 0)
        results["daemon_cpu_us_per_request"] = load_cpu_s * 1e6 / max(1, results["load_requests"])
        results["rss_after_load_kib"] = rss_kib(pid)
        results["vmhwm_kib"] = int(proc_status(pid)["VmHWM"].split()[0])

        log("idle for %.0f s ..." % args.idle)
        time.sleep(2.0)
        c0, s0, w0 = cpu_ticks(pid), ctx_switches(pid), time.monotonic()
        rss_samples = []
        end = w0 + args.idle
        while time.monotonic() < end:
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            rss_samples.append(rss_kib(pid))
        c1, s1, w1 = cpu_ticks(pid), ctx_switches(pid), time.monotonic()
        idle_s = w1 - w0
        results["idle"] = {
            "seconds": idle_s, "cpu_ticks": c1 - c0, "clk_tck": CLK_TCK,
            "cpu_percent": 100.0 * (c1 - c0) / CLK_TCK / idle_s,
            "context_switches": s1 - s0, "wakeups_per_s": (s1 - s0) / idle_s,
            "rss_kib_min": min(rss_samples), "rss_kib_max": max(rss_samples),
            "rss_kib_last": rss_samples[-1],
        }
        results["status_of_daemon_at_end"] = status_breakdown(pid)
    finally:
        rc = d.stop()
        results["daemon_exit"] = rc
        with open(d.stderr_path) as f:
            err = f.read()
        results["daemon_errors"] = [l for l in err.splitlines() if "level=ERROR" in l][:5]
        if not os.environ.get("MCP_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)

    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def measured(pid, fn, *args):
    """fn(*args) -> result dict, with the daemon's CPU time per request added."""
    c0 = cpu_ticks(pid)
    res = fn(*args)
    res["daemon_cpu_s"] = (cpu_ticks(pid) - c0) / CLK_TCK
    res["daemon_cpu_us_per_request"] = res["daemon_cpu_s"] * 1e6 / max(1, res["requests"])
    return res


def status_breakdown(pid):
    st = proc_status(pid)
    keys = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM", "Threads")
    return {k: st.get(k) for k in keys}


def machine_notes():
    notes = {"cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            notes["cpu"] = m.group(1) if m else "?"
        notes["kernel"] = os.uname().release
        with open("/proc/loadavg") as f:
            notes["loadavg_at_start"] = f.read().split()[0]
    except OSError:
        pass
    return notes


def yes(ok):
    return "met" if ok else "MISSED"


def report(r):
    idle = r["idle"]
    print("machine: %(cpus)s CPUs, %(cpu)s, kernel %(kernel)s, loadavg %(loadavg_at_start)s"
          % r["machine"])
    print("daemon: %s, %d services (100 containers, fake runtime), ListServices answer %d bytes"
          % (r["agent"], r["services"], r["answer_bytes"]))
    print()
    print("| load | req/s | p50 ms | p90 ms | p99 ms | max ms | daemon CPU us/req | ok |")
    print("|---|---|---|---|---|---|---|---|")
    rows = list(r["load"])
    if "health_check_h2load" in r:
        rows.append(r["health_check_h2load"])
    for run in rows:
        if run["tool"] == "h2load":
            what = "h2load %d conn x %d streams (TCP loopback)%s" % (
                run["connections"], run["streams_per_connection"],
                ", Health/Check" if "method" in run else "")
            ok = "%d/%d, status %s, full answers: %s" % (run["succeeded"], run["requests"],
                                                        run["http_status"], run.get("answers_full_size"))
        else:
            what = "grpcio %d in flight (unix socket)" % run["in_flight"]
            ok = "%d errors" % run["errors"]
        print("| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f | %s |" % (
            what, run["req_per_s"], run["p50_ms"], run["p90_ms"], run["p99_ms"], run["max_ms"],
            run["daemon_cpu_us_per_request"], ok))
    print()
    print("daemon CPU over all load runs: %.1f us per request (%.2f s CPU for %d requests in %.1f s)"
          % (r["daemon_cpu_us_per_request"], r["load_daemon_cpu_s"], r["load_requests"],
             r["load_wall_s"]))
    print("RSS after each load run (KiB): %s" % r["rss_kib_after_each_load"])
    print("RSS: %.2f MiB after boot, %.2f MiB after load (peak VmHWM %.2f MiB)"
          % (r["rss_after_boot_kib"] / 1024, r["rss_after_load_kib"] / 1024, r["vmhwm_kib"] / 1024))
    print("idle %.0f s: CPU %d ticks (%.3f %%), %d context switches (%.2f/s), RSS %.2f-%.2f MiB"
          % (idle["seconds"], idle["cpu_ticks"], idle["cpu_percent"], idle["context_switches"],
             idle["wakeups_per_s"], idle["rss_kib_min"] / 1024, idle["rss_kib_max"] / 1024))
    print("at end: %s" % r["status_of_daemon_at_end"])
    p99s = [run["p99_ms"] for run in r["load"] if run["tool"] == "h2load"] or \
        [run["p99_ms"] for run in r["load"]]
    print()
    print("targets (issue #4):")
    print("  idle RSS <= 8 MiB:   %.2f MiB  %s" % (idle["rss_kib_max"] / 1024,
                                                   yes(idle["rss_kib_max"] <= TARGET_RSS_KIB)))
    print("  idle CPU ~ 0:        %.3f %%, %.2f wakeups/s  %s" % (
        idle["cpu_percent"], idle["wakeups_per_s"],
        yes(idle["cpu_percent"] < 0.1 and idle["wakeups_per_s"] < 5)))
    print("  p99 <= 5 ms (h2load, 50 streams): %s  %s" % (
        ", ".join("%.2f ms" % p for p in p99s), yes(max(p99s) <= TARGET_P99_MS)))
    print("daemon exit status: %s; error lines: %s" % (r["daemon_exit"], r["daemon_errors"] or "none"))


if __name__ == "__main__":
    sys.exit(main())
