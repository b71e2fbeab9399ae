"""The rolling-replace scenario's own figures: step windows from `up --json`, VIP moves from the probe's answers."""

from __future__ import annotations

import json

from harness.probe import Ledger
from harness.pulumi_events import step_windows


def _event(kind: str, urn: str, at: int, op: str) -> str:
    return json.dumps({"timestamp": at, kind: {"metadata": {"urn": f"urn:pulumi:s::p::t::{urn}", "op": op}}})


def test_step_windows_span_each_steps_work():
    lines = [
        "not json: a warning line",
        json.dumps({"timestamp": 99, "preludeEvent": {}}),
        _event("resourcePreEvent", "hapx-n1-drain", 100, "update"),
        _event("resOutputsEvent", "hapx-n1-drain", 130, "update"),
        # Deleted before its replacement is created: only the create is the step.
        _event("resourcePreEvent", "hapx-n1-vm", 130, "delete-replaced"),
        _event("resOutputsEvent", "hapx-n1-vm", 131, "delete-replaced"),
        _event("resourcePreEvent", "hapx-n1-vm", 131, "create-replacement"),
        _event("resOutputsEvent", "hapx-n1-vm", 190, "create-replacement"),
        _event("resourcePreEvent", "hapx-n1-rejoin", 190, "create-replacement"),
        _event("resOutputsEvent", "hapx-n1-rejoin", 210, "create-replacement"),
        _event("resourcePreEvent", "hapx-n2-state", 150, "same"),
        # The old copy's delete at the end of the up is not the step's work.
        _event("resourcePreEvent", "hapx-n1-rejoin", 400, "delete-replaced"),
        _event("resOutputsEvent", "hapx-n1-rejoin", 400, "delete-replaced"),
    ]
    assert step_windows("\n".join(lines), since=100) == {
        "hapx-n1-drain": (0, 30),
        "hapx-n1-vm": (31, 90),
        "hapx-n1-rejoin": (90, 110),
    }


def test_the_probe_lists_every_change_of_the_relaying_node():
    record = Ledger(confirm_s=1.0)
    replies = ["b1 via 10.0.0.1", "b2 via 10.0.0.1", None, "b1 via 10.0.0.2", "b2 via 10.0.0.2", "b3 via 10.0.0.1"]
    for i, reply in enumerate(replies):
        record.record(100.0 + i, 100.5 + i, reply, fault_at=100.0)
    assert record.report(99.0, 110.0, 100.0)["viaChanges"] == [[3.0, "10.0.0.2"], [5.0, "10.0.0.1"]]
