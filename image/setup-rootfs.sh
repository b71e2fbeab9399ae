#!/bin/sh
# Runs inside the freshly debootstrapped root (chroot) to turn it into the
# hapx base image. Everything node-specific comes later from cloud-init.
set -eu

# The root file system is found by its UUID (build.sh gives it to mkfs and
# here), never by device name: the disk is /dev/vda on virtio (QEMU) and
# /dev/sda on SATA/AHCI (VirtualBox).
: "${HAPX_ROOT_UUID:?build.sh passes the root file system's UUID}"
cat > /etc/fstab <<FSTAB
UUID=$HAPX_ROOT_UUID / ext4 defaults,errors=remount-ro 0 1
FSTAB

# GRUB's configuration, read by both boot paths (BIOS: the core image in the
# MBR gap; UEFI: EFI/BOOT/BOOTX64.EFI on the ESP), each of which finds this
# file system by its UUID. No menu delay. GRUB and the kernel talk on the
# first serial port as well as the screen; the kernel's last console
# (ttyS0) is the one systemd and the login prompt use. /vmlinuz and
# /initrd.img are the links the kernel package keeps to the newest kernel,
# so a kernel upgrade inside a VM needs no GRUB run.
mkdir -p /boot/grub
cat > /boot/grub/grub.cfg <<GRUB
# hapx base image (written by image/setup-rootfs.sh)
set timeout=0
set timeout_style=hidden
if serial --unit=0 --speed=115200; then
  terminal_input --append serial
  terminal_output --append serial
fi
menuentry 'Debian GNU/Linux (hapx)' {
  linux /vmlinuz root=UUID=$HAPX_ROOT_UUID ro console=tty0 console=ttyS0,115200n8
  initrd /initrd.img
}
GRUB
[ -e /vmlinuz ] && [ -e /initrd.img ] || { echo "hapx image: no /vmlinuz or /initrd.img link in the root" >&2; exit 1; }

# The initramfs carries only what finds and mounts the root, not the whole
# generic kernel's storage and network drivers ("most": 36 MB, which every
# boot reads through the BIOS and unpacks; this list: about 7 MB). Disks:
# virtio (QEMU); AHCI, PIIX IDE, virtio-scsi and NVMe (VirtualBox's
# controllers); then ext4 and the checksum its metadata uses. Their
# dependencies come along. gzip: the image has no zstd.
cat > /etc/initramfs-tools/conf.d/hapx.conf <<'CONF'
MODULES=list
COMPRESS=gzip
CONF
cat > /etc/initramfs-tools/modules <<'LIST'
virtio_pci
virtio_blk
virtio_scsi
ahci
ata_piix
nvme
sd_mod
ext4
crc32c_generic
LIST
update-initramfs -u -k all >/dev/null

# cloud-init: the seed ISO is the only data source; skip probing for clouds.
cat > /etc/cloud/cloud.cfg.d/90-hapx.cfg <<'CFG'
datasource_list: [NoCloud, None]
CFG

# Every clone must get its own identity at first boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -f /etc/ssh/ssh_host_*

# The cluster stack is enabled but starts only on a node whose seed wrote
# the corosync authkey (cloud-init's write_files runs before these units).
# Enabling here spares each first boot the slow systemd-sysv-install calls.
# haproxy is started by Pacemaker, never by systemd on its own.
for unit in corosync pacemaker; do
  mkdir -p "/etc/systemd/system/$unit.service.d"
  cat > "/etc/systemd/system/$unit.service.d/hapx-seeded.conf" <<'UNIT'
[Unit]
ConditionPathExists=/etc/corosync/authkey
UNIT
done
systemctl enable corosync.service pacemaker.service >/dev/null 2>&1
# The cluster metrics exporter listens on all addresses by default, without
# credentials: it starts only once the seed wrote hapx's arguments (loopback;
# haproxy relays it behind the stats credentials).
mkdir -p /etc/systemd/system/ha_cluster_exporter.service.d
cat > /etc/systemd/system/ha_cluster_exporter.service.d/hapx-seeded.conf <<'UNIT'
[Unit]
ConditionPathExists=/etc/sysconfig/prometheus-ha_cluster_exporter
UNIT
systemctl enable ha_cluster_exporter.service >/dev/null 2>&1
systemctl disable haproxy.service keepalived.service >/dev/null 2>&1 || true

# No address-space randomisation under pure emulation (QEMU TCG), from the
# first boot on (build.sh put the unit here; it is a no-op elsewhere).
systemctl enable hapx-emulated-no-aslr.service >/dev/null 2>&1

# No root password; the admin user from cloud-init logs in with its key.
passwd -l root >/dev/null

# A login prompt on the serial console (console=ttyS0 in grub.cfg).
systemctl enable serial-getty@ttyS0.service 2>/dev/null || true

# en_US.UTF-8, as the seed's user-data asks for.
# Generated and set here, so cloud-init's locale module has nothing to do.
sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
locale-gen >/dev/null
update-locale LANG=en_US.UTF-8

apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/*.log /tmp/* /var/tmp/*
