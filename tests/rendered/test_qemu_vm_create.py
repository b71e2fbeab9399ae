"""The lab's VM start script boots the base image's disk through its firmware."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from harness.paths import REPO

from .conftest import require_tool, run


@pytest.fixture(scope="module")
def vm_create(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("render-lab")
    result = run([str(REPO / ".venv/bin/python"), "-m", "tools.render", "--stack", "lab", "--out", str(out)], cwd=REPO)
    assert result.returncode == 0, result.stderr
    script = out / "hapx-node01" / "qemu-vm-create.sh"
    assert subprocess.run([require_tool("bash"), "-n", str(script)]).returncode == 0
    return script.read_text()


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

