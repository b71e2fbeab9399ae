"""The membership move's node scripts (templates/cluster/), run here with stand-ins for the node's tools: the file
is installed only when it differs; the reload tells corosync to re-read its file, makes Pacemaker forget exactly the
nodes that left, and waits, bounded, until corosync counts the new nodelist. The real corosync and Pacemaker do
this in tests/e2e/test_lab_scale.py."""

from __future__ import annotations

import os
import subprocess

import pytest

from components.cluster_membership import push_script, reload_script

from .conftest import run, stand_in_path


@pytest.fixture
def node(tmp_path) -> dict:
    """Stand-ins: `sudo` runs its command; corosync-cfgtool -R makes corosync expect the votes in `reloaded` from the
    second count read after it;
    crm_node lists and removes the nodes in `crm-nodes` (a line in `comes-back` is listed again once after its
    removal, as Pacemaker re-learns a node from a corosync that still had it); every call is logged, a removal with
    the votes corosync expected then."""
    bin_dir = tmp_path / "bin"
    log, expected, reloaded, crm_nodes, comes_back = (
        tmp_path / f for f in ("calls.log", "expected", "reloaded", "crm-nodes", "comes-back")
    )
    expected.write_text("2")
    fakes = {
        "sudo": 'exec "$@"',
        "systemctl": f'echo "systemctl $*" >> {log}',
        # The reload is seen late: the first count read after it is still the old one.
        "corosync-cfgtool": f'echo "corosync-cfgtool $*" >> {log}\ntouch {reloaded}.pending',
        "corosync-quorumtool": (
            f'printf "Expected votes:   %s\\nTotal votes:      %s\\n" "$(cat {expected})" "$(cat {expected})"\n'
            f'if [ -e {reloaded}.pending ]; then cp {reloaded} {expected}; rm {reloaded}.pending; fi'
        ),
        "crm_node": (
            f'if [ "$1" = --list ]; then cat {crm_nodes}; exit 0; fi\n'
            f'echo "crm_node $*" >> {log}\necho "removed with $(cat {expected}) votes expected" >> {log}\n'
            f'grep -v " $3 " {crm_nodes} > {crm_nodes}.new; mv {crm_nodes}.new {crm_nodes}\n'
            f'if [ -s {comes_back} ]; then cat {comes_back} >> {crm_nodes}; : > {comes_back}; fi'
        ),
    }
    path = stand_in_path(bin_dir, fakes)
    env = {**os.environ, "PATH": path}
    return {"env": env, "log": log, "reloaded": reloaded, "crm_nodes": crm_nodes, "comes_back": comes_back, "tmp": tmp_path}


def sh(node: dict, script: str, stdin: str = "") -> subprocess.CompletedProcess:
    return run(["sh", "-c", script], input=stdin, env=node["env"])


def test_the_file_is_installed_only_when_it_differs(node, tmp_path):
    conf = tmp_path / "corosync.conf"
    conf.write_text("old\n")
    first = sh(node, push_script(str(conf)), "new\n")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "corosync.conf changed" and conf.read_text() == "new\n"
    again = sh(node, push_script(str(conf)), "new\n")
    assert again.stdout.strip() == "corosync.conf unchanged"


def test_the_reload_forgets_the_node_that_left_and_waits_for_the_new_count(node):
    node["crm_nodes"].write_text("1 hapx-node01 member\n2 hapx-node02 member\n3 hapx-node03 lost\n")
    node["reloaded"].write_text("2")
    (node["tmp"] / "expected").write_text("3")
    result = sh(node, reload_script(["hapx-node03"], 2, settle_s=1))
    assert result.returncode == 0, result.stdout + result.stderr
    calls = node["log"].read_text().splitlines()
    assert "corosync-cfgtool -R" in calls and "crm_node --force --remove hapx-node03" in calls
    # Forgotten only once corosync counts the new nodelist, not between the reload and that.
    assert "removed with 2 votes expected" in calls and "removed with 3 votes expected" not in calls
    assert "hapx-node03" not in node["crm_nodes"].read_text() and "hapx-node02" in node["crm_nodes"].read_text()
    assert result.stdout.strip().endswith("membership: 2 nodes")

    # Again (a re-run after an interrupted up): nothing left to forget, still succeeds.
    node["log"].write_text("")
    again = sh(node, reload_script(["hapx-node03"], 2, settle_s=1))
    assert again.returncode == 0 and "crm_node --force" not in node["log"].read_text()


def test_a_node_listed_again_after_its_removal_is_removed_again(node):
    node["crm_nodes"].write_text("1 hapx-node01 member\n2 hapx-node02 member\n3 hapx-node03 lost\n")
    node["comes_back"].write_text("3 hapx-node03 lost\n")
    node["reloaded"].write_text("2")
    result = sh(node, reload_script(["hapx-node03"], 2, settle_s=2))
    assert result.returncode == 0, result.stdout + result.stderr
    assert node["log"].read_text().splitlines().count("crm_node --force --remove hapx-node03") == 2
    assert "hapx-node03" not in node["crm_nodes"].read_text()


def test_a_node_that_keeps_coming_back_fails_the_reload_in_time(node):
    node["crm_nodes"].write_text("3 hapx-node03 lost\n")
    node["reloaded"].write_text("2")
    # Every removal is undone: crm_node lists it again right away.
    stand_in = node["env"]["PATH"].split(":")[0] + "/crm_node"
    with open(stand_in, "a") as tool:
        tool.write(f'echo "3 hapx-node03 lost" >> {node["crm_nodes"]}\n')
    result = sh(node, reload_script(["hapx-node03"], 2, timeout_s=3, settle_s=2))
    assert result.returncode == 1
    assert "Pacemaker still lists hapx-node03 3s after the reload" in result.stderr


def test_a_node_added_is_counted_and_nobody_is_forgotten(node):
    node["crm_nodes"].write_text("1 hapx-node01 member\n2 hapx-node02 member\n")
    node["reloaded"].write_text("3")
    result = sh(node, reload_script([], 3))
    assert result.returncode == 0, result.stderr
    assert "crm_node --force" not in node["log"].read_text() and result.stdout.strip().endswith("membership: 3 nodes")


def test_the_reload_gives_up_in_time_when_corosync_keeps_the_old_count(node):
    node["crm_nodes"].write_text("")
    node["reloaded"].write_text("2")  # corosync did not take the new nodelist
    result = sh(node, reload_script([], 3, timeout_s=2))
    assert result.returncode == 1
    assert "corosync still expects 2 votes, not 3" in result.stderr
