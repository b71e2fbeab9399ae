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
from components.virtualbox import VirtualBoxDriver, vbox_mac
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
