"""HolderWatch (harness/watch.py) with local shells for nodes: the real report loop reads this host's routing trie,
in which 127.0.0.1 is a local address and 192.0.2.1 (a documentation address) is not."""

from __future__ import annotations

import subprocess
import time

from harness.watch import HolderWatch

HELD, NOT_HELD = "127.0.0.1", "192.0.2.1"


class _LocalLab:
    """Nodes are local shells. `scripts` replaces a node's report loop with a script of its own; `holds` says which
    nodes run the real loop for an address they hold."""

    def __init__(self, holds: set[str], scripts: dict[str, str] | None = None):
        self.config = {"hapx:vip": HELD}
        self.nodes = ["node-a", "node-b"]
        self.holds = holds
        self.scripts = scripts or {}

    def ssh_command(self, node: str, command: str, options: tuple[str, ...] = ()) -> list[str]:
        script = self.scripts.get(node) or (command if node in self.holds else command.replace(HELD, NOT_HELD))
        return ["sh", "-c", script]


def test_the_real_report_loop_tells_a_held_address_from_one_that_is_not():
    lab = _LocalLab(holds={"node-a"})
    watch = HolderWatch(lab, interval_s=0.1, max_s=0.5)
    held = subprocess.run(["sh", "-c", watch.report_command()], capture_output=True, text=True, timeout=30)
    lab.config["hapx:vip"] = NOT_HELD
    not_held = subprocess.run(["sh", "-c", watch.report_command()], capture_output=True, text=True, timeout=30)
    assert set(held.stdout.split()) == {"1"} and set(not_held.stdout.split()) == {"0"}, (held, not_held)


def test_one_login_per_node_however_many_samples():
    with HolderWatch(_LocalLab(holds={"node-a"}), interval_s=0.1, max_s=30) as watch:
        time.sleep(1.5)
    assert len(watch.samples) >= 10
    assert watch.logins == {"node-a": 1, "node-b": 1}
    assert {holders for _, holders in watch.samples} == {("node-a",)}
    assert watch.max_holders == 1 and watch.dual_seconds() == 0.0


def test_a_node_that_went_silent_stops_counting_as_a_holder_before_the_other_takes_over():
    # node-a reports once and is then reset (its session stays open, silent); node-b starts holding 1 s later.
    lab = _LocalLab(
        holds=set(),
        scripts={"node-a": "echo 1; exec sleep 10", "node-b": "echo 0; sleep 1; while :; do echo 1; sleep 0.1; done"},
    )
    with HolderWatch(lab, interval_s=0.1, max_s=30) as watch:
        time.sleep(2)
    sequence = [holders for _, holders in watch.samples]
    assert ("node-a",) in sequence and ("node-b",) in sequence and () in sequence, sequence
    assert watch.max_holders == 1, sequence


def test_two_nodes_holding_at_once_are_seen():
    with HolderWatch(_LocalLab(holds={"node-a", "node-b"}), interval_s=0.1, max_s=30) as watch:
        time.sleep(1)
    assert watch.max_holders == 2 and watch.dual_seconds() > 0.5


def test_a_session_that_ended_is_opened_again():
    lab = _LocalLab(holds=set(), scripts={"node-a": "echo 1", "node-b": "while :; do echo 0; sleep 0.1; done"})
    with HolderWatch(lab, interval_s=0.1, max_s=30) as watch:
        time.sleep(2.5)
    assert watch.logins["node-a"] >= 2 and watch.logins["node-b"] == 1, watch.logins
