#!/usr/bin/env bash
# One-shot set-up for a fresh Debian 12 machine (and idempotent on re-runs):
# the real tools the tests drive, and the project's Python virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Real tools: haproxy -c, crmsh/cibadmin/crm_verify/crm_simulate, corosync -t,
# cloud-init's schema checker, xorriso (reads ISOs back), iproute2 (netns).
# The QEMU lab: qemu, qemu-img. `make image`: debootstrap, sfdisk (fdisk),
# mkfs.ext4 (e2fsprogs), mkfs.fat (dosfstools) and mtools for the ESP, and
# GRUB's BIOS and UEFI images (grub-pc-bin, grub-efi-amd64-bin: files only,
# they never touch this host's own boot loader).
# openssh-server: the command provider's tests run a throwaway sshd.
# strace: a rendered test shows which files `haproxy -c` opens.
PACKAGES=(haproxy pacemaker pacemaker-cli-utils crmsh corosync cloud-init xorriso iproute2 openssh-client python3-venv
  qemu-system-x86 qemu-utils debootstrap e2fsprogs fdisk dosfstools mtools grub-pc-bin grub-efi-amd64-bin
  openssh-server strace)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  cloud_init_was_installed=$(dpkg-query -W -f='${Status}' cloud-init 2>/dev/null | grep -c "install ok installed" || true)
  say "installing ${missing[*]} (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$cloud_init_was_installed" = 0 ]; then
    # cloud-init is here for its schema checker only: keep it from ever
    # configuring this host at boot.
    $SUDO mkdir -p /etc/cloud && $SUDO touch /etc/cloud/cloud-init.disabled
  fi
else
  say "system packages present"
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
say "installing Python dependencies (requirements-dev.txt)"
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt

say "Pulumi engine: CLI, Python language host, command provider (engine/build.sh)"
bash engine/build.sh >/dev/null
say "done"
