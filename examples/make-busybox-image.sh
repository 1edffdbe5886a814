#!/usr/bin/env bash
# Build a minimal root filesystem from the host's busybox-static and import it as an image, so the
# examples run on a machine with no registry and no internet.
# Usage: make-busybox-image.sh [IMAGE] (default berth-example/busybox:latest); BERTH=path/to/berth
set -euo pipefail
image="${1:-berth-example/busybox:latest}"
berth="${BERTH:-berth}"
[ -x /bin/busybox ] || { echo "busybox-static is missing: apt-get install -y busybox-static" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc,tmp,var/www,root}
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
tar -C "$root" -cf - . | "$berth" import - "$image"
