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

from harness.paths import REPO

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


# -- the node's agent, through a stand-in for QEMU's guestfwd ------------------

AGENT = REPO / "templates" / "node" / "fence_hapx_qemu"


@pytest.fixture
def forward(stack_dir):
    """What QEMU's guestfwd does for a node: each connection to a loopback
    port runs the helper with the connection as stdin/stdout."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                subprocess.run(
                    [sys.executable, str(HELPER), "--stack-dir", str(stack_dir), "--from", "hapx-node01"],
                    stdin=conn.fileno(), stdout=conn.fileno(), timeout=30,
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def agent(port: int, stdin: str) -> subprocess.CompletedProcess:
    """The agent as pacemaker-fenced runs it: options on stdin."""
    base = f"ip=127.0.0.1\nipport={port}\npassword={PASSWORD}\n"
    return subprocess.run(["bash", str(AGENT)], input=base + stdin, capture_output=True, text=True, timeout=60)


def test_agent_metadata_is_fence_agent_xml():
    import xml.etree.ElementTree as ET

    result = subprocess.run(["bash", str(AGENT), "-o", "metadata"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    root = ET.fromstring(result.stdout)
    assert root.get("name") == "fence_hapx_qemu"
    assert {"ip", "ipport", "password", "password_script", "plug", "ping_targets"} <= {p.get("name") for p in root.iter("parameter")}
    assert {"reboot", "off", "on", "status", "monitor", "list"} <= {a.get("name") for a in root.iter("action")}


def test_agent_reboots_the_peer_through_the_helper(stack_dir, forward):
    assert agent(forward, "action=monitor\n").returncode == 0
    listed = agent(forward, "action=list\n")
    assert listed.stdout.split() == ["hapx-node01,hapx-node01", "hapx-node02,hapx-node02"]
    status = agent(forward, "action=status\nport=hapx-node02\n")
    assert (status.returncode, status.stdout.strip()) == (0, "Status: ON")
    assert agent(forward, "action=off\nport=hapx-node02\n").returncode == 0
    status = agent(forward, "action=status\nport=hapx-node02\n")
    assert (status.returncode, status.stdout.strip()) == (2, "Status: OFF")
    # A ping target that answers (loopback): this node may fence.
    rebooted = agent(forward, "action=reboot\nport=hapx-node02\nping_targets=127.0.0.1\n")
    assert rebooted.returncode == 0, rebooted.stderr
    assert agent(forward, "action=status\nport=hapx-node02\n").stdout.strip() == "Status: ON"
    log = [json.loads(line) for line in (stack_dir / "fence.log").read_text().splitlines()]
    assert [e["action"] for e in log if e["plug"] == "hapx-node02" and e["action"] != "status"] == ["off", "reboot"]


def test_agent_on_a_cut_off_node_refuses_to_fence(stack_dir, forward):
    # 192.0.2.0/24 is TEST-NET-1: nothing answers there. ping leaves through
    # this throwaway namespace's loopback only, so no packet reaches any
    # network: the namespace has no other interface and no route.
    ns = f"hapx-t-fence-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        result = subprocess.run(
            ["ip", "netns", "exec", ns, "bash", str(AGENT)],
            input=f"ip=127.0.0.1\nipport={forward}\npassword={PASSWORD}\naction=reboot\nport=hapx-node02\nping_targets=192.0.2.1\n",
            capture_output=True, text=True, timeout=60,
        )
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
    assert result.returncode == 1
    assert "cut off" in result.stderr
    # It never asked the host: no fencing happened.
    log = (stack_dir / "fence.log").read_text() if (stack_dir / "fence.log").exists() else ""
    assert "reboot" not in log


def test_agent_with_a_wrong_password_fails(stack_dir, forward):
    result = subprocess.run(
        ["bash", str(AGENT)],
        input=f"ip=127.0.0.1\nipport={forward}\npassword=wrong\naction=off\nport=hapx-node02\n",
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1 and "wrong fence password" in result.stderr
    assert ask(stack_dir, "hapx-node01", action="status", plug="hapx-node02")["status"] == "on"


@pytest.mark.parametrize("script", ["cat {file}", "sh -c 'cat {file}'"])
@pytest.mark.parametrize("newline", ["\n", ""])
def test_agent_reads_the_password_through_password_script(stack_dir, forward, tmp_path, script, newline):
    # hapx configures `cat FILE` (read by the agent itself); any other script runs in a shell.
    # The nodes' secret file has no trailing newline.
    secret_file = tmp_path / "node-fence-secret"  # the node's copy (stack_dir is tmp_path: not its fence-secret)
    secret_file.write_text(PASSWORD + newline)
    stdin = f"ip=127.0.0.1\nipport={forward}\npassword_script={script.format(file=secret_file)}\naction=status\nport=hapx-node02\n"
    result = subprocess.run(["bash", str(AGENT)], input=stdin, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "Status: ON"), result.stderr
    secret_file.write_text("wrong\n")
    result = subprocess.run(["bash", str(AGENT)], input=stdin, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "refused" in result.stderr
