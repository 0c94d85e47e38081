#!/usr/bin/env bash
# The main job on real podman, in an isolated podman store under /tmp:
# deploy three services, make podman lose its state (stop everything and
# delete its container database, as after a crash), `recover`, `status`;
# then `run` supervises: a container killed with `podman kill` comes back
# on its own, and `events` shows what happened.
# Installs and builds first. KEEP=1 leaves the demo running for a look.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_DEPS:-0}" = 1 ] || scripts/install-deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
agent=$PWD/build/mcp-agent

demo=$(mktemp -d /tmp/mcp-demo.XXXXXX)
mkdir -p /tmp/mcp-demo-data
podman_args=(--root "$demo/root" --runroot "$demo/run" --tmpdir "$demo/tmp")
# runc and modest ulimits: what podman needs on these machines (docs/ENV notes)
cat > "$demo/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$demo/containers.conf
pod() { podman "${podman_args[@]}" "$@"; }
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then
        echo "demo left running in $demo (CONTAINERS_CONF=$demo/containers.conf)"
        return
    fi
    [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    pod rm -f -t 0 web api api-worker batch >/dev/null 2>&1 || true
    # also what podman forgot when its database was deleted
    scripts/podman-store-cleanup.sh "$demo"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# What a service answers on a host port (retried for a few seconds: the
# container's httpd may still be starting); the demo fails if nothing does.
answer() {
    local out
    for _ in $(seq 30); do
        out=$(curl -s -m 2 "http://127.0.0.1:$1/index.html") && [ -n "$out" ] && { echo "$out"; return; }
        sleep 0.2
    done
    echo "demo: nothing answers on 127.0.0.1:$1" >&2
    exit 1
}

cat > "$demo/agent.toml" <<CONF
[agent]
node_name = "demo"
podman_args = [$(printf '"%s", ' "${podman_args[@]}" | sed 's/, $//')]
port_range = "18100-18199"
socket = "$demo/agent.sock"
[database]
path = "$demo/registry.db"
[log]
level = "warn"
CONF

step "build a busybox image locally"
scripts/make-test-image.sh localhost/mcp-demo:1 "${podman_args[@]}"

step "mcp-agent deploy examples/demo/*.toml"
"$agent" -c "$demo/agent.toml" deploy examples/demo/web.toml examples/demo/api.toml examples/demo/batch.toml
sleep 1
step "mcp-agent status"
"$agent" -c "$demo/agent.toml" status || true
web_port=$("$agent" -c "$demo/agent.toml" status web --json |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["services"][0]["components"][0]["routes"][0]["host_port"])')
out=$(answer "$web_port"); echo "web answers on its route port $web_port: $out"
out=$(answer 18081); echo "api answers on 18081: $out"

step "podman loses its state: stop everything, delete its container database"
pod stop -a -t 1 >/dev/null
rm -f "$demo/root/libpod/bolt_state.db"
echo "podman ps -a now shows:"
pod ps -a

step "mcp-agent recover --dry-run"
"$agent" -c "$demo/agent.toml" recover --dry-run || true
step "mcp-agent recover"
start=$(date +%s.%N)
"$agent" -c "$demo/agent.toml" recover
echo "recover took $(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo '?') s"
sleep 1
step "mcp-agent status"
"$agent" -c "$demo/agent.toml" status
out=$(answer "$web_port"); echo "web answers on the same route port $web_port: $out"
step "mcp-agent recover (again: nothing to do)"
"$agent" -c "$demo/agent.toml" recover

step "mcp-agent run (the daemon supervises the node)"
"$agent" -c "$demo/agent.toml" run &
daemon=$!
for _ in $(seq 100); do [ -S "$demo/agent.sock" ] && break; sleep 0.1; done
sleep 1
step "podman kill web"
pod kill web >/dev/null
for _ in $(seq 50); do
    [ "$(pod inspect --format '{{.State.Status}}' web)" = running ] && \
        "$agent" -c "$demo/agent.toml" events web | grep -q restarted && break
    sleep 0.2
done
echo "web answers again: $(answer "$web_port")"
step "mcp-agent events web"
"$agent" -c "$demo/agent.toml" events web
