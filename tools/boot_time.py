"""Measure how long a base image takes from QEMU's start until sshd answers.

Boots a throwaway copy-on-write overlay of the image's base.qcow2 (4 GiB,
as the lab's nodes have) under TCG with one vCPU and 1 GiB, a minimal
NoCloud seed, and user-mode networking whose only way in is a port forward
on 127.0.0.1; then reads the TCP banner there until it says "SSH-". The
time to the kernel's banner on the serial console is printed as well, which
splits firmware and boot loader from the rest.

Three ways to boot:
  firmware  SeaBIOS, then the image's own GRUB from the MBR (format 2 images;
            what the lab does)
  uefi      OVMF (Debian's `ovmf` package), then GRUB from the ESP
  kernel    QEMU loads vmlinuz/initrd.img from the image directory with
            root=/dev/vda (format 1 images, which have no boot loader)

Two sets of hardware:
  virtio    the lab's: virtio disk, NIC and seed drive
  sata      VirtualBox's defaults: the disk and the seed (a CD-ROM) on an
            AHCI controller, an e1000 NIC; the guest sees /dev/sda and sr0

It boots VMs, so run it alone on the lab lock:

    flock /tmp/hapx-lab.lock python -m tools.boot_time --image-dir DIR --boot firmware --runs 3

Every QEMU it starts is stopped by its PID, and its files removed, also when
a run fails or is interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tools.seed_iso import build_seed_iso

OVERLAY_SIZE = "4G"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
SERIAL_BANNER = b"Linux version"


@dataclass
class BootRun:
    # Seconds from QEMU's start until...
    loader_s: float | None  # the first byte on the serial port (GRUB; for --boot kernel, the kernel)
    kernel_banner_s: float | None  # the kernel's banner on the serial port
    ssh_banner_s: float  # sshd's banner on the forwarded port


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh_banner(port: int) -> bool:
    # QEMU's user-mode stack accepts the connection itself even before the
    # guest listens, so only the banner proves that sshd is up.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def qemu_command(image_dir: Path, boot: str, hardware: str, work: Path, port: int) -> list[str]:
    disk = str(work / "disk.qcow2")
    command = [
        "qemu-system-x86_64",
        "-accel", "tcg,tb-size=256",
        "-cpu", "max", "-smp", "1", "-m", "1024",
        "-nodefaults", "-display", "none", "-no-user-config",
    ]
    if boot == "kernel":
        command += [
            "-kernel", str(image_dir / "vmlinuz"),
            "-initrd", str(image_dir / "initrd.img"),
            "-append", "root=/dev/vda rw console=ttyS0",
        ]
    elif boot == "uefi":
        # The firmware's variable store is per VM: a copy of the template.
        (work / "OVMF_VARS.fd").write_bytes(OVMF_VARS.read_bytes())
        command += [
            "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,file={work / 'OVMF_VARS.fd'}",
        ]
    root = f"file={disk},if=none,id=root,format=qcow2,cache=unsafe"
    # With -kernel, QEMU's own loader holds boot index 0.
    boot_from_disk = ",bootindex=0" if boot != "kernel" else ""
    seed = f"file={work / 'seed.iso'},if=none,id=seed,format=raw,readonly=on"
    forward = f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"
    if hardware == "sata":
        command += [
            "-device", "ahci,id=sata",
            "-drive", root, "-device", f"ide-hd,drive=root,bus=sata.0{boot_from_disk}",
            "-drive", seed, "-device", "ide-cd,drive=seed,bus=sata.1",
            "-netdev", forward, "-device", "e1000,netdev=mgmt",
        ]
    else:
        command += [
            "-drive", root, "-device", f"virtio-blk-pci,drive=root{boot_from_disk}",
            "-drive", seed, "-device", "virtio-blk-pci,drive=seed",
            "-netdev", forward, "-device", "virtio-net-pci,netdev=mgmt",
        ]
    command += [
        "-serial", f"file:{work / 'console.log'}",
        "-pidfile", str(work / "qemu.pid"),
        "-daemonize",
    ]
    return command


def stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(40):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.25)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def boot_once(image_dir: Path, boot: str, hardware: str, timeout_s: float, keep: Path | None) -> BootRun:
    with tempfile.TemporaryDirectory(prefix="hapx-boot-time-") as tmp:
        work = Path(tmp)
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
             "-b", str(image_dir / "base.qcow2"), str(work / "disk.qcow2"), OVERLAY_SIZE],
            check=True,
        )
        seed = build_seed_iso({
            "meta-data": f"instance-id: boot-time-{uuid.uuid4()}\nlocal-hostname: boot-time\n",
            "user-data": "#cloud-config\nssh_pwauth: false\n",
        })
        (work / "seed.iso").write_bytes(seed)
        port = free_loopback_port()
        pid = None
        started = time.monotonic()
        deadline = started + timeout_s
        ssh_up = threading.Event()
        ssh_at: list[float] = []

        def poll_ssh() -> None:
            # Its own thread: a probe can block for its 2 s timeout, the
            # console is read every 0.2 s meanwhile.
            while time.monotonic() < deadline and not ssh_up.is_set():
                if ssh_banner(port):
                    ssh_at.append(time.monotonic() - started)
                    ssh_up.set()
                    return
                time.sleep(0.5)

        try:
            subprocess.run(qemu_command(image_dir, boot, hardware, work, port), check=True)
            pid = int((work / "qemu.pid").read_text())
            poller = threading.Thread(target=poll_ssh, daemon=True)
            poller.start()
            loader_at = kernel_at = None
            console = work / "console.log"
            while time.monotonic() < deadline and not ssh_up.is_set():
                text = console.read_bytes() if console.exists() else b""
                now = time.monotonic() - started
                if loader_at is None and text:
                    loader_at = now
                if kernel_at is None and SERIAL_BANNER in text:
                    kernel_at = now
                ssh_up.wait(0.2)
            poller.join(timeout=5)
            if ssh_at:
                return BootRun(loader_at, kernel_at, round(ssh_at[0], 1))
            tail = console.read_bytes()[-2000:].decode(errors="replace")
            raise TimeoutError(f"no SSH banner within {timeout_s:.0f} s; console ends with:\n{tail}")
        finally:
            if pid is not None:
                stop(pid)
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                console = work / "console.log"
                if console.exists():
                    target = keep / f"console-{boot}-{hardware}-{time.strftime('%H%M%S')}.log"
                    target.write_bytes(console.read_bytes())


def seconds(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-dir", type=Path, default=Path("~/.cache/hapx/images/current").expanduser())
    parser.add_argument("--boot", choices=("firmware", "uefi", "kernel"), default="firmware")
    parser.add_argument("--hardware", choices=("virtio", "sata"), default="virtio")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep-console", type=Path, help="copy each run's serial console log into this directory")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per boot (default 300)")
    args = parser.parse_args()
    image_dir = args.image_dir.resolve()
    if args.boot == "kernel" and args.hardware != "virtio":
        parser.error("--boot kernel passes root=/dev/vda: virtio hardware only")
    needed = ["base.qcow2"] + (["vmlinuz", "initrd.img"] if args.boot == "kernel" else [])
    missing = [name for name in needed if not (image_dir / name).exists()]
    if missing:
        print(f"boot_time: {image_dir} has no {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.boot == "uefi" and not (OVMF_CODE.exists() and OVMF_VARS.exists()):
        print(f"boot_time: no UEFI firmware at {OVMF_CODE}; install it with 'apt-get install ovmf'", file=sys.stderr)
        return 2
    key = json.loads((image_dir / "image.json").read_text()).get("key", "?")
    results = []
    for run in range(1, args.runs + 1):
        result = boot_once(image_dir, args.boot, args.hardware, args.timeout, args.keep_console)
        results.append(result)
        print(f"image {key} boot {args.boot} on {args.hardware} run {run}: first serial output "
              f"{seconds(result.loader_s)} s, kernel banner {seconds(result.kernel_banner_s)} s, "
              f"ssh banner {result.ssh_banner_s:.1f} s", flush=True)
    ssh = [r.ssh_banner_s for r in results]
    print(f"image {key} boot {args.boot} on {args.hardware}: ssh banner median {statistics.median(ssh):.1f} s "
          f"(min {min(ssh):.1f}, max {max(ssh):.1f}, {len(ssh)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
