"""The node script that marks a node settled (templates/node/hapx-mark-settled), run here with stand-ins for
Pacemaker's and corosync's tools: `crm_node` names the node, `cibadmin` answers the membership query and the
query for the node's mark in the CIB from files the test creates and removes, `attrd_updater` logs its calls and
sets or deletes the mark file, `corosync-cmapctl -T` reports a membership change when the test writes to its FIFO.
The mark comes no sooner than the settle time after the node became a member, a node that is no member when the
count ends starts it again, a failed update is retried; afterwards the script stays asleep until the membership
changes, keeps a mark the CIB still holds and counts again for one the cluster dropped.
The real unit on the lab's nodes: tests/e2e (every lab up waits for the nodes to be settled)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from components.rendering import MARK_SETTLED_PATH, SETTLED_UNIT, node_agent_files

from .conftest import require_tool, run, stand_in_path

SCRIPT = Path(__file__).resolve().parents[2] / "templates" / "node" / "hapx-mark-settled"


@pytest.fixture
def node(tmp_path):
    files = {name: tmp_path / name for name in ("member", "marked", "attrd.log", "attrd-fails", "change", "tracker.log")}
    fakes = {
        "crm_node": '[ "$1" = --name ] && echo node-a',
        # The mark's query names transient_attributes; the membership query names join='member'.
        "cibadmin": (
            f'case "$*" in\n'
            f'  *"uname=\'node-a\'"*transient_attributes*"@name=\'hapx-settled\'"*) [ -e {files["marked"]} ] ;;\n'
            f'  *"uname=\'node-a\'"*"join=\'member\'"*) [ -e {files["member"]} ] ;;\n'
            f'  *) exit 2 ;;\n'
            f'esac'
        ),
        "attrd_updater": (
            f'case "$*" in *--update*) if [ -e {files["attrd-fails"]} ]; then rm {files["attrd-fails"]}; exit 1; fi ;; esac\n'
            f'echo "$(cut -d" " -f1 /proc/uptime) $*" >> {files["attrd.log"]}\n'
            f'case "$*" in *--update\\ 1*) touch {files["marked"]} ;; *--delete*) rm -f {files["marked"]} ;; esac'
        ),
        # Like the real one: a prompt, a line per changed key, and it runs until its input ends.
        "corosync-cmapctl": (
            f'[ "$1 $2" = "-T runtime.members." ] || exit 2\n'
            f'echo start >> {files["tracker.log"]}\n'
            f'echo \'Type "q" to finish\'\n'
            f'read _ < {files["change"]}\n'
            f'echo "modify> runtime.members.2.status (str) = left"\n'
            f'exec cat > /dev/null'
        ),
    }
    os.mkfifo(files["change"])
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "PATH": stand_in_path(tmp_path / "bin", fakes), "HAPX_SETTLED_POLL_S": "1", "TMPDIR": str(tmp_path / "tmp")}
    procs: list[subprocess.Popen] = []
    yield {"env": env, "procs": procs, "tmp": tmp_path / "tmp", **files}
    for proc in procs:  # the script and its stand-in tracker
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()


def start(node: dict, settle_s: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["sh", str(SCRIPT), str(settle_s)], env=node["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    node["procs"].append(proc)
    return proc


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def updates(node: dict) -> list[tuple[float, str]]:
    if not node["attrd.log"].exists():
        return []
    return [(float(t), rest) for t, rest in (line.split(" ", 1) for line in node["attrd.log"].read_text().splitlines())]


def marks(node: dict) -> list[float]:
    return [t for t, args in updates(node) if args == "--name hapx-settled --update 1"]


def trackers(node: dict) -> int:
    return len(node["tracker.log"].read_text().splitlines()) if node["tracker.log"].exists() else 0


def change_membership(node: dict) -> None:
    """A node joined or left: the stand-in tracker, blocked reading its FIFO, reports it."""
    fd = os.open(node["change"], os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"changed\n")
    os.close(fd)


def wait_until(what, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if proc.poll() is not None:
            pytest.fail(f"hapx-mark-settled ended ({proc.returncode}):\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM, as systemd stops the unit (to the whole group: the unit's cgroup); the script's output."""
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    return out


def test_the_mark_comes_the_settle_time_after_the_node_became_a_member_and_the_script_stays(node):
    proc = start(node, 3)
    time.sleep(1.5)
    assert updates(node) == []  # not a member yet: no mark, however long it waits
    joined = uptime()
    node["member"].touch()
    wait_until(lambda: trackers(node) == 1, 15, proc)
    (marked_at,) = marks(node)
    assert 3 <= marked_at - joined < 5, (joined, marked_at)
    # Deleted just before it is set: the attribute daemon writes a value it may still hold from before.
    assert [args for _, args in updates(node)] == ["--name hapx-settled --delete", "--name hapx-settled --update 1"]
    time.sleep(1.5)
    assert proc.poll() is None, "it stays, asleep until the membership changes"
    assert marks(node) == [marked_at]
    assert "node-a settled: hapx-settled=1" in stop(proc)


