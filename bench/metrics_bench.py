#!/usr/bin/python3
"""metrics_bench: the cost of one GET /metrics with 500 components, and the
idle daemon's RSS with [metrics] listen on versus off (issue 12).

One daemon on the fake runtime with 50 services x 10 components deployed;
once every component has its series (the supervisor's next full list),
1000 scrapes on one keep-alive connection are timed, interleaved with 1000
GET /nope (404: the same HTTP round trip without rendering) so the
transport's share shows. Then two daemons over copies of the same registry,
one with metrics off and one on, sit idle and their VmRSS is read. Every
wait is bounded; what is started is stopped by pid.
"""
import argparse
import http.client
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


# The server's share alone: one rendering with the same 500 components, in
# an `eval` (no HTTP, no client), timed on the agent's clock.
RENDER_LUA = """
local metrics = require "mcp.host.metrics"
local core = require "mcp.core"
for s = 1, 50 do
    for c = 1, 10 do
        metrics.component(string.format("svc%02d", s), "c" .. c, { up = true, restarts = 0, backoff_seconds = 0 })
    end
end
local n = tonumber(arg[1])
local times = {}
for i = 1, n do
    local t = core.clock.now()
    local text = metrics.render()
    times[i] = core.clock.now() - t
    assert(#text > 0)
end
table.sort(times)
print(string.format("%.1f", times[n // 2] * 1e6))
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(d, name, db, listen):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write('[agent]\ncontainer_runtime = "fake"\nsocket = "%s"\n[database]\npath = "%s"\n'
                '[monitor]\ninterval = "1s"\n[metrics]\nlisten = "%s"\n'
                % (os.path.join(d, name + ".sock"), db, listen))
    return path


def start(agent, cfg, d):
    log = open(cfg + ".log", "w")
    p = subprocess.Popen([agent, "-c", cfg, "run"], cwd=d, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        with open(cfg + ".log") as f:
            if "boot finished" in f.read():
                return p
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    raise SystemExit("daemon did not start: " + open(cfg + ".log").read())


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def vmrss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def timed(conn, path):
    t = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    return (time.perf_counter() - t) * 1e6, r.status, body


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default=os.path.join(SOURCE, "build", "mcp-agent"))
    ap.add_argument("--scrapes", type=int, default=1000)
    ap.add_argument("--idle", type=float, default=10, help="seconds idle before reading RSS")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    args.agent = os.path.abspath(args.agent)
    d = tempfile.mkdtemp(prefix="metrics-bench-")
    procs = []
    try:
        db = os.path.join(d, "reg.db")
        port = free_port()
        cfg = write_config(d, "on.toml", db, "127.0.0.1:%d" % port)
        p = start(args.agent, cfg, d)
        procs.append(p)
        files = []
        for s in range(50):
            text = 'name = "svc%02d"\n' % s
            for c in range(10):
                text += '\n[[components]]\nname = "c%d"\nimage = "localhost/svc:v1"\n' % c
            path = os.path.join(d, "svc%02d.toml" % s)
            with open(path, "w") as f:
                f.write(text)
            files.append(path)
        r = subprocess.run([args.agent, "-c", cfg, "deploy", *files], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=300)
        if r.returncode != 0:
            raise SystemExit("deploy failed: " + r.stderr)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        end = time.monotonic() + 30
        while True:
            _, _, body = timed(conn, "/metrics")
            n = body.count(b"\nmcp_component_up{")
            if n >= 500 or time.monotonic() > end:
                break
            time.sleep(0.2)
        if n < 500:
            raise SystemExit("only %d components in the exposition" % n)
        scrape, notfound = [], []
        for _ in range(args.scrapes):
            us, status, body = timed(conn, "/metrics")
            assert status == 200
            scrape.append(us)
            us, status, _ = timed(conn, "/nope")
            assert status == 404
            notfound.append(us)
        conn.close()
        size = len(body)
        stop(p)

        script = os.path.join(d, "render.lua")
        with open(script, "w") as f:
            f.write(RENDER_LUA)
        r = subprocess.run([args.agent, "eval", script, str(args.scrapes)], cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=120, env=dict(os.environ, MCP_AGENT_LOCAL="1"))
        if r.returncode != 0:
            raise SystemExit("render timing failed: " + r.stderr)
        render_us = float(r.stdout.strip())

        rss = {}
        for mode in ("off", "on"):
            copy = os.path.join(d, "reg-%s.db" % mode)
            shutil.copy(db, copy)
            c = write_config(d, mode + "-idle.toml", copy, "127.0.0.1:%d" % free_port() if mode == "on" else "")
            q = start(args.agent, c, d)
            procs.append(q)
            rss[mode] = q
        time.sleep(args.idle)
        kib = {mode: vmrss_kib(q.pid) for mode, q in rss.items()}
        for q in rss.values():
            stop(q)

        res = {
            "components": 500, "scrapes": args.scrapes, "exposition_bytes": size,
            "scrape_median_us": round(statistics.median(scrape), 1),
            "scrape_p99_us": round(sorted(scrape)[int(len(scrape) * 0.99) - 1], 1),
            "render_only_median_us": render_us,
            "notfound_median_us": round(statistics.median(notfound), 1),
            "scrape_over_404": round(statistics.median(scrape) / statistics.median(notfound), 2),
            "idle_rss_kib_metrics_off": kib["off"], "idle_rss_kib_metrics_on": kib["on"],
            "idle_rss_on_over_off": round(kib["on"] / kib["off"], 3),
        }
        print(json.dumps(res, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=2)
    finally:
        for q in procs:
            if q.poll() is None:
                q.kill()
                q.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
