"""The VirtualBox scripts hapx runs, executed against a VBoxManage stand-in that
checks each call against the VirtualBox 7 syntax and keeps state, so we see
that create converges after an interruption and delete leaves nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from components.config import parse_config
from components.drivers.virtualbox.driver import VirtualBoxDriver, vbox_mac
from harness.paths import REPO, stack_config

FAKE = REPO / "tests/fixtures/fake_vboxmanage.py"


@pytest.fixture
def vbox(tmp_path):
    raw = stack_config("dev")
    raw["hapx:virtualbox"] = {**raw["hapx:virtualbox"], "vboxmanage": str(FAKE), "seedDir": str(tmp_path / "seeds")}
    cfg = parse_config(raw)
    driver = VirtualBoxDriver(cfg, "dev")
    state, log = tmp_path / "state.json", tmp_path / "calls.log"
    env = {**os.environ, "FAKE_VBOX_STATE": str(state), "FAKE_VBOX_LOG": str(log)}

    def run(script: str, **extra) -> subprocess.CompletedProcess:
        return subprocess.run(["/bin/sh", "-c", script], env={**env, **extra}, capture_output=True, text=True, timeout=60)

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def vms() -> dict:
        return json.loads(state.read_text())["vms"] if state.exists() else {}

    node = cfg.nodes[0]
    spec = driver.vm_spec(node, 0)
    seed = driver.seed_path(node)
    Path(seed).parent.mkdir(parents=True)
    Path(seed).write_bytes(b"iso")
    return driver, spec, driver.vm_scripts(spec, seed), run, calls, vms


def test_create_clones_configures_attaches_and_starts(vbox):
    driver, spec, scripts, run, calls, vms = vbox
    result = run(scripts.create)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "vbox-uuid=uuid-hapx-node01-1"
    made = [c[0] for c in calls() if c[0] != "showvminfo"]
    assert made == ["clonevm", "modifyvm", "storageattach", "startvm"]
    clone = next(c for c in calls() if c[0] == "clonevm")
    assert clone == ["clonevm", "debian-base-image", "--name=hapx-node01", "--register", "--mode=all"]
    modify = next(c for c in calls() if c[0] == "modifyvm")
    assert "--nic1=intnet" in modify and "--intnet1=dmz" in modify
    assert "--nic2=hostonly" in modify and "--host-only-adapter2=vboxnet0" in modify
    assert f"--macaddress1={vbox_mac(spec.network.cluster.mac)}" in modify
    assert vms()["hapx-node01"]["state"] == "running"
    assert vms()["hapx-node01"]["media"] == {"SATA:1:0": driver.seed_path(spec.node)}


def test_update_keeps_the_vm_and_prints_its_id_as_create_does(vbox):
    _, _, scripts, run, calls, vms = vbox
    created = run(scripts.create)
    before = len(calls())
    updated = run(scripts.update)
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout.strip() == created.stdout.strip() == "vbox-uuid=uuid-hapx-node01-1"
    assert {c[0] for c in calls()[before:]} == {"showvminfo"}, "the update touches nothing"
    assert scripts.settled == "", "VirtualBox VMs need no step after boot"


def test_rerun_after_interruption_converges(vbox):
    _, _, scripts, run, calls, vms = vbox
    # The first run dies after the clone (modifyvm fails once)...
    first = run(scripts.create, FAKE_VBOX_FAIL_ONCE="modifyvm")
    assert first.returncode != 0
    assert vms()["hapx-node01"]["state"] == "poweroff"
    # ...the re-run finishes the half-made VM instead of cloning again.
    second = run(scripts.create, FAKE_VBOX_FAIL_ONCE="modifyvm")
    assert second.returncode == 0, second.stderr
    assert [c[0] for c in calls()].count("clonevm") == 1
    assert vms()["hapx-node01"]["state"] == "running"
    # A third run on the running VM changes nothing.
    before = len(calls())
    third = run(scripts.create)
    assert third.returncode == 0
    assert {c[0] for c in calls()[before:]} == {"showvminfo"}


def test_delete_removes_the_vm_and_is_idempotent(vbox):
    _, _, scripts, run, calls, vms = vbox
    assert run(scripts.create).returncode == 0
    deleted = run(scripts.delete)
    assert deleted.returncode == 0, deleted.stderr
    assert "hapx-node01" not in vms()
    ops = [c[0] for c in calls()]
    assert ops.index("controlvm") < ops.index("unregistervm")
    detach = [c for c in calls() if c[0] == "storageattach" and "--medium=none" in c]
    assert detach, "the seed must be detached before unregistervm --delete"
    assert ["unregistervm", "hapx-node01", "--delete"] in calls()
    assert run(scripts.delete).returncode == 0  # already gone: still fine


@pytest.mark.parametrize("mode,create_cmd,remove_cmd", [
    ("hostonlyif", ["hostonlyif", "create"], ["hostonlyif", "remove", "vboxnet0"]),
    ("hostonlynet", "hostonlynet", ["hostonlynet", "remove", "--name=vboxnet0"]),
])
def test_host_only_network_is_made_and_removed_only_if_hapx_made_it(tmp_path, mode, create_cmd, remove_cmd):
    raw = stack_config("dev")
    raw["hapx:virtualbox"] = {**raw["hapx:virtualbox"], "vboxmanage": str(FAKE), "hostOnlyMode": mode}
    scripts = VirtualBoxDriver(parse_config(raw), "dev").network_scripts()
    env = {**os.environ, "FAKE_VBOX_STATE": str(tmp_path / "s.json"), "FAKE_VBOX_LOG": str(tmp_path / "l.log")}
    made = subprocess.run(["/bin/sh", "-c", scripts.create], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert "created=1" in made.stdout
    again = subprocess.run(["/bin/sh", "-c", scripts.create], env=env, capture_output=True, text=True)
    assert "created=0" in again.stdout
    # Delete sees the first run's stdout (pulumi-command's PULUMI_COMMAND_STDOUT).
    kept = subprocess.run(["/bin/sh", "-c", scripts.delete], env={**env, "PULUMI_COMMAND_STDOUT": "created=0"}, capture_output=True, text=True)
    assert kept.returncode == 0 and "leaving it" in kept.stderr
    removed = subprocess.run(["/bin/sh", "-c", scripts.delete], env={**env, "PULUMI_COMMAND_STDOUT": "created=1"}, capture_output=True, text=True)
    assert removed.returncode == 0, removed.stderr
    calls = [json.loads(line) for line in (tmp_path / "l.log").read_text().splitlines()]
    if isinstance(create_cmd, list):
        assert create_cmd in calls
    else:
        assert any(c[:2] == ["hostonlynet", "add"] for c in calls)
    assert remove_cmd in calls


def test_the_stand_in_rejects_wrong_syntax(tmp_path):
    # Guards the checker: a 6.1-only or misspelt option must be refused.
    env = {**os.environ, "FAKE_VBOX_STATE": str(tmp_path / "s.json"), "FAKE_VBOX_LOG": str(tmp_path / "l.log")}
    for bad in (["startvm", "x", "--type=invisible"], ["modifyvm", "x", "--nic1=hostonly-typo"], ["clonevm", "a", "--mode=everything"]):
        result = subprocess.run([str(FAKE), *bad], env=env, capture_output=True, text=True)
        assert result.returncode == 2, bad


# -- the base VM hapx makes from an image (hapx:virtualbox.baseImage) --------


@pytest.fixture
def from_image(tmp_path):
    image = tmp_path / "images" / "base.vdi"
    image.parent.mkdir()
    image.write_bytes(b"<<< VirtualBox Disk Image >>>" + b"\0" * 100)
    raw = stack_config("dev")
    raw["hapx:virtualbox"] = {
        **raw["hapx:virtualbox"], "vboxmanage": str(FAKE), "seedDir": str(tmp_path / "seeds"),
        "baseImage": str(image), "baseVm": "hapx-dev-base",
    }  # fmt: skip
    driver = VirtualBoxDriver(parse_config(raw), "dev")
    state, log = tmp_path / "state.json", tmp_path / "calls.log"
    env = {**os.environ, "FAKE_VBOX_STATE": str(state), "FAKE_VBOX_LOG": str(log)}

    def run(script: str) -> subprocess.CompletedProcess:
        return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def vms() -> dict:
        return json.loads(state.read_text())["vms"] if state.exists() else {}

    return driver, image, run, calls, vms


def test_base_vm_is_created_from_the_image_and_nodes_clone_it(from_image, tmp_path):
    driver, image, run, calls, vms = from_image
    base = driver.base_vm_scripts()
    made = run(base.create)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("vbox-base-uuid=")
    steps = [c[0] for c in calls() if c[0] not in ("showvminfo", "getextradata")]
    assert steps == ["createvm", "setextradata", "modifyvm", "storagectl", "clonemedium", "storageattach"]
    assert ["createvm", "--name=hapx-dev-base", "--ostype=Debian_64", "--register"] in calls()
    modify = next(c for c in calls() if c[0] == "modifyvm")
    assert {"--firmware=bios", "--boot1=disk", "--audio-driver=none"} <= set(modify)
    assert ["storagectl", "hapx-dev-base", "--name=SATA", "--add=sata", "--controller=IntelAhci", "--portcount=2", "--bootable=on"] in calls()
    copy = next(c for c in calls() if c[0] == "clonemedium")
    assert copy[1:3] == ["disk", str(image)] and copy[3] != str(image), "hapx works on a copy, never the image"
    base_vm = vms()["hapx-dev-base"]
    assert base_vm["media"] == {"SATA:0:0": copy[3]}
    # A re-run changes nothing that exists.
    before = len(calls())
    assert run(base.create).returncode == 0
    assert {c[0] for c in calls()[before:]} <= {"showvminfo", "getextradata", "modifyvm"}
    # The node clones the base VM hapx made, with its disk.
    node = driver.cfg.nodes[0]
    spec = driver.vm_spec(node, 0)
    seed = Path(driver.seed_path(node))
    seed.parent.mkdir(parents=True)
    seed.write_bytes(b"iso")
    node_scripts = driver.vm_scripts(spec, str(seed))
    assert run(node_scripts.create).returncode == 0
    assert ["clonevm", "hapx-dev-base", "--name=hapx-node01", "--register", "--mode=all"] in calls()
    assert vms()["hapx-node01"]["media"]["SATA:1:0"] == str(seed)

    # Destroy in Pulumi's order (node, then base VM): nothing hapx made is left,
    # and the image is untouched.
    assert run(node_scripts.delete).returncode == 0
    deleted = run(base.delete)
    assert deleted.returncode == 0, deleted.stderr
    assert "hapx-dev-base" not in vms() and "hapx-node01" not in vms()
    assert ["unregistervm", "hapx-dev-base", "--delete"] in calls()
    assert not Path(copy[3]).exists()
    assert image.read_bytes().startswith(b"<<< VirtualBox Disk Image >>>")
    assert run(base.delete).returncode == 0  # already gone: still fine


def test_base_vm_never_adopts_or_deletes_a_vm_hapx_did_not_make(from_image):
    driver, image, run, calls, vms = from_image
    # The stand-in starts with the operator's own `debian-base-image`.
    raw = stack_config("dev")
    raw["hapx:virtualbox"] = {**raw["hapx:virtualbox"], "vboxmanage": str(FAKE), "baseImage": str(image)}
    theirs = VirtualBoxDriver(parse_config(raw), "dev").base_vm_scripts()
    refused = run(theirs.create)
    assert refused.returncode == 1
    assert "hapx did not make it" in refused.stderr and "hapx:virtualbox.baseVm" in refused.stderr
    assert not any(c[0] in ("modifyvm", "storagectl", "clonemedium", "storageattach") for c in calls())
    kept = run(theirs.delete)
    assert kept.returncode == 0 and "leaving it" in kept.stderr
    assert "debian-base-image" in vms()
