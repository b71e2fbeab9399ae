"""The base image that `make image` built, read from its files (no VM boots).

Checks the partition table, both boot paths' GRUB images, that base.vdi is
the same disk as base.qcow2, image.json's record, and the root file system's
contents (fstab, grub.cfg, the kernel's drivers) read with debugfs from a
raw copy of the disk. The lab's end-to-end tests prove that the disk boots.

Like the e2e tests, these fail when the image is missing: `make test` builds
it first. HAPX_IMAGE_DIR points them at another image directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.rendering import EMULATED_NO_ASLR_UNIT, node_agent_files

IMAGE_DIR = Path(os.environ.get("HAPX_IMAGE_DIR", "~/.cache/hapx/images/current")).expanduser()
SECTOR = 512
# Drivers the image must carry: disks on virtio (QEMU) and AHCI (VirtualBox),
# both NICs, the NoCloud seed as a SATA CD-ROM, VLAN 41 in the guest.
REQUIRED_MODULES = {"ahci", "libahci", "sd_mod", "virtio_pci", "virtio_blk", "virtio_net", "e1000",
                    "sr_mod", "cdrom", "isofs", "8021q", "ext4"}
# What the initramfs needs to find the root on virtio and on AHCI.
INITRAMFS_MODULES = {"ahci", "libahci", "sd_mod", "virtio_pci", "virtio_blk", "ext4", "crc32c_generic"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run `make setup`")
    return path


def run(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(cmd)} failed: {result.stderr}"
    return result.stdout


def image_info(path: Path) -> dict[str, Any]:
    return json.loads(run([tool("qemu-img"), "info", "--output=json", str(path)]))


def read_sectors(image: Path, fmt: str, out: Path, skip: int, count: int) -> bytes:
    """Sectors [skip, skip+count) of a qcow2 or vdi disk, as raw bytes (also written to out)."""
    run([tool("qemu-img"), "dd", "-f", fmt, "-O", "raw", f"bs={SECTOR}", f"skip={skip}", f"count={count}",
         f"if={image}", f"of={out}"])
    return out.read_bytes()


@pytest.fixture(scope="module")
def image_dir() -> Path:
    if not (IMAGE_DIR / "image.json").exists():
        pytest.fail(f"no base image in {IMAGE_DIR}: run `make image`", pytrace=False)
    return IMAGE_DIR.resolve()


@pytest.fixture(scope="module")
def record(image_dir) -> dict[str, Any]:
    return json.loads((image_dir / "image.json").read_text())


@pytest.fixture(scope="module")
def head(image_dir, tmp_path_factory) -> Path:
    """The first MiB of base.qcow2: MBR, partition table and GRUB's core image."""
    out = tmp_path_factory.mktemp("head") / "head.raw"
    read_sectors(image_dir / "base.qcow2", "qcow2", out, 0, 2048)
    return out


@pytest.fixture(scope="module")
def partitions(record) -> dict[str, dict[str, Any]]:
    return {p["role"]: p for p in record["disk"]["partitions"]}


@pytest.fixture(scope="module")
def root_fs(image_dir, partitions, tmp_path_factory) -> str:
    """A raw copy of the disk (sparse), addressed at the root partition, for debugfs."""
    raw = tmp_path_factory.mktemp("disk") / "disk.raw"
    run([tool("qemu-img"), "convert", "-f", "qcow2", "-O", "raw", str(image_dir / "base.qcow2"), str(raw)])
    return f"{raw}?offset={partitions['root']['startSector'] * SECTOR}"


