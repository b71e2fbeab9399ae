"""LabStack.translation_cache_flushes reads QEMU's count of TCG translation
cache flushes through the VM's QMP socket (the idle soak records it): here
against a stand-in monitor on a unix socket that answers as QEMU does."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from harness.lab import LabStack

INFO_JIT = (
    "Translation buffer state:\r\ngen code size       186733091/2147479552\r\n"
    "TB count            341381\r\n\r\nStatistics:\r\nTB flush count      21\r\n"
    "TB invalidate count 112308\r\n"
)


def serve_monitor(path: Path, reply_to_info_jit: dict) -> tuple[threading.Thread, list[dict]]:
    """One QMP session: greeting, capabilities, one human-monitor-command."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    requests: list[dict] = []

    def run() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rw") as stream:
            stream.write(json.dumps({"QMP": {"version": {}, "capabilities": []}}) + "\n")
            stream.flush()
            for reply in ({"return": {}}, reply_to_info_jit):
                line = stream.readline()
                if not line:
                    break
                requests.append(json.loads(line))
                # An event before the answer, as QEMU may send: not the answer.
                stream.write(json.dumps({"event": "RTC_CHANGE", "data": {}}) + "\n")
                stream.write(json.dumps(reply) + "\n")
                stream.flush()
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, requests


def lab_at(tmp_path: Path) -> LabStack:
    (tmp_path / "st" / "vms" / "n1").mkdir(parents=True)
    return LabStack(workspace=None, stack="st", namespace="ns", state_dir=tmp_path, config={})  # type: ignore[arg-type]


def test_flush_count_is_read_from_info_jit(tmp_path):
    lab = lab_at(tmp_path)
    thread, requests = serve_monitor(tmp_path / "st" / "vms" / "n1" / "qmp.sock", {"return": INFO_JIT})
    assert lab.translation_cache_flushes("n1") == 21
    thread.join(5)
    assert requests == [
        {"execute": "qmp_capabilities"},
        {"execute": "human-monitor-command", "arguments": {"command-line": "info jit"}},
    ]


def test_no_count_without_tcg_or_without_a_running_vm(tmp_path):
    lab = lab_at(tmp_path)
    # No monitor socket: the VM is not running.
    assert lab.translation_cache_flushes("n1") is None
    # Under KVM `info jit` has no translation buffer to report.
    thread, _ = serve_monitor(tmp_path / "st" / "vms" / "n1" / "qmp.sock", {"return": "JIT not enabled\r\n"})
    assert lab.translation_cache_flushes("n1") is None
    thread.join(5)
