"""harness.lab.planned_actions: what the lab reads to know Pacemaker has nothing left to do (the rendered tests
parse real crm_simulate output with it too)."""

import pytest

from harness.lab import planned_actions

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