def test_a_node_that_is_not_a_member_when_the_count_ends_starts_it_again(node):
    node["member"].touch()
    proc = start(node, 3)
    time.sleep(1.5)
    node["member"].unlink()  # the node left (a partition, say: its Pacemaker kept running)
    time.sleep(3.0)
    assert marks(node) == []
    back = uptime()
    node["member"].touch()
    wait_until(lambda: marks(node), 15, proc)
    (marked_at,) = marks(node)
    assert 3 <= marked_at - back < 5, (back, marked_at)
    assert "not a member any more; counting again" in stop(proc)


def test_a_failed_update_is_tried_again(node):
    node["member"].touch()
    node["attrd-fails"].touch()
    proc = start(node, 1)
    wait_until(lambda: trackers(node) == 1, 15, proc)
    assert len(marks(node)) == 1 and not node["attrd-fails"].exists()
    assert "attrd_updater failed; trying again" in stop(proc)


def test_a_membership_change_that_kept_the_mark_changes_nothing(node):
    node["member"].touch()
    proc = start(node, 1)
    wait_until(lambda: trackers(node) == 1, 15, proc)
    change_membership(node)  # a node joined or left; this node's mark is still in the CIB
    wait_until(lambda: trackers(node) == 2, 15, proc)  # looked, and asleep again
    time.sleep(1.5)
    assert len(marks(node)) == 1
    assert "membership changed" in stop(proc)


def test_a_mark_the_cluster_dropped_is_counted_again_and_set_anew(node):
    node["member"].touch()
    proc = start(node, 2)
    wait_until(lambda: trackers(node) == 1, 15, proc)
    # A short split: the peer saw this node leave and its attributes went from the CIB; the node is a member again.
    node["marked"].unlink()
    change_membership(node)
    changed = uptime()
    wait_until(lambda: len(marks(node)) == 2, 20, proc)
    again = marks(node)[1]
    # The look after the change (1 s), then the whole count (2 s).
    assert 3 <= again - changed < 6, (changed, again)
    assert [args for _, args in updates(node)][-2:] == ["--name hapx-settled --delete", "--name hapx-settled --update 1"]
    time.sleep(1.5)
    assert proc.poll() is None and len(marks(node)) == 2, "marked once more, and asleep again"
    assert "lost its mark (the cluster saw it leave); counting again" in stop(proc)


def test_stopping_it_ends_the_tracker_and_leaves_nothing_behind(node):
    node["member"].touch()
    proc = start(node, 1)
    wait_until(lambda: trackers(node) == 1, 15, proc)
    assert [p.name for p in node["tmp"].glob("*/changes")], "the tracker's FIFO is in the script's work directory"
    # Only the script's own process group: the stand-in tracker is in it.
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=15)
    assert proc.returncode == 143
    group = subprocess.run(["ps", "-o", "pid=,stat=", "-g", str(proc.pid)], capture_output=True, text=True).stdout
    left = [line.split()[0] for line in group.splitlines() if not line.split()[1].startswith("Z")]
    assert left == [], f"processes of the script still running: {left}"
    assert list(node["tmp"].iterdir()) == [], "the work directory is removed"


def test_the_unit_is_valid_starts_with_pacemaker_and_never_starts_it(tmp_path):
    require_tool("systemd-analyze")
    files = {f.path: f for f in node_agent_files(None, 42)}
    unit, script = files[SETTLED_UNIT], files[MARK_SETTLED_PATH]
    assert script.content == SCRIPT.read_text() and script.mode == "0755"
    assert unit.starts_unit and unit.mode == "0644"
    # systemd-analyze verify wants the ExecStart binary to exist: point it at a copy of the script.
    exe = tmp_path / "hapx-mark-settled"
    exe.write_text(script.content)
    exe.chmod(0o755)
    path = tmp_path / Path(unit.path).name
    path.write_text(unit.content.replace(MARK_SETTLED_PATH, str(exe)))
    verify = run(["systemd-analyze", "verify", str(path)])
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    lines = unit.content.splitlines()
    assert f"ExecStart={MARK_SETTLED_PATH} 42" in lines
    assert {"After=pacemaker.service", "PartOf=pacemaker.service", "WantedBy=pacemaker.service"} <= set(lines)
    # Started while Pacemaker is down (an install on a node its admin stopped), it does nothing.
    assert "ExecCondition=/bin/systemctl is-active --quiet pacemaker.service" in lines
    # Requires=/BindsTo= would start Pacemaker on a node whose admin stopped it.
    assert not any(line.startswith(("Requires=", "BindsTo=")) for line in lines)
