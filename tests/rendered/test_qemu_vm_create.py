"""The lab's VM scripts: the start script boots the base image's disk through its firmware, at a lower host
priority that the settled script takes back once the VM is ready; the update script keeps the running VM and
prints its id as the start script does."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from components.drivers.qemu.driver import BOOT_NICE
from harness.paths import REPO

from .conftest import require_tool, run


@pytest.fixture(scope="module")
def rendered_lab(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("render-lab")
    result = run([str(REPO / ".venv/bin/python"), "-m", "tools.render", "--stack", "lab", "--out", str(out)], cwd=REPO)
    assert result.returncode == 0, result.stderr
    for name in ("create", "update", "settled"):
        assert subprocess.run([require_tool("bash"), "-n", str(out / "hapx-node01" / f"qemu-vm-{name}.sh")]).returncode == 0
    return out / "hapx-node01"


@pytest.fixture(scope="module")
def vm_create(rendered_lab) -> str:
    return (rendered_lab / "qemu-vm-create.sh").read_text()


def qemu_start_args(script: str) -> list[str]:
    """The arguments of the command that starts the VM (the one with -daemonize and -name)."""
    start = script.index("qemu-system-x86_64 \\\n    -name")
    end = script.index("-daemonize", start)
    return shlex.split(script[start:end].replace("\\\n", " "))


def test_vm_boots_its_disk_through_the_firmware(vm_create):
    args = qemu_start_args(vm_create)
    for direct_boot in ("-kernel", "-initrd", "-append", "-bios"):
        assert direct_boot not in args
    drives = [args[i + 1] for i, a in enumerate(args) if a == "-drive"]
    devices = [args[i + 1] for i, a in enumerate(args) if a == "-device"]
    root = [d for d in drives if "disk.qcow2" in d]
    assert len(root) == 1 and "if=none" in root[0] and "format=qcow2" in root[0]
    drive_id = re.search(r"id=([\w-]+)", root[0]).group(1)
    # The firmware boots the root disk, never the seed drive.
    assert f"virtio-blk-pci,drive={drive_id},bootindex=0" in devices
    seed = [d for d in drives if ".iso" in d]
    assert len(seed) == 1 and "readonly=on" in seed[0] and "bootindex" not in seed[0]


def test_kvm_probe_boots_the_base_image_on_a_snapshot(vm_create):
    probe = vm_create[vm_create.index("detect_accel() {"):vm_create.index("\n}\n", vm_create.index("detect_accel() {"))]
    assert "vmlinuz" not in vm_create and "initrd" not in vm_create
    assert re.search(r'-drive file="\$image_dir/base\.qcow2",[^ ]*snapshot=on', probe), probe
    # Bounded: at most 40 polls, then the probe QEMU is stopped by its pid.
    assert "seq 40" in probe and 'kill "$probe_pid"' in probe and 'kill -9 "$probe_pid"' in probe



def test_the_vm_boots_niced_and_settles_at_normal_priority(vm_create, rendered_lab, tmp_path):
    assert f"nice -n {BOOT_NICE} qemu-system-x86_64 \\\n    -name" in vm_create
    # The settled script on a stand-in QEMU: a niced process with two threads (python's main and one more).
    settled = (rendered_lab / "qemu-vm-settled.sh").read_text()
    path = re.search(r"pid=\$\(cat (\S+)/qemu\.pid\)", settled).group(1)
    stand_in = subprocess.Popen(
        ["nice", "-n", str(BOOT_NICE), "python3", "-c", "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); time.sleep(60)"]
    )
    try:
        for _ in range(50):  # its second thread starts within 5 s
            if len(os.listdir(f"/proc/{stand_in.pid}/task")) >= 2:
                break
            subprocess.run(["sleep", "0.1"])
        niceness = lambda: {int(open(f"/proc/{stand_in.pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()[16]) for t in os.listdir(f"/proc/{stand_in.pid}/task")}  # noqa: E731
        assert niceness() == {BOOT_NICE}
        (tmp_path / "qemu.pid").write_text(str(stand_in.pid))
        result = run(["sh", "-c", settled.replace(path, shlex.quote(str(tmp_path)))])
        assert result.returncode == 0, result.stderr
        assert niceness() == {0}, "every thread back at normal priority"
    finally:
        stand_in.kill()
        stand_in.wait()


def test_the_update_keeps_the_vm_and_prints_its_id_as_create_does(vm_create, rendered_lab, tmp_path):
    update = (rendered_lab / "qemu-vm-update.sh").read_text()
    path = re.search(r"cat (\S+)/instance-id", update).group(1)
    assert 'echo "qemu-instance=$(cat "$vm_dir/instance-id")"' in vm_create
    (tmp_path / "instance-id").write_text("0123abcd\n")
    result = run(["sh", "-c", update.replace(path, shlex.quote(str(tmp_path)))])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "qemu-instance=0123abcd"
