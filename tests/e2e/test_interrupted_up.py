"""A `pulumi up` stopped midway (both VMs started, the cluster not yet
configured) re-runs to convergence, and destroy still leaves nothing."""

from __future__ import annotations

import pytest

from harness.interrupt import EXIT_CANCELLED, interrupt_up_when, rerun_to_convergence
from harness.lab import LabStack
from tests.e2e.conftest import FIGURES

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(workspace, tmp_path_factory):
    # Built all at once: the rolling replacement test stops and re-runs a roll already; this one, a first build.
    lab = LabStack.create(workspace, "e2eint", tmp_path_factory.mktemp("lab-state"), port_start=24300, rollout="all-at-once")
    yield lab
    lab.teardown()


def test_interrupted_up_reruns_to_convergence(lab):
    status, output = interrupt_up_when(lab, "hapx-hapx-node02-ready creating")
    assert "hapx-hapx-node02-ready creating" in output, output[-3000:]
    # The up did not complete: Pulumi cancelled it.
    assert status == EXIT_CANCELLED, output[-3000:]

    # Re-run: whatever the first run left pending, the second converges.
    _, had_pending = rerun_to_convergence(lab)
    FIGURES["interruptedUpRerunHadPending"] = had_pending
    assert len(lab.vip_holders()) == 1
    assert lab.probe(duration_s=2, interval_ms=50)["failures"] == 0
    lab.up("--expect-no-changes")

    lab.pulumi("destroy", "--yes", "--skip-preview", timeout=900)
    assert lab.leftovers() == []
