#!/usr/bin/env bash
# Removes an isolated podman store (one made with --root DIR/... --runroot
# DIR/...) and everything still running from it, including containers that
# podman itself has forgotten after its database was deleted:
#   podman-store-cleanup.sh DIR
# Only touches what lives under DIR: runc containers whose bundle is there,
# conmon processes started for it, and mounts below it.
set -u
dir=${1:?usage: $0 DIR}
dir=$(readlink -f "$dir") || exit 0
case "$dir" in /|/tmp|/var|/home|/root) echo "$0: refusing to clean $dir" >&2; exit 2 ;; esac
[ -d "$dir" ] || exit 0

# Returns 0 when containers of DIR were still there (and were deleted now).
delete_containers() {
    runc list --format json 2>/dev/null | /usr/bin/python3 -c '
import json, subprocess, sys
prefix = sys.argv[1] + "/"
found = [c["id"] for c in json.load(sys.stdin) or [] if c.get("bundle", "").startswith(prefix)]
for cid in found:
    subprocess.run(["runc", "delete", "--force", cid], stderr=subprocess.DEVNULL, timeout=30)
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
