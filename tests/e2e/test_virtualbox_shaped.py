"""The VirtualBox driver end to end, on QEMU hardware shaped like VirtualBox.

`pulumi up` of the dev topology (the reference design: VLAN 41 on the
cluster NIC, static host-only management addresses) with the *VirtualBox*
driver: its VBoxManage scripts, its seeds, and a base VM that hapx makes
from `make image`'s base.vdi. VBoxManage is the stand-in in
tests/fixtures/fake_vboxmanage.py with its QEMU backend (vbox_qemu.py): each
node boots by its BIOS from a VDI on an AHCI controller, the seed ISO is a
SATA CD-ROM on port 1 where the driver attaches it, the NICs are Intel
82540EM at PCI slots 3 and 8 with the MACs the driver computed. The internal
network `dmz` is a plain bridge (it forwards the guests' VLAN 41 tags; this
host's kernel cannot tag) and vboxnet0 is a bridge holding the host's
192.168.56.1, all inside a network namespace this test creates; Pulumi
itself runs in that namespace, so its SSH reaches the nodes' own addresses
and no packet leaves the namespace.

What this proves: the guest side of a VirtualBox deployment (firmware boot,
disk and seed on SATA, NIC names, VLAN 41, cluster, VIP, failover) and the
order of the VBoxManage calls hapx makes. What it cannot: VirtualBox itself
(its VBoxManage, its networking, its BIOS): see docs/virtualbox.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.paths import REPO, stack_config
from tests.e2e.conftest import FIGURES, IMAGE_DIR
from harness.workspace import PulumiWorkspace

pytestmark = pytest.mark.e2e

STAND_IN = REPO / "tests" / "fixtures" / "fake_vboxmanage.py"
STACK = "vbx"
BASE_VM = "hapx-vbx-base"
NODES = {"hapx-node01": "192.168.56.21", "hapx-node02": "192.168.56.22"}
VIP = "192.168.4.20"


class VboxLab:
    """The namespace, the stand-in's state and a Pulumi workspace that runs in the namespace."""

    def __init__(self, root: Path):
        self.root = root
        self.namespace = f"hx-vbx-{os.getpid() % 10000}"
        self.vbox_env = {
            "FAKE_VBOX_QEMU": "1",
            "FAKE_VBOX_STATE": str(root / "vbox-state.json"),
            "FAKE_VBOX_LOG": str(root / "vbox-calls.log"),
            "FAKE_VBOX_HOME": str(root / "VirtualBox VMs"),
        }
        self.workspace = PulumiWorkspace(root / "pulumi", prefix=("ip", "netns", "exec", self.namespace))
        self.workspace.env.update(self.vbox_env)
        config = stack_config("dev")
        config["hapx:virtualbox"] = {
            **config["hapx:virtualbox"],
            "vboxmanage": str(STAND_IN),
            "baseImage": str(IMAGE_DIR / "base.vdi"),
            "baseVm": BASE_VM,
            "seedDir": str(root / "seeds"),
        }
        # Both nodes at once, as the shared lab (a rolling first build waits for each node in turn, minutes here).
        config["hapx:rollout"] = "all-at-once"
        # `pulumi up` waits for the VIP's handover off the DC once the nodes are settled: 20 s, as on the lab, not 60.
        config["hapx:pacemaker"] = {**(config.get("hapx:pacemaker") or {}), "vipHandoverAfterS": 20}
        self.config = config

    def create(self) -> None:
        subprocess.run(["ip", "netns", "add", self.namespace], check=True)
        subprocess.run(["ip", "-n", self.namespace, "link", "set", "lo", "up"], check=True)
        self.workspace.init_stack(STACK, self.config)

    def pulumi(self, *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
        return self.workspace.run(*args, stack=STACK, check=check, timeout=timeout)

    def vboxmanage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, str(STAND_IN), *args],
            env={**os.environ, **self.vbox_env}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def calls(self) -> list[list[str]]:
        path = Path(self.vbox_env["FAKE_VBOX_LOG"])
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def vms(self) -> dict:
        path = Path(self.vbox_env["FAKE_VBOX_STATE"])
        return json.loads(path.read_text())["vms"] if path.exists() else {}

    def key_file(self) -> Path:
        path = self.root / "admin-key"
        if not path.exists():
            key = self.workspace.outputs(STACK, show_secrets=True)["adminPrivateKey"]
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key if key.endswith("\n") else key + "\n")
        return path

    def ssh(self, node: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [
            "ip", "netns", "exec", self.namespace,
            "ssh", "-i", str(self.key_file()), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
            f"debian@{NODES[node]}", command,
        ]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def vip_holders(self, nodes=None) -> list[str]:
        holders = []
        for node in nodes or NODES:
            out = self.ssh(node, "ip -o -4 addr show dev dmz0.41", timeout=20).stdout
            if f" {VIP}/" in out:
                holders.append(node)
        return holders

    def qemu_pids(self) -> list[int]:
        pids = []
        for vm in self.vms().values():
            pid = vm.get("pid")
            if pid and Path(f"/proc/{pid}").exists():
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if f"vbox-{vm['uuid']}".encode() in cmdline:
                    pids.append(pid)
        return pids

    def teardown(self) -> None:
        if self.vms().keys() - {"debian-base-image"}:
            self.pulumi("destroy", "--yes", "--skip-preview", check=False, timeout=900)
        for pid in self.qemu_pids():  # what a failed destroy left running
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True)


