"""The node script that marks a node settled (templates/node/hapx-mark-settled), run here with stand-ins for
Pacemaker's tools: `crm_node` names the node, `cibadmin` answers the membership query from a file the test
creates and removes, `attrd_updater` logs when it is called. The mark comes no sooner than the settle time after
the node became a member, a node that is no member when the count ends starts it again, and a failed update is
retried.
The real unit on the lab's nodes: tests/e2e (every lab up waits for the nodes to be settled)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from components.rendering import MARK_SETTLED_PATH, SETTLED_UNIT, node_agent_files

from .conftest import require_tool, run, stand_in_path

SCRIPT = Path(__file__).resolve().parents[2] / "templates" / "node" / "hapx-mark-settled"


@pytest.fixture
def node(tmp_path) -> dict:
    member, calls, fail = tmp_path / "member", tmp_path / "attrd.log", tmp_path / "attrd-fails"
    fakes = {
        "crm_node": '[ "$1" = --name ] && echo node-a',
        # Succeeds only for the membership query of node-a, while the file exists.
        "cibadmin": f"case \"$*\" in *\"uname='node-a'\"*\"join='member'\"*) [ -e {member} ] ;; *) exit 2 ;; esac",
        "attrd_updater": (
            f'if [ -e {fail} ]; then rm {fail}; exit 1; fi\n'
            f'echo "$(cut -d" " -f1 /proc/uptime) $*" >> {calls}'
        ),
    }
    env = {**os.environ, "PATH": stand_in_path(tmp_path / "bin", fakes), "HAPX_SETTLED_POLL_S": "1"}
    return {"env": env, "member": member, "calls": calls, "fail": fail}


def start(node: dict, settle_s: int) -> subprocess.Popen:
    return subprocess.Popen(["sh", str(SCRIPT), str(settle_s)], env=node["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"hapx-mark-settled did not finish within {timeout}s:\n{out}{err}")
    assert proc.returncode == 0, out + err
    return out + err


def updates(node: dict) -> list[tuple[float, str]]:
    if not node["calls"].exists():
        return []
    return [(float(t), rest) for t, rest in (line.split(" ", 1) for line in node["calls"].read_text().splitlines())]


def test_the_mark_comes_the_settle_time_after_the_node_became_a_member(node):
    proc = start(node, 3)
    time.sleep(1.5)
    assert updates(node) == []  # not a member yet: no mark, however long it waits
    joined = uptime()
    node["member"].touch()
    out = finish(proc, 15)
    ((marked_at, args),) = updates(node)
    assert args == "--name hapx-settled --update 1"
    assert 3 <= marked_at - joined < 5, (joined, marked_at)
    assert "node-a settled: hapx-settled=1" in out


def test_a_node_that_is_not_a_member_when_the_count_ends_starts_it_again(node):
    node["member"].touch()
    proc = start(node, 3)
    time.sleep(1.5)
    node["member"].unlink()  # the node left (a partition, say: its Pacemaker kept running)
    time.sleep(3.0)
    assert updates(node) == []
    back = uptime()
    node["member"].touch()
    out = finish(proc, 15)
    ((marked_at, _),) = updates(node)
    assert 3 <= marked_at - back < 5, (back, marked_at)
    assert "not a member any more; counting again" in out


def test_a_failed_update_is_tried_again(node):
    node["member"].touch()
    node["fail"].touch()
    out = finish(start(node, 1), 15)
    assert len(updates(node)) == 1 and not node["fail"].exists()
    assert "attrd_updater failed; trying again" in out


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
