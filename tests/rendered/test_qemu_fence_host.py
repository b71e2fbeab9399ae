"""The QEMU lab's host fence helper against real QEMU processes.

Each "VM" is a QEMU with no disk and no guest (firmware only), which is all
the helper touches: the pid file and the QMP socket. The helper runs as
QEMU's guestfwd runs it: one request on stdin, one answer on stdout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

from .conftest import require_tool

HELPER = REPO / "tools" / "qemu_fence_host.py"
PASSWORD = "test-fence-password"
NODES = ("hapx-node01", "hapx-node02")


@pytest.fixture
def stack_dir(tmp_path):
    """A stack directory with two firmware-only QEMUs; each is killed by pid afterwards."""
    qemu = require_tool("qemu-system-x86_64")
    (tmp_path / "fence-secret").write_text(PASSWORD + "\n")
    pids = []
    try:
        for name in NODES:
            vm_dir = tmp_path / "vms" / name
            vm_dir.mkdir(parents=True)
            (vm_dir / "disk.qcow2").touch()
            subprocess.run(
                [qemu, "-name", f"hapx-test-{name}", "-accel", "tcg", "-m", "64", "-nodefaults", "-display", "none",
                 "-qmp", f"unix:{vm_dir}/qmp.sock,server=on,wait=off", "-pidfile", str(vm_dir / "qemu.pid"), "-daemonize"],
                check=True, timeout=30,
            )
            pids.append(int((vm_dir / "qemu.pid").read_text()))
        yield tmp_path
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def ask(stack_dir: Path, asking: str, **request) -> dict:
    request.setdefault("password", PASSWORD)
    result = subprocess.run(
        [sys.executable, str(HELPER), "--stack-dir", str(stack_dir), "--from", asking],
        input=json.dumps(request) + "\n", capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_off_freezes_and_on_resumes_the_peer(stack_dir):
    assert ask(stack_dir, "hapx-node01", action="status", plug="hapx-node02") == {"ok": True, "status": "on"}
    assert ask(stack_dir, "hapx-node01", action="off", plug="hapx-node02") == {"ok": True, "status": "off"}
    assert ask(stack_dir, "hapx-node01", action="status", plug="hapx-node02")["status"] == "off"
    # The asking node's own VM is untouched.
    assert ask(stack_dir, "hapx-node02", action="status", plug="hapx-node01")["status"] == "on"
    assert ask(stack_dir, "hapx-node01", action="on", plug="hapx-node02") == {"ok": True, "status": "on"}
    # A reboot (hard reset) leaves it running, also when it was off.
    assert ask(stack_dir, "hapx-node01", action="reboot", plug="hapx-node02") == {"ok": True, "status": "on"}
    assert ask(stack_dir, "hapx-node01", action="off", plug="hapx-node02")["status"] == "off"
    assert ask(stack_dir, "hapx-node01", action="reboot", plug="hapx-node02") == {"ok": True, "status": "on"}
    listed = ask(stack_dir, "hapx-node01", action="list")
    assert listed == {"ok": True, "nodes": {"hapx-node01": "on", "hapx-node02": "on"}}
    # Every request is in the log, and the password never is.
    log = (stack_dir / "fence.log").read_text()
    assert log.count("\n") == 9 and PASSWORD not in log


def test_a_vm_whose_qemu_is_gone_is_off(stack_dir):
    pid = int((stack_dir / "vms" / "hapx-node02" / "qemu.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ask(stack_dir, "hapx-node01", action="status", plug="hapx-node02")["status"] == "off"
    assert ask(stack_dir, "hapx-node01", action="off", plug="hapx-node02") == {"ok": True, "status": "off"}
    # Fencing needs the old boot gone, and it is: a reboot succeeds.
    assert ask(stack_dir, "hapx-node01", action="reboot", plug="hapx-node02") == {"ok": True, "status": "off"}
    refused = ask(stack_dir, "hapx-node01", action="on", plug="hapx-node02")
    assert not refused["ok"] and "not running" in refused["error"]


@pytest.mark.parametrize(
    "asking,request_fields,error",
    [
        ("hapx-node01", {"action": "off", "plug": "hapx-node02", "password": "wrong"}, "wrong fence password"),
        ("hapx-node01", {"action": "off", "plug": "hapx-node01"}, "may not fence itself"),
        ("hapx-node01", {"action": "off", "plug": "other-stack-vm"}, "not a VM of this stack"),
        ("hapx-node01", {"action": "reboot-everything", "plug": "hapx-node02"}, "unknown action"),
    ],
    ids=["wrong-password", "self", "foreign-vm", "unknown-action"],
)
def test_refusals_leave_every_vm_running(stack_dir, asking, request_fields, error):
    answer = ask(stack_dir, asking, **request_fields)
    assert not answer["ok"] and error in answer["error"]
    assert ask(stack_dir, "hapx-node01", action="list")["nodes"] == {"hapx-node01": "on", "hapx-node02": "on"}
