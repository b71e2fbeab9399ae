"""The scale scenario's steps with a stand-in lab: the third node added by one `up` and removed by the next, the
probe running across both, the pair's config back even when an up fails; and the keepalived profile skipping it."""

from __future__ import annotations

import contextlib
import subprocess

import pytest

from bench import failover


class FakeProbe:
    def __init__(self):
        self.faulted = False

    def fault(self) -> float:
        self.faulted = True
        return 0.0

    def stop(self) -> dict:
        return {"viaChanges": [], "probes": 100, "failuresAfterFault": 0}


class FakeLab:
    def __init__(self, fail_on_up: int | None = None):
        self.config = {"hapx:nodes": [{"name": "hapx-node01"}, {"name": "hapx-node02"}]}
        self.ups: list[list[str]] = []
        self.fail_on_up = fail_on_up
        self.probe = FakeProbe()

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
        return subprocess.CompletedProcess(args, 0, "", "")

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


def test_a_failed_up_leaves_the_pairs_config_for_the_next_run():
    lab = FakeLab(fail_on_up=1)
    with pytest.raises(subprocess.CalledProcessError):
        failover.scale(lab, WHOLE, {})
    assert lab.nodes == ["hapx-node01", "hapx-node02"]


def test_the_keepalived_profile_does_not_run_scale_and_says_why():
    assert "scale" in failover.SCENARIOS
    assert "third node" in failover.NOT_RUN["keepalived"]["scale"]
    assert "hapx" not in failover.NOT_RUN
