"""The bench's settle step: a fault hits a pair whose nodes are idle, and the row says so; a slow node is not whole
yet, not an error."""

from __future__ import annotations

import subprocess

import pytest

from bench import failover


class FakeLab:
    """Answers `head -1 /proc/stat; sleep; head -1 /proc/stat` with counters
    whose idle share follows a script per node."""

    nodes = ("hapx-node01", "hapx-node02")

    def __init__(self, idle_by_node: dict[str, list[float]]):
        self.idle = {node: list(shares) for node, shares in idle_by_node.items()}
        self.calls = 0

    def ssh(self, node: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        assert "/proc/stat" in command and "sleep" in command
        self.calls += 1
        share = self.idle[node].pop(0) if len(self.idle[node]) > 1 else self.idle[node][0]
        busy, idle = round(1000 * (1 - share)), round(1000 * share)
        # user nice system idle iowait irq softirq: before, then after
        before = "cpu  100 0 100 1000 0 0 0 0 0 0"
        after = f"cpu  {100 + busy // 2} 0 {100 + busy - busy // 2} {1000 + idle} 0 0 0 0 0 0"
        return subprocess.CompletedProcess(command, 0, stdout=f"{before}\n{after}\n", stderr="")


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(failover, "SETTLE_LIMIT_S", 5)


def test_idle_percent_reads_idle_and_iowait_over_the_sample():
    lab = FakeLab({"hapx-node01": [0.25], "hapx-node02": [0.9]})
    assert failover.idle_percent(lab, "hapx-node01") == pytest.approx(25.0)
    assert failover.idle_percent(lab, "hapx-node02") == pytest.approx(90.0)


def test_settle_waits_until_every_node_is_idle():
    lab = FakeLab({"hapx-node01": [0.3, 0.5, 0.95], "hapx-node02": [0.9]})
    record: dict = {}
    failover.settle(lab, record)
    assert record["settle"]["settled"] is True
    assert record["settle"]["idlePercent"] == {"hapx-node01": 95.0, "hapx-node02": 90.0}
    assert lab.calls == 6  # three rounds of both nodes


def test_settle_gives_up_at_its_limit_and_says_so(monkeypatch):
    clock = iter(range(0, 1000, 3))
    monkeypatch.setattr(failover.time, "monotonic", lambda: next(clock))
    lab = FakeLab({"hapx-node01": [0.2], "hapx-node02": [0.9]})
    record: dict = {}
    failover.settle(lab, record)
    assert record["settle"]["settled"] is False and record["settle"]["waitedS"] > failover.SETTLE_LIMIT_S
    assert record["settle"]["idlePercent"]["hapx-node01"] == 20.0


def test_a_node_that_answers_too_slowly_is_not_whole_yet_and_not_an_error():
    # A bench run was marked failed after its measurement: the rebooted node's crm_mon over ssh took over 30 s.
    class SlowLab:
        nodes = ["hapx-node01", "hapx-node02"]

        def ssh(self, node, command, timeout=60, stdin=None):
            raise subprocess.TimeoutExpired(["ssh", node, command], timeout)

    assert failover.pacemaker_whole(SlowLab()) is False
