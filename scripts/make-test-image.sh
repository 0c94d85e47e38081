#!/bin/sh
# Builds a tiny test image from busybox-static and imports it into a podman
# store: make-test-image.sh NAME:TAG [podman global args…]
# e.g. make-test-image.sh localhost/mcp-test:1 --root /tmp/x/root --runroot /tmp/x/run
# The image has /bin/busybox and its applets (sh, httpd, nc, sleep, …) as
# symlinks, and CMD ["/bin/sh"]. No registry is needed. Honours $PODMAN
# (default: podman) and $BUSYBOX (default: the busybox on PATH, else /bin/busybox).
set -eu

if [ $# -lt 1 ] || [ -z "$1" ]; then
    echo "usage: $0 NAME:TAG [podman global args...]" >&2
    exit 2
fi
name=$1
shift

podman_bin=${PODMAN:-podman}
busybox=${BUSYBOX:-$(command -v busybox || echo /bin/busybox)}
if [ ! -x "$busybox" ]; then
    echo "$0: busybox not found (install busybox-static)" >&2
    exit 1
fi
# A dynamically linked busybox would not run in an empty rootfs.
if command -v ldd >/dev/null 2>&1 && ldd "$busybox" 2>/dev/null | grep -q '=>'; then
    echo "$0: $busybox is dynamically linked; install busybox-static" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mcp-image.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/root" \
         "$root/data" "$root/var/www" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
chmod 755 "$root/bin/busybox"
for applet in sh ash httpd nc sleep env cat ls echo printf true false test mkdir rm \
              cp mv touch id ps kill wget grep sed head tail wc date hostname uname; do
    ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
echo '<html>mcp test image</html>' > "$root/var/www/index.html"

tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$work/rootfs.tar" .
"$podman_bin" "$@" import -q --change 'CMD ["/bin/sh"]' "$work/rootfs.tar" "$name" >/dev/null
echo "$name"
