"""The scale scenario's steps with a stand-in lab: the third node added by one `up` and removed by the next, the
probe running across both, the pair's config back even when an up fails, the steps' times and (with failed
requests) the nodes' journals kept; and the keepalived profile skipping it."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import pytest

from bench import failover


FAULT_AT = 1000.0


def step_event(kind: str, name: str, op: str, at: float) -> str:
    urn = f"urn:pulumi:lab::hapx::hapx:x$pulumi-nodejs:dynamic:Resource::{name}"
    return json.dumps({"timestamp": at, kind: {"metadata": {"urn": urn, "op": op}}})


class FakeProbe:
    def __init__(self, failed_at: list[float], outage: tuple[float, float] | None = None):
        self.faulted = False
        self.failed_at = failed_at
        self.outage = outage

    def fault(self) -> float:
        self.faulted = True
        return FAULT_AT

    def stop(self) -> dict:
        return {
            "viaChanges": [], "probes": 100, "faultAt": FAULT_AT, "failuresAfterFault": len(self.failed_at),
            "failuresAfterRecoveryAtS": self.failed_at,
            "firstFailureAfterFaultS": self.outage[0] if self.outage else None,
            "unavailableS": self.outage[1] if self.outage else 0.0,
        }  # fmt: skip


class FakeLab:
    def __init__(self, fail_on_up: int | None = None, failed_at: list[float] = (), outage: tuple[float, float] | None = None):
        self.config = {"hapx:nodes": [{"name": "hapx-node01"}, {"name": "hapx-node02"}]}
        self.ups: list[list[str]] = []
        self.fail_on_up = fail_on_up
        self.probe = FakeProbe(list(failed_at), outage)
        self.flushes = 3
        self.journal_reads: list[tuple[str, str]] = []

    @property
    def nodes(self) -> list[str]:
        return [n["name"] for n in self.config["hapx:nodes"]]

    def set_config(self, config: dict) -> None:
        self.config = config

    def pulumi(self, *args: str) -> subprocess.CompletedProcess:
        assert self.probe.faulted, "the probe counts from the start of the first up"
        self.ups.append(list(self.nodes))
        if self.fail_on_up == len(self.ups):
            raise subprocess.CalledProcessError(255, ["pulumi", *args])
        assert "--json" in args
        # The first up creates node03's VM, the second updates the membership; 20 s each, 300 s apart.
        name, op = ("hapx-node03-vm", "create") if len(self.ups) == 1 else ("hapx-membership", "update")
        start = FAULT_AT + 300 * (len(self.ups) - 1) + 5
        events = [step_event("resourcePreEvent", name, op, start), step_event("resOutputsEvent", name, op, start + 20)]
        return subprocess.CompletedProcess(args, 0, "\n".join(events), "")

    def translation_cache_flushes(self, _node: str) -> int:
        self.flushes += 1
        return self.flushes

    def ssh(self, node: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        assert command.startswith("sudo journalctl")
        self.journal_reads.append((node, command))
        return subprocess.CompletedProcess(command, 0, f"journal of {node}\n", "")

    @contextlib.contextmanager
    def start_probe(self, *_args, **_kwargs):
        yield self.probe

    def corosync_members(self, _node: str) -> set[str]:
        return set(self.nodes)


WHOLE = failover.Pair(kind=failover.PACEMAKER.kind, whole=lambda _lab: True)


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(failover, "settle", lambda lab, record: None)
    monkeypatch.setattr(failover, "LEAD_IN_S", 0)
    monkeypatch.setattr(failover.time, "sleep", lambda _s: None)


def test_scale_adds_the_third_node_then_removes_it_under_one_probe():
    lab = FakeLab()
    record: dict = {}
    failover.scale(lab, WHOLE, record)
    assert lab.ups == [["hapx-node01", "hapx-node02", "hapx-node03"], ["hapx-node01", "hapx-node02"]]
    assert record["nodesAfterScaleUp"] == ["hapx-node01", "hapx-node02", "hapx-node03"]
    assert {"scaleUpS", "scaleDownAtS", "scaleDownS"} <= record.keys() and record["vipMoves"] == 0
    assert lab.nodes == ["hapx-node01", "hapx-node02"]
    assert record["stepsS"] == {"up": {"hapx-node03-vm": [5.0, 25.0]}, "down": {"hapx-membership": [305.0, 325.0]}}
    assert record["translationCacheFlushes"] == {"hapx-node01": [4, 6], "hapx-node02": [5, 7]}
    assert "failureJournals" not in record and lab.journal_reads == []


def test_failed_requests_keep_each_nodes_journal_around_them(tmp_path: Path):
    lab = FakeLab(failed_at=[263.25, 269.48])
    record: dict = {"keepJournalAs": tmp_path / "hapx-scale-1.json"}
    failover.scale(lab, WHOLE, record)
    assert record["failureJournals"] == {"hapx-node01": "hapx-scale-1-hapx-node01.log", "hapx-node02": "hapx-scale-1-hapx-node02.log"}
    assert (tmp_path / "hapx-scale-1-hapx-node02.log").read_text() == "journal of hapx-node02\n"
    ((_, command), _) = lab.journal_reads
    since = FAULT_AT + 263.25 - failover.FAILURE_JOURNAL_BEFORE_S
    until = FAULT_AT + 269.48 + failover.FAILURE_JOURNAL_AFTER_S
    assert f"--since=@{since:.3f} --until=@{until:.3f}" in command and "grep -v ' haproxy" in command


def test_an_outage_from_the_mark_on_keeps_the_journals_too(tmp_path: Path):
    # Requests failing from the mark until the recovery are not "after recovery": the window spans them.
    lab = FakeLab(outage=(0.5, 6.0))
    record: dict = {"keepJournalAs": tmp_path / "hapx-scale-1.json"}
    failover.scale(lab, WHOLE, record)
    ((_, command), _) = lab.journal_reads
    since = FAULT_AT + 0.5 - failover.FAILURE_JOURNAL_BEFORE_S
    until = FAULT_AT + 6.0 + failover.FAILURE_JOURNAL_AFTER_S
    assert f"--since=@{since:.3f} --until=@{until:.3f}" in command


def test_no_journal_is_read_without_a_directory_to_keep_it():
    lab = FakeLab(failed_at=[12.0])
    record: dict = {}
    failover.scale(lab, WHOLE, record)
    assert lab.journal_reads == [] and "failureJournals" not in record


def test_a_failed_up_leaves_the_pairs_config_for_the_next_run():
    lab = FakeLab(fail_on_up=1)
    with pytest.raises(subprocess.CalledProcessError):
        failover.scale(lab, WHOLE, {})
    assert lab.nodes == ["hapx-node01", "hapx-node02"]


def test_the_keepalived_profile_does_not_run_scale_and_says_why():
    assert "scale" in failover.SCENARIOS
    assert "third node" in failover.NOT_RUN["keepalived"]["scale"]
    assert "hapx" not in failover.NOT_RUN