def wait_for(predicate, timeout_s: float, interval_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)


# A client inside a guest (the host cannot tag VLAN 41): the stats page at
# the VIP, its HTTP status for these credentials.
STATS_STATUS = (
    "python3 -c 'import base64,sys,urllib.request as u\n"
    "r=u.Request(sys.argv[1],headers={\"Authorization\":\"Basic \"+base64.b64encode(sys.argv[2].encode()).decode()})\n"
    "try:\n print(u.urlopen(r,timeout=5).status)\n"
    "except u.HTTPError as e:\n print(e.code)\n' http://" + VIP + ":32700/ "
)


@pytest.fixture(scope="module")
def vbox(tmp_path_factory):
    if not (IMAGE_DIR / "base.vdi").exists():
        pytest.fail(f"no base.vdi in {IMAGE_DIR}: run `make image`", pytrace=False)
    lab = VboxLab(tmp_path_factory.mktemp("vbox"))
    lab.create()
    yield lab
    lab.teardown()


def test_up_builds_the_base_vm_and_two_virtualbox_shaped_nodes(vbox):
    started = time.monotonic()
    vbox.pulumi("up", "--yes", "--skip-preview")
    FIGURES["vboxShapedUpFromNothingS"] = round(time.monotonic() - started, 1)

    ops = [c[0] + (f" {c[1]}" if c[0] == "hostonlyif" else "") for c in vbox.calls()]
    # The host-only network and the base VM from the image (independent of
    # each other), then the nodes cloned from that base VM.
    first_clone = ops.index("clonevm")
    assert ops.index("hostonlyif create") < first_clone
    assert ops.index("createvm") < ops.index("clonemedium") < ops.index("storageattach") < first_clone
    clones = [c for c in vbox.calls() if c[0] == "clonevm"]
    assert sorted(c[2] for c in clones) == ["--name=hapx-node01", "--name=hapx-node02"]
    assert all(c[1] == BASE_VM for c in clones)
    assert len(vbox.qemu_pids()) == 2


@pytest.mark.parametrize("node", sorted(NODES))
def test_the_guest_sees_virtualbox_hardware(vbox, node):
    facts = vbox.ssh(
        node,
        "udevadm info -q property -p /sys/class/net/dmz0 | grep ^ID_NET_NAME_PATH=;"
        "udevadm info -q property -p /sys/class/net/mgmt0 | grep ^ID_NET_NAME_PATH=;"
        "cat /sys/class/net/dmz0/device/device; findmnt -n -o SOURCE /; sudo blkid -L cidata;"
        "test -d /sys/firmware/efi && echo uefi || echo bios; ip -d -o link show dmz0.41; ip -o -4 addr show dev mgmt0",
    )
    assert facts.returncode == 0, facts.stderr
    lines = facts.stdout.splitlines()
    # Debian's names on VirtualBox: NIC 1 (the cluster NIC) enp0s3, NIC 2 enp0s8.
    assert lines[0] == "ID_NET_NAME_PATH=enp0s3" and lines[1] == "ID_NET_NAME_PATH=enp0s8", lines
    assert lines[2] == "0x100e", "an Intel 82540EM"
    assert lines[3].startswith("/dev/sda"), "root on the AHCI disk"
    assert lines[4] == "/dev/sr0", "the seed on the SATA CD-ROM"
    assert lines[5] == "bios"
    assert "vlan protocol 802.1Q id 41" in lines[6]
    assert f"inet {NODES[node]}/24" in lines[7], "the static host-only address from the seed"


