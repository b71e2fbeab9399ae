"""harness.lab.planned_actions: what the lab reads to know Pacemaker has nothing left to do (the rendered tests
parse real crm_simulate output with it too)."""

import subprocess
from pathlib import Path

import pytest

from components.rendering import SETTLED_ATTRIBUTE
from harness.lab import RULE_MARK, LabStack, planned_actions, settled_nodes

SETTLED = """Current cluster status:
  * Node List:
    * Online: [ hapx-node01 hapx-node02 ]

Transition Summary:

Executing Cluster Transition:

Revised Cluster Status:
"""
HANDOVER = SETTLED.replace(
    "Transition Summary:\n", "Transition Summary:\n  * Migrate    hapx-vip     ( hapx-node01 -> hapx-node02 )\n"
)


def test_a_settled_cluster_plans_nothing():
    assert planned_actions(SETTLED) == []


def test_a_planned_handover_is_seen():
    assert planned_actions(HANDOVER) == ["* Migrate    hapx-vip     ( hapx-node01 -> hapx-node02 )"]


def test_output_without_a_summary_is_not_taken_for_idle():
    with pytest.raises(ValueError, match="no transition summary"):
        planned_actions("Could not connect to the CIB: Transport endpoint is not connected\n")


class _SlowNode(LabStack):
    """A lab whose first node does not answer within the ssh timeout (still booting); the other answers whole."""

    def ssh(self, node, command, timeout=60, stdin=None):
        if node == "hapx-node01":
            raise subprocess.TimeoutExpired(["ssh", node, command], timeout)
        if command.startswith("sudo crm_mon"):
            return subprocess.CompletedProcess([], 0, SETTLED, "")
        if command.startswith("sudo crm_simulate"):
            return subprocess.CompletedProcess([], 0, SETTLED, "")
        vip = self.config["hapx:vip"]
        return subprocess.CompletedProcess([], 0, f"2: eth0 inet {vip}/24 brd" if node == "hapx-node02" else "", "")


def _slow_lab() -> _SlowNode:
    config = {"hapx:vip": "192.168.4.20", "hapx:nodes": [{"name": "hapx-node01"}, {"name": "hapx-node02"}]}
    return _SlowNode(workspace=None, stack="t", namespace="t", state_dir=Path("/nonexistent"), config=config)


def test_a_node_that_does_not_answer_in_time_is_not_whole_yet_and_not_an_error():
    # A CI run failed on this: the reset node's `crm_mon` over ssh took longer than 30 s while it booted, and the
    # timeout ended the wait instead of being asked again.
    lab = _slow_lab()
    assert lab.whole() is False  # asks node01 (the first), which times out
    with pytest.raises(subprocess.TimeoutExpired):
        lab.vip_holders()  # outside `whole`, a timeout still raises


class _RefusingNode(LabStack):
    """Both nodes online to Pacemaker as node02 sees it; node01 refuses logins at once (ssh exits 255), as a reset
    node may while it starts up."""

    def ssh(self, node, command, timeout=60, stdin=None):
        if node == "hapx-node01":
            return subprocess.CompletedProcess([], 255, "", "kex_exchange_identification: read: Connection reset by peer")
        if command.startswith("sudo crm_"):
            return subprocess.CompletedProcess([], 0, SETTLED, "")
        return subprocess.CompletedProcess([], 0, f"2: eth0 inet {self.config['hapx:vip']}/24 brd", "")


def test_a_node_that_refuses_logins_is_not_whole_and_has_no_boot_id():
    # A CI run took this for whole (node02 held the VIP, node01 "held none"), then found no boot id on node01.
    config = {"hapx:vip": "192.168.4.20", "hapx:nodes": [{"name": "hapx-node01"}, {"name": "hapx-node02"}]}
    lab = _RefusingNode(workspace=None, stack="t", namespace="t", state_dir=Path("/nonexistent"), config=config)
    assert lab.whole("hapx-node02") is False
    assert lab.boot_id("hapx-node01") is None


def test_a_node_that_times_out_has_no_boot_id_and_raises_nothing():
    assert _slow_lab().boot_id("hapx-node01") is None


class _Answers(LabStack):
    """A lab whose node answers scheduler_idle's command with a given output."""

    answer = ""

    def ssh(self, node, command, timeout=60, stdin=None):
        assert command.startswith("sudo crm_simulate") and "cibadmin --query --scope status" in command
        return subprocess.CompletedProcess([], 0, self.answer, "")


def _status(*settled: str, nodes=("hapx-node01", "hapx-node02")) -> str:
    """`cibadmin --query --scope status` as Pacemaker 2.1.5 prints it, with the mark on the `settled` nodes."""
    states = []
    for i, node in enumerate(nodes, 1):
        mark = (
            f'    <transient_attributes id="{i}">\n      <instance_attributes id="status-{i}">\n'
            f'        <nvpair id="status-{i}-{SETTLED_ATTRIBUTE}" name="{SETTLED_ATTRIBUTE}" value="1"/>\n'
            "      </instance_attributes>\n    </transient_attributes>\n"
        ) if node in settled else ""  # fmt: skip
        states.append(
            f'  <node_state id="{i}" uname="{node}" in_ccm="true" crmd="online" join="member" expected="member">\n'
            f"{mark}    <lrm id=\"{i}\">\n      <lrm_resources/>\n    </lrm>\n  </node_state>\n"
        )
    return "<status>\n" + "".join(states) + "</status>\n"




@pytest.mark.parametrize(
    ("answer", "idle"),
    [
        (SETTLED, True),  # no rule against the DC in the CIB: idle when nothing is planned
        (SETTLED + RULE_MARK + "\n" + _status("hapx-node01", "hapx-node02"), True),
        # The rule, and a node not settled yet: its handover is still to come.
        (SETTLED + RULE_MARK + "\n" + _status("hapx-node01"), False),
        (SETTLED + RULE_MARK + "\n", False),
        (HANDOVER + RULE_MARK + "\n" + _status("hapx-node01", "hapx-node02"), False),
    ],
    ids=["no-rule", "all-settled", "one-settled", "none-settled", "handover-planned"],
)
def test_idle_waits_for_every_node_to_be_settled_while_the_rule_is_on(answer, idle):
    config = {"hapx:vip": "192.168.4.20", "hapx:nodes": [{"name": "hapx-node01"}, {"name": "hapx-node02"}]}
    lab = _Answers(workspace=None, stack="t", namespace="t", state_dir=Path("/nonexistent"), config=config)
    lab.answer = answer
    assert lab.scheduler_idle("hapx-node01") is idle


def test_settled_nodes_reads_the_cib_status_not_status():
    out = SETTLED + RULE_MARK + "\n" + _status("hapx-node01")
    assert settled_nodes(out) == {"hapx-node01"}
    # A mark set to something else, an empty status, nothing printed (the query failed): nobody is settled.
    assert settled_nodes(RULE_MARK + "\n" + _status("hapx-node02").replace('value="1"', 'value="0"')) == set()
    assert settled_nodes(RULE_MARK + "\n<status/>\n") == set()
    assert settled_nodes(RULE_MARK + "\n") == set()