def debugfs(root_fs: str, request: str) -> str:
    result = subprocess.run([tool("debugfs"), "-R", request, root_fs], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_image_json_records_the_build(record):
    assert record["format"] >= 2
    assert re.fullmatch(r"[0-9a-f]{16}", record["key"])
    assert isinstance(record["buildSeconds"], int) and record["buildSeconds"] > 0
    assert record["disk"]["partitionTable"] == "dos"
    assert record["bootLoader"]["name"] == "GRUB"
    assert {"bios", "uefi", "config"} <= set(record["bootLoader"])
    assert record["qcow2"]["path"] == "base.qcow2"
    assert record["vdi"]["path"] == "base.vdi"


def test_qcow2_and_vdi_are_the_same_disk(image_dir, record, head, tmp_path):
    qcow2 = image_info(image_dir / "base.qcow2")
    vdi = image_info(image_dir / "base.vdi")
    assert qcow2["format"] == "qcow2"
    assert vdi["format"] == "vdi"
    assert "backing-filename" not in qcow2 and "backing-filename" not in vdi
    assert qcow2["virtual-size"] == vdi["virtual-size"] == record["disk"]["virtualBytes"]
    assert (image_dir / "base.qcow2").stat().st_size == record["qcow2"]["bytes"]
    assert (image_dir / "base.vdi").stat().st_size == record["vdi"]["bytes"]
    # Same boot sector, partition table and GRUB core image in both.
    assert read_sectors(image_dir / "base.vdi", "vdi", tmp_path / "vdi-head.raw", 0, 2048) == head.read_bytes()


def test_partition_table_is_esp_then_root_to_the_end(head, record, partitions):
    # sfdisk reads the table from the first MiB; the partitions reach past it.
    table = json.loads(run([tool("sfdisk"), "--json", str(head)]))["partitiontable"]
    assert table["label"] == "dos"
    assert table["id"] == record["disk"]["diskId"]
    found = [(p["start"], p["size"], p["type"], p.get("bootable", False)) for p in table["partitions"]]
    esp, root = partitions["esp"], partitions["root"]
    assert found == [
        (esp["startSector"], esp["sectors"], "ef", False),
        (root["startSector"], root["sectors"], "83", True),
    ]
    assert esp["startSector"] == 2048, "the MBR gap (sectors 1-2047) holds GRUB's core image"
    assert esp["startSector"] + esp["sectors"] == root["startSector"]
    assert (root["startSector"] + root["sectors"]) * SECTOR == record["disk"]["virtualBytes"], \
        "the root partition is last and fills the disk, so growpart can grow it"


def test_bios_boot_code_is_grub(head, record):
    data = head.read_bytes()
    mbr, diskboot = data[:SECTOR], data[SECTOR:2 * SECTOR]
    assert mbr[510:512] == b"\x55\xaa"
    assert b"GRUB " in mbr[:440], "GRUB's boot.img in the MBR"
    # boot.img loads sector 1 (its built-in default) ...
    assert int.from_bytes(mbr[0x5C:0x64], "little") == 1
    # ... GRUB's diskboot.img, whose block list (the sector's last 12 bytes:
    # start, count, segment) loads the rest of the core image from sector 2.
    assert b"loading" in diskboot
    core_sectors = record["bootLoader"]["biosCoreSectors"]
    assert core_sectors < record["disk"]["partitions"][0]["startSector"]
    start, count, segment = struct.unpack("<QHH", diskboot[-12:])
    assert (start, count, segment) == (2, core_sectors - 1, 0x820)
    grub = Path("/usr/lib/grub/i386-pc")
    if grub.exists():  # the GRUB the build used: the code is its, byte for byte
        expected = bytearray((grub / "boot.img").read_bytes()[:440])
        expected[0x66:0x68] = b"\x90\x90"  # the hard-disk patch grub-bios-setup makes too
        assert mbr[:440] == bytes(expected)
        assert diskboot[:-12] == (grub / "diskboot.img").read_bytes()[:-12]


def test_esp_holds_the_uefi_loader(image_dir, partitions, tmp_path):
    esp = partitions["esp"]
    raw = tmp_path / "esp.raw"
    read_sectors(image_dir / "base.qcow2", "qcow2", raw, esp["startSector"], esp["sectors"])
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    loader = tmp_path / "BOOTX64.EFI"
    result = subprocess.run([tool("mcopy"), "-i", str(raw), "::/EFI/BOOT/BOOTX64.EFI", str(loader)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert loader.read_bytes()[:2] == b"MZ", "a PE/COFF executable, as UEFI loads"
    assert b"x86_64-efi" in loader.read_bytes()
    label = subprocess.run([tool("mlabel"), "-i", str(raw), "-s", "::"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert "HAPX-ESP" in label.stdout


def test_root_file_system_is_found_by_uuid(root_fs, partitions):
    uuid = partitions["root"]["uuid"]
    superblock = run([tool("dumpe2fs"), "-h", root_fs])
    assert re.search(rf"^Filesystem UUID:\s+{uuid}$", superblock, re.M)
    assert re.search(r"^Filesystem volume name:\s+hapx-root$", superblock, re.M)
    fstab = debugfs(root_fs, "cat /etc/fstab")
    assert re.search(rf"^UUID={uuid}\s+/\s+ext4\s", fstab, re.M), fstab
    assert "/dev/vda" not in fstab and "/dev/sda" not in fstab


def test_grub_cfg_boots_at_once_with_a_serial_console(root_fs, partitions):
    cfg = debugfs(root_fs, "cat /boot/grub/grub.cfg")
    assert re.search(r"^set timeout=0$", cfg, re.M), "no boot-menu delay"
    linux = re.search(r"^\s*linux\s+(\S+)\s+(.*)$", cfg, re.M)
    assert linux, cfg
    kernel_args = linux.group(2).split()
    assert f"root=UUID={partitions['root']['uuid']}" in kernel_args
    assert "console=tty0" in kernel_args
    assert any(a.startswith("console=ttyS0") for a in kernel_args)
    assert kernel_args.index("console=tty0") < [i for i, a in enumerate(kernel_args) if a.startswith("console=ttyS0")][0], \
        "ttyS0 last: systemd and the login prompt use the last console"
    # The kernel and initrd links grub.cfg names exist in the root.
    for link in (linux.group(1), re.search(r"^\s*initrd\s+(\S+)", cfg, re.M).group(1)):
        assert "Type: symlink" in debugfs(root_fs, f"stat {link}"), link


def test_kernel_carries_the_virtualbox_and_qemu_drivers(root_fs, record):
    modules = record["modules"]
    assert REQUIRED_MODULES <= set(modules)
    for name, where in modules.items():
        if where == "builtin":
            continue
        path = f"/lib/modules/{record['kernel']}/{where}"
        assert "Type: regular" in debugfs(root_fs, f"stat {path}"), f"{name}: {path} is not in the image"
    assert INITRAMFS_MODULES <= set(record["initramfsModules"])
    assert "Type: regular" in debugfs(root_fs, f"stat /boot/initrd.img-{record['kernel']}")


def test_no_randomisation_under_emulation_from_the_first_boot(root_fs):
    # The unit the agents step installs (components/rendering.py), here
    # byte for byte and enabled, so a node made from this image starts its
    # first boot without randomisation under TCG and nothing translated
    # before it lingers in QEMU's cache (docs/troubleshooting.md).
    (shipped,) = [f.content for f in node_agent_files(None, 60) if f.path == EMULATED_NO_ASLR_UNIT]
    assert debugfs(root_fs, f"cat {EMULATED_NO_ASLR_UNIT}") == shipped
    link = debugfs(root_fs, "stat /etc/systemd/system/sysinit.target.wants/hapx-emulated-no-aslr.service")
    assert "Type: symlink" in link, link
    assert EMULATED_NO_ASLR_UNIT in link, link