def test_cluster_forms_over_vlan_41_and_the_vip_answers(vbox):
    status = vbox.ssh("hapx-node01", "sudo crm_mon -1").stdout
    assert "Online: [ hapx-node01 hapx-node02 ]" in status, status
    # The ring's addresses (corosync.conf's nodelist) exist only on VLAN 41,
    # so the nodes saw each other across the tagged segment.
    assert "inet 192.168.4.21/27" in vbox.ssh("hapx-node01", "ip -o -4 addr show dev dmz0.41").stdout
    holders = vbox.vip_holders()
    assert len(holders) == 1, holders
    (client,) = [n for n in NODES if n not in holders]
    outputs = vbox.workspace.outputs(STACK, show_secrets=True)
    # From the other node, across VLAN 41: the stack's password opens the
    # stats page, another does not.
    good = vbox.ssh(client, STATS_STATUS + f"'{outputs['statsUser']}:{outputs['statsPassword']}'")
    assert good.stdout.strip() == "200", good.stdout + good.stderr
    bad = vbox.ssh(client, STATS_STATUS + f"'{outputs['statsUser']}:not-the-password'")
    assert bad.stdout.strip() == "401", bad.stdout + bad.stderr


def test_powering_off_the_vip_holder_moves_the_vip(vbox):
    (holder,) = vbox.vip_holders()
    (survivor,) = [n for n in NODES if n != holder]
    outputs = vbox.workspace.outputs(STACK, show_secrets=True)
    credentials = f"'{outputs['statsUser']}:{outputs['statsPassword']}'"
    powered_off = vbox.vboxmanage("controlvm", holder, "poweroff")
    assert powered_off.returncode == 0, powered_off.stderr
    started = time.monotonic()

    def survivor_serves() -> bool:
        return vbox.vip_holders([survivor]) == [survivor] and vbox.ssh(survivor, STATS_STATUS + credentials).stdout.strip() == "200"

    assert wait_for(survivor_serves, 180), vbox.ssh(survivor, "sudo crm_mon -1").stdout
    # A sanity bound, not a measurement (the lab's make bench measures).
    FIGURES["vboxShapedPowerOffServedAgainS"] = round(time.monotonic() - started, 1)
    assert vbox.vms()[holder].get("pid") is None or not Path(f"/proc/{vbox.vms()[holder]['pid']}").exists()


def test_destroy_removes_what_hapx_made_and_nothing_else(vbox):
    vbox.pulumi("destroy", "--yes", "--skip-preview", timeout=900)
    # The operator's own VM (the stand-in starts with one) is untouched;
    # hapx's base VM, its copy of the image and the nodes are gone.
    assert set(vbox.vms()) == {"debian-base-image"}
    assert vbox.qemu_pids() == []
    assert (IMAGE_DIR / "base.vdi").exists()
    assert not any(Path(vbox.vbox_env["FAKE_VBOX_HOME"]).glob("*/*.vdi"))
    links = subprocess.run(["ip", "-n", vbox.namespace, "-o", "link"], capture_output=True, text=True).stdout
    assert "vboxnet0" not in links
    # The nodes go first; then the base VM they were cloned from and the
    # host-only network they were attached to.
    calls = vbox.calls()
    last_node_gone = max(i for i, c in enumerate(calls) if c[:2] in (["unregistervm", "hapx-node01"], ["unregistervm", "hapx-node02"]))
    assert last_node_gone < calls.index(["unregistervm", BASE_VM, "--delete"])
    assert last_node_gone < calls.index(["hostonlyif", "remove", "vboxnet0"])
