#!/bin/sh
# Runs inside the freshly debootstrapped root (chroot) to turn it into the
# hapx base image. Everything node-specific comes later from cloud-init.
set -eu

# Root file system: the whole virtual disk is one ext4 file system (no
# partition table); QEMU boots the kernel directly with root=/dev/vda.
cat > /etc/fstab <<'FSTAB'
/dev/vda / ext4 defaults,errors=remount-ro 0 1
FSTAB

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
systemctl disable haproxy.service keepalived.service >/dev/null 2>&1 || true

# No root password; the admin user from cloud-init logs in with its key.
passwd -l root >/dev/null

# A serial console that QEMU can log (console=ttyS0 on the kernel line).
systemctl enable serial-getty@ttyS0.service 2>/dev/null || true

# en_US.UTF-8, as the seed's user-data asks for.
# Generated and set here, so cloud-init's locale module has nothing to do.
sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
locale-gen >/dev/null
update-locale LANG=en_US.UTF-8

apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/*.log /tmp/* /var/tmp/*
