#!/usr/bin/env bash
# Build the hapx base image (Debian 12) with debootstrap, from Debian's
# packages only: one partitioned, bootable disk written twice from the same
# raw image, base.qcow2 (QEMU) and base.vdi (VirtualBox), plus image.json
# describing what went in.
#
# Disk layout (MBR partition table, 512-byte sectors):
#   sector 0        GRUB's boot.img (boot code) and the partition table
#   sectors 1-2047  GRUB's core image for BIOS boots (the "MBR gap")
#   partition 1     EFI system partition, FAT32, 64 MiB: EFI/BOOT/BOOTX64.EFI
#   partition 2     root, ext4, to the end of the disk (last, so cloud-init's
#                   growpart can grow it when a VM's disk is bigger)
# Both boot paths find the root file system by its UUID and read its
# /boot/grub/grub.cfg. No loop device or mount is used: sfdisk, mkfs.fat,
# mtools and mkfs.ext4 (-d, -E offset) write into the raw file directly.
#
# The image is cached outside the clone, keyed by its inputs (packages.txt,
# setup-rootfs.sh, suite, mirror, disk size and image_format below): an
# unchanged key is a no-op, a changed one builds a new directory and repoints
# `current`.
#
#   image/build.sh [--cache-dir DIR] [--mirror URL] [--force]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

