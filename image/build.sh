#!/usr/bin/env bash
# Build the hapx base image (Debian 12) with debootstrap, from Debian's
# packages only: base.qcow2 (one ext4 file system, booted by QEMU with the
# kernel and initrd beside it) plus image.json describing what went in.
#
# The image is cached outside the clone, keyed by its inputs (packages.txt,
# setup-rootfs.sh, suite, mirror, disk size and image_format below): an unchanged key is a
# no-op, a changed one builds a new directory and repoints `current`.
#
#   image/build.sh [--cache-dir DIR] [--mirror URL] [--force]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

cache_dir=${HAPX_IMAGE_CACHE:-$HOME/.cache/hapx/images}
mirror=${HAPX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
disk_size=3G
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cache-dir) cache_dir=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    --force) force=1; shift ;;
    *) echo "usage: $0 [--cache-dir DIR] [--mirror URL] [--force]" >&2; exit 2 ;;
  esac
done

say() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

for tool in debootstrap mkfs.ext4 qemu-img chroot; do
  command -v "$tool" >/dev/null || { echo "hapx image: '$tool' is missing; run 'make setup' first" >&2; exit 1; }
done
if [ "$(id -u)" -ne 0 ]; then
  echo "hapx image: debootstrap needs root; run 'sudo make image'" >&2
  exit 1
fi

# Bump when a change to the steps below changes the image itself.
image_format=1
packages=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages.txt" | tr -d ' ' | paste -sd, -)
key=$( { echo "format=$image_format suite=$suite mirror=$mirror disk=$disk_size"; cat "$here/packages.txt" "$here/setup-rootfs.sh"; } | sha256sum | cut -c1-16)
final="$cache_dir/$key"

if [ "$force" = 0 ] && [ -f "$final/image.json" ]; then
  ln -sfn "$key" "$cache_dir/current"
  say "cached: $final (inputs unchanged)"
  exit 0
fi

work="$cache_dir/.build-$key"
rm -rf "$work"
mkdir -p "$work"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

started=$(date +%s)
say "debootstrap $suite from $mirror (about 2 minutes; progress below)"
# debootstrap prints a line per package: show the first line of each phase
# (Retrieving, Unpacking, Configuring...) and every 50th line after that.
debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" 2>&1 |
  awk -v tag="[image]" '
    /^I: / { n++; if (!seen[$2]++ || n % 50 == 0) { print tag, $0; fflush() } next }
    /^[EW]: / { print tag, $0; fflush() }'
[ -x "$work/rootfs/usr/bin/cloud-init" ] || { echo "hapx image: debootstrap did not finish (no cloud-init in the root)" >&2; exit 1; }

say "configuring the root (fstab, cloud-init data source, services, locale)"
install -m 0755 "$here/setup-rootfs.sh" "$work/rootfs/tmp/setup-rootfs.sh"
chroot "$work/rootfs" /tmp/setup-rootfs.sh
rm -f "$work/rootfs/tmp/setup-rootfs.sh"

kernel=$(ls "$work"/rootfs/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$work"/rootfs/boot/initrd.img-* | sort -V | tail -1)
install -m 0644 "$kernel" "$work/vmlinuz"
install -m 0644 "$initrd" "$work/initrd.img"

say "making the ext4 file system and converting to qcow2"
truncate -s "$disk_size" "$work/root.img"
mkfs.ext4 -q -F -L hapx-root -d "$work/rootfs" "$work/root.img"
qemu-img convert -O qcow2 "$work/root.img" "$work/base.qcow2"
rm -f "$work/root.img"

kernel_version=${kernel##*/vmlinuz-}
rootfs_mb=$(du -sm "$work/rootfs" | cut -f1)
rm -rf "$work/rootfs"
elapsed=$(( $(date +%s) - started ))
cat > "$work/image.json" <<JSON
{
  "key": "$key",
  "suite": "$suite",
  "mirror": "$mirror",
  "kernel": "$kernel_version",
  "packages": "$packages",
  "rootfsMb": $rootfs_mb,
  "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "buildSeconds": $elapsed
}
JSON

rm -rf "$final"
mv "$work" "$final"
trap - EXIT
ln -sfn "$key" "$cache_dir/current"
say "built $final in ${elapsed}s (root $rootfs_mb MB, qcow2 $(du -h "$final/base.qcow2" | cut -f1))"
