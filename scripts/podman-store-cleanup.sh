#!/usr/bin/env bash
# Removes an isolated podman store (one made with --root DIR/... --runroot
# DIR/...) and everything still running from it, including containers that
# podman itself has forgotten after its database was deleted:
#   podman-store-cleanup.sh DIR
# Only touches what belongs to DIR: runc containers whose bundle is below it
# (and the port-forwarding NAT rules netavark made for them, which podman can
# no longer tear down), conmon processes started for it, and mounts below it.
# DIR may already be gone: what still runs from it is cleaned up all the same.
set -u
dir=${1:?usage: $0 DIR}
dir=$(readlink -m "$dir")
case "$dir" in /|/tmp|/var|/home|/root) echo "$0: refusing to clean $dir" >&2; exit 2 ;; esac

# Deletes the runc containers of DIR with their NAT rules; exit 0 when there were any.
delete_containers() {
    runc list --format json 2>/dev/null | /usr/bin/python3 -c '
import json, re, shlex, subprocess, sys
prefix = sys.argv[1] + "/"
def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)
found = [c for c in json.load(sys.stdin) or [] if c.get("bundle", "").startswith(prefix)]
for c in found:
    ips = []
    if c.get("pid"):
        out = run(["nsenter", "-t", str(c["pid"]), "-n", "ip", "-4", "-o", "addr", "show"]).stdout
        ips = [ip for ip in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out) if not ip.startswith("127.")]
    run(["runc", "delete", "--force", c["id"]])
    for rule in run(["iptables", "-t", "nat", "-S"]).stdout.splitlines():
        if rule.startswith("-A ") and (c["id"] in rule or
                                       any("--to-destination %s:" % ip in rule for ip in ips)):
            run(["iptables", "-t", "nat", "-D"] + shlex.split(rule)[1:])
sys.exit(0 if found else 1)
' "$dir"
}
if command -v runc >/dev/null; then
    # podman's own cleanup may still be running: go round until nothing is left
    for _ in 1 2 3 4 5; do
        delete_containers || break
        sleep 0.5
    done
fi
pkill -KILL -f -- "-b $dir/" 2>/dev/null || true
awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
rm -rf "$dir"