cache_dir=${HAPX_IMAGE_CACHE:-$HOME/.cache/hapx/images}
mirror=${HAPX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
disk_size=3G
esp_mib=64
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
fail() { echo "hapx image: $*" >&2; exit 1; }

for tool in debootstrap mkfs.ext4 e2fsck qemu-img chroot sfdisk mkfs.fat mmd mcopy grub-mkimage python3; do
  command -v "$tool" >/dev/null || fail "'$tool' is missing; run 'make setup' first"
done
grub_lib=/usr/lib/grub
for platform in i386-pc x86_64-efi; do
  [ -d "$grub_lib/$platform" ] || fail "GRUB's $platform modules are missing ($grub_lib/$platform); run 'make setup' first"
done
if [ "$(id -u)" -ne 0 ]; then
  fail "debootstrap needs root; run 'sudo make image'"
fi

# Bump when a change to the steps below changes the image itself.
image_format=2
packages=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages.txt" | tr -d ' ' | paste -sd, -)
# A unit the image carries from its first boot (see below); hapx's agents step
# installs the same file on nodes made from older images.
no_aslr_unit="$here/../templates/node/systemd/hapx-emulated-no-aslr.service"
key=$( { echo "format=$image_format suite=$suite mirror=$mirror disk=$disk_size"; cat "$here/packages.txt" "$here/setup-rootfs.sh" "$no_aslr_unit"; } | sha256sum | cut -c1-16)
final="$cache_dir/$key"

if [ "$force" = 0 ] && [ -f "$final/image.json" ]; then
  ln -sfn "$key" "$cache_dir/current"
  say "cached: $final (inputs unchanged)"
  exit 0
fi

# Identities derived from the key: the same inputs give the same root UUID
# and disk id, different images never share them.
root_uuid=$(printf 'hapx-root %s' "$key" | sha256sum |
  sed -E 's/^(.{8})(.{4}).(.{3}).(.{3})(.{12}).*/\1-\2-4\3-8\4-\5/')
disk_id=$(printf 'hapx-disk %s' "$key" | sha256sum | cut -c1-8)
esp_serial=$(printf 'hapx-esp %s' "$key" | sha256sum | cut -c1-8)

work="$cache_dir/.build-$key"
# debootstrap mounts /proc and /sys inside the root while it installs; if it
# dies there, unmount them before removing anything, and never cross into
# another file system.
cleanup() {
  if [ -d "$work" ]; then
    for target in $(findmnt -rn -o TARGET | { grep -F "$work/" || true; } | sort -r); do
      umount -l "$target" || true
    done
    rm -rf --one-file-system "$work"
  fi
}
cleanup
mkdir -p "$work"
trap cleanup EXIT

started=$(date +%s)
say "debootstrap $suite from $mirror (about 3 minutes; progress below)"
# debootstrap prints a line per package: show the first line of each phase
# (Retrieving, Unpacking, Configuring...) and every 50th line after that.
debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" 2>&1 |
  awk -v tag="[image]" '
    /^I: / { n++; if (!seen[$2]++ || n % 50 == 0) { print tag, $0; fflush() } next }
    /^[EW]: / { print tag, $0; fflush() }'
[ -x "$work/rootfs/usr/bin/cloud-init" ] || fail "debootstrap did not finish (no cloud-init in the root)"

say "configuring the root (fstab, grub.cfg, cloud-init data source, services, locale)"
# Under pure emulation (QEMU TCG) a node runs without address-space
# randomisation from its very first boot, not only from the agents step on:
# code translated while randomisation was on stays in QEMU's translation
# cache (nothing flushes it once new code is rare), and after a hard reset
# (fencing) every write of the new boot to a page holding such code walked
# that page's list of stale translations: boots took 10 minutes instead of
# 2 (docs/troubleshooting.md). The unit does nothing elsewhere.
install -D -m 0644 "$no_aslr_unit" "$work/rootfs/usr/local/lib/systemd/system/hapx-emulated-no-aslr.service"
install -m 0755 "$here/setup-rootfs.sh" "$work/rootfs/tmp/setup-rootfs.sh"
chroot "$work/rootfs" /usr/bin/env HAPX_ROOT_UUID="$root_uuid" /tmp/setup-rootfs.sh
rm -f "$work/rootfs/tmp/setup-rootfs.sh"

kernel=$(ls "$work"/rootfs/boot/vmlinuz-* | sort -V | tail -1)
kernel_version=${kernel##*/vmlinuz-}

# The drivers VirtualBox-shaped and QEMU-shaped hardware need: disks (AHCI,
# virtio), NICs (e1000, virtio), the seed as a CD-ROM (sr_mod, cdrom,
# isofs), 802.1Q VLANs. Each is a module or built in; record which.
say "checking the kernel's drivers and the initramfs"
required_modules="ahci libahci sd_mod virtio_pci virtio_blk virtio_net e1000 sr_mod cdrom isofs 8021q ext4"
modules_json=""
for module in $required_modules; do
  where=$(chroot "$work/rootfs" modinfo -k "$kernel_version" -F filename "$module" 2>/dev/null | head -1) ||
    fail "kernel $kernel_version has no '$module' driver (image/packages.txt picks the kernel)"
  [ -n "$where" ] || fail "kernel $kernel_version has no '$module' driver (image/packages.txt picks the kernel)"
  case "$where" in
    /*) where=${where#/lib/modules/$kernel_version/} ;;
    *) where=builtin ;;
  esac
  modules_json="$modules_json${modules_json:+, }\"$module\": \"$where\""
done
# The initramfs must find the root on virtio (QEMU) and on AHCI (VirtualBox).
initramfs_modules="ahci libahci ata_piix sd_mod virtio_pci virtio_blk virtio_scsi nvme ext4 crc32c_generic"
initrd_listing=$(chroot "$work/rootfs" lsinitramfs "/boot/initrd.img-$kernel_version")
initramfs_json=""
for module in $initramfs_modules; do
  if ! grep -qE "/$module\.ko(\.[a-z]+)?$" <<<"$initrd_listing"; then
    grep -qx "$module" <<<"$(sed 's#.*/##; s#\.ko.*##' "$work/rootfs/lib/modules/$kernel_version/modules.builtin")" ||
      fail "the initramfs of $kernel_version lacks '$module' (needed to find the root disk)"
  fi
  initramfs_json="$initramfs_json${initramfs_json:+, }\"$module\""
done
rootfs_mb=$(du -sm "$work/rootfs" | cut -f1)
initrd_bytes=$(stat -c %s "$work/rootfs/boot/initrd.img-$kernel_version")

say "partitioning the disk (MBR: ESP ${esp_mib} MiB, root ext4 $root_uuid)"
disk="$work/disk.raw"
truncate -s "$disk_size" "$disk"
disk_bytes=$(stat -c %s "$disk")
disk_sectors=$(( disk_bytes / 512 ))
esp_start=2048
esp_sectors=$(( esp_mib * 2048 ))
root_start=$(( esp_start + esp_sectors ))
root_sectors=$(( disk_sectors - root_start ))
sfdisk --quiet "$disk" <<TABLE
label: dos
label-id: 0x$disk_id
unit: sectors

start=$esp_start, size=$esp_sectors, type=ef
start=$root_start, size=$root_sectors, type=83, bootable
TABLE

say "writing the root file system into partition 2"
mkfs.ext4 -q -F -L hapx-root -U "$root_uuid" -E "offset=$(( root_start * 512 )),nodiscard" \
  -d "$work/rootfs" "$disk" "$(( root_sectors / 2 ))k"
fsck_log=$(e2fsck -fn "$disk?offset=$(( root_start * 512 ))" 2>&1) ||
  fail "the root file system written into the disk does not check clean: $fsck_log"
rm -rf --one-file-system "$work/rootfs"

say "installing GRUB (BIOS: MBR + gap; UEFI: EFI/BOOT/BOOTX64.EFI on the ESP)"
# The early configuration built into both GRUB images: find the root by UUID,
# then GRUB's normal mode reads $prefix/grub.cfg (written by setup-rootfs.sh).
cat > "$work/grub-early.cfg" <<CFG
search.fs_uuid $root_uuid root
set prefix=(\$root)/boot/grub
CFG
# Everything grub.cfg uses is built in: the image carries no GRUB module tree.
grub_modules="part_msdos ext2 search_fs_uuid normal configfile linux echo test serial terminal"
grub-mkimage -O i386-pc -p /boot/grub -c "$work/grub-early.cfg" -o "$work/core.img" biosdisk $grub_modules
core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
[ $(( 1 + core_sectors )) -le "$esp_start" ] || fail "GRUB's core image ($core_sectors sectors) does not fit before partition 1"
# boot.img's code only (the first 440 bytes): the partition table stays.
dd if="$grub_lib/i386-pc/boot.img" of="$disk" bs=440 count=1 conv=notrunc status=none
# As grub-bios-setup does for a hard disk: always boot from the drive the
# BIOS names, even if it hands over a floppy number (a jmp made two nops).
printf '\220\220' | dd of="$disk" bs=1 seek=$(( 0x66 )) conv=notrunc status=none
# boot.img loads sector 1, whose block list (diskboot.img) loads the rest of
# the core image from sector 2 on: the defaults, so nothing to patch.
dd if="$work/core.img" of="$disk" bs=512 seek=1 conv=notrunc status=none

grub-mkimage -O x86_64-efi -p /boot/grub -c "$work/grub-early.cfg" -o "$work/BOOTX64.EFI" efi_gop $grub_modules
# The ESP is made as its own file (mkfs.fat sizes its clusters by the file
# it is given), then copied into partition 1; hidden sectors = its start.
fat_log=$(mkfs.fat -F 32 -n HAPX-ESP -i "$esp_serial" -h "$esp_start" -C "$work/esp.img" $(( esp_sectors / 2 )) 2>&1) ||
  fail "mkfs.fat failed: $fat_log"
MTOOLS_SKIP_CHECK=1 mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
MTOOLS_SKIP_CHECK=1 mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
dd if="$work/esp.img" of="$disk" bs=512 seek="$esp_start" conv=notrunc,sparse status=none
grub_version=$(grub-mkimage --version | awk '{print $NF}')
rm -f "$work/core.img" "$work/BOOTX64.EFI" "$work/esp.img" "$work/grub-early.cfg"

say "converting the disk to qcow2 (QEMU) and vdi (VirtualBox)"
qemu-img convert -O qcow2 "$disk" "$work/base.qcow2"
qemu-img convert -O vdi "$disk" "$work/base.vdi"
rm -f "$disk"
qcow2_bytes=$(stat -c %s "$work/base.qcow2")
vdi_bytes=$(stat -c %s "$work/base.vdi")

elapsed=$(( $(date +%s) - started ))
cat > "$work/image.json" <<JSON
{
  "key": "$key",
  "format": $image_format,
  "suite": "$suite",
  "mirror": "$mirror",
  "kernel": "$kernel_version",
  "packages": "$packages",
  "rootfsMb": $rootfs_mb,
  "disk": {
    "virtualBytes": $disk_bytes,
    "partitionTable": "dos",
    "diskId": "0x$disk_id",
    "partitions": [
      {"number": 1, "role": "esp", "type": "ef", "filesystem": "vfat", "label": "HAPX-ESP", "startSector": $esp_start, "sectors": $esp_sectors},
      {"number": 2, "role": "root", "type": "83", "bootable": true, "filesystem": "ext4", "label": "hapx-root", "uuid": "$root_uuid", "startSector": $root_start, "sectors": $root_sectors}
    ]
  },
  "bootLoader": {
    "name": "GRUB",
    "version": "$grub_version",
    "bios": "boot.img in the MBR, core image in sectors 1-$core_sectors",
    "biosCoreSectors": $core_sectors,
    "uefi": "EFI/BOOT/BOOTX64.EFI on partition 1",
    "config": "/boot/grub/grub.cfg on partition 2"
  },
  "modules": {$modules_json},
  "initramfsModules": [$initramfs_json],
  "initrdBytes": $initrd_bytes,
  "qcow2": {"path": "base.qcow2", "bytes": $qcow2_bytes},
  "vdi": {"path": "base.vdi", "bytes": $vdi_bytes},
  "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "buildSeconds": $elapsed
}
JSON
python3 -m json.tool "$work/image.json" >/dev/null || fail "image.json is not valid JSON"

rm -rf "$final"
mv "$work" "$final"
trap - EXIT
ln -sfn "$key" "$cache_dir/current"
say "built $final in ${elapsed}s (root $rootfs_mb MB, qcow2 $(du -h "$final/base.qcow2" | cut -f1), vdi $(du -h "$final/base.vdi" | cut -f1))"
