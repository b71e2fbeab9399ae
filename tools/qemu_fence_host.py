#!/usr/bin/env python3
"""The host side of fencing in the QEMU lab: power control of a node's VM.

QEMU runs this once per connection that a guest opens to the fence address
of its user-mode network (a `guestfwd` rule, see templates/qemu/vm-create.sh.j2);
the connection is stdin/stdout. The guest's agent (fence_hapx_qemu) sends one
JSON request line, this answers with one JSON line:

    {"action": "status|off|on|reboot|list", "plug": "hapx-node02", "password": "..."}
    {"ok": true, "status": "on"}           {"ok": false, "error": "..."}

Power is QEMU's own: "off" freezes the vCPUs (QMP `stop`) and resets the
machine, so nothing of the old boot runs again; "on" lets it run (`cont`),
which boots it fresh; "reboot" is a hard reset (`system_reset`), the guest
boots again at once. A VM whose QEMU process is gone is off, and a reboot
of it succeeds: what fencing needs is that the old boot no longer runs. Only VMs of
the stack this runs for can be fenced, never the asking node itself, and
only with the stack's fence password. Every request is logged, without the
password, to <stack dir>/fence.log.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import socket
import sys
import time
from pathlib import Path

REQUEST_TIMEOUT_S = 10
QMP_TIMEOUT_S = 5


class FenceError(Exception):
    pass


class Qmp:
    """A minimal QMP client: one command at a time on the VM's unix socket."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(QMP_TIMEOUT_S)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            raise FenceError(f"cannot reach QEMU's monitor at {path}: {exc}") from None
        self.reader = self.sock.makefile("r")
        self._read()  # greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        while True:
            line = self.reader.readline()
            if not line:
                raise FenceError("QEMU closed the monitor connection")
            message = json.loads(line)
            if "event" not in message:  # events are not answers
                return message

    def execute(self, command: str, arguments: dict | None = None) -> object:
        request: dict = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        reply = self._read()
        if "error" in reply:
            raise FenceError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def close(self) -> None:
        self.sock.close()


class StackVms:
    def __init__(self, stack_dir: Path):
        self.vms_dir = stack_dir / "vms"

    def names(self) -> list[str]:
        if not self.vms_dir.is_dir():
            return []
        return sorted(p.name for p in self.vms_dir.iterdir() if (p / "disk.qcow2").exists())

    def qemu_pid(self, name: str) -> int | None:
        """The live QEMU of this VM, None if it is not running."""
        try:
            pid = int((self.vms_dir / name / "qemu.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        # The pid file may be stale: only a QEMU whose -name ends with this VM counts.
        for i, arg in enumerate(cmdline[:-1]):
            if arg == b"-name" and cmdline[i + 1].decode(errors="replace").endswith(f"-{name}"):
                return pid
        return None

    def status(self, name: str) -> str:
        if self.qemu_pid(name) is None:
            return "off"
        qmp = Qmp(self.vms_dir / name / "qmp.sock")
        try:
            state = qmp.execute("query-status")
        finally:
            qmp.close()
        return "on" if isinstance(state, dict) and state.get("running") else "off"

    def power(self, name: str, action: str) -> str:
        if self.qemu_pid(name) is None:
            if action in ("off", "reboot"):
                return "off"  # no process, no machine: it is off
            raise FenceError(f"{name}'s QEMU is not running; `pulumi up` starts it again")
        qmp = Qmp(self.vms_dir / name / "qmp.sock")
        try:
            if action == "off":
                # Freeze first (instant), then reset, so the old boot never resumes.
                qmp.execute("stop")
                qmp.execute("system_reset")
            elif action == "reboot":
                qmp.execute("system_reset")
                qmp.execute("cont")  # a VM that was off runs again
            else:
                qmp.execute("cont")
            state = qmp.execute("query-status")
        finally:
            qmp.close()
        return "on" if isinstance(state, dict) and state.get("running") else "off"


def handle(request: dict, stack_dir: Path, asking_node: str, password: str) -> dict:
    if not isinstance(request, dict):
        raise FenceError("a request is a JSON object")
    given = request.get("password")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), password.encode()):
        raise FenceError("wrong fence password")
    vms = StackVms(stack_dir)
    action = request.get("action")
    if action == "list":
        return {"ok": True, "nodes": {n: vms.status(n) for n in vms.names()}}
    plug = request.get("plug")
    if plug not in vms.names():
        raise FenceError(f"{plug!r} is not a VM of this stack (known: {', '.join(vms.names()) or 'none'})")
    if action == "status":
        return {"ok": True, "status": vms.status(plug)}
    if action in ("on", "off", "reboot"):
        if plug == asking_node:
            raise FenceError(f"{asking_node} may not fence itself; a peer fences it")
        return {"ok": True, "status": vms.power(plug, action)}
    raise FenceError(f"unknown action {action!r}: use status, on, off, reboot or list")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack-dir", required=True, type=Path, help="the stack's lab directory (holds vms/ and fence-secret)")
    parser.add_argument("--from", dest="asking_node", required=True, help="the node whose QEMU runs this")
    args = parser.parse_args()

    log_path = args.stack_dir / "fence.log"
    request: object = None
    try:
        # Written there by the QemuFenceHost component (components/fencing.py: host_password_path).
        password = (args.stack_dir / "fence-secret").read_text().strip()
        if not password:
            raise FenceError("the stack's fence secret is empty")
        line = _read_line(REQUEST_TIMEOUT_S)
        request = json.loads(line)
        reply = handle(request, args.stack_dir, args.asking_node, password)
    except (FenceError, OSError, ValueError) as exc:
        reply = {"ok": False, "error": str(exc)}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
    summary = {k: request.get(k) for k in ("action", "plug")} if isinstance(request, dict) else {}
    try:
        with open(log_path, "a") as log:
            log.write(json.dumps({"time": round(time.time(), 3), "from": args.asking_node, **summary, "reply": reply}) + "\n")
    except OSError:
        pass
    return 0


def _read_line(timeout_s: float) -> str:
    """One line from stdin (the guest's connection), bounded in time and size."""
    import select

    data = b""
    deadline = time.monotonic() + timeout_s
    fd = sys.stdin.fileno()
    while b"\n" not in data and len(data) < 4096:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise FenceError("no request within the time limit")
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode()


if __name__ == "__main__":
    sys.exit(main())
