"""Scaling (components/cluster_membership.py): what the membership provider runs on which node when corosync.conf
or the node list changes (never on create), in what order (a node leaving is drained before the others forget it),
what an unreachable node means; and that the program puts the membership before every node's drain, and keeps
corosync.conf out of what replaces a VM.

tests/rendered runs the scripts with real tools, tests/e2e adds a third node to the lab and removes it again."""

from __future__ import annotations

import pulumi
import pytest

from tests.unit.pulumi_mocks import MOCKS, depends, is_secret_input, unsecret

import components.cluster_membership as cluster_membership  # noqa: E402  (after the mocks)
from components.cluster_membership import ClusterMembershipProvider, push_script, reload_script  # noqa: E402
from components.config import parse_config  # noqa: E402
from components.haproxy_cluster import HaproxyCluster, HaproxyClusterArgs  # noqa: E402
from components.node_drain import drain_script  # noqa: E402
from components.node_state import UNKNOWN, NodeStateError, NodeUnreachable, sha256_hex  # noqa: E402


def member(name: str, port: int) -> dict:
    return {"node": name, "connection": {"host": "127.0.0.1", "port": port, "user": "debian", "privateKey": "K", "hostKey": "H"}}


PAIR = [member("n1", 2220), member("n2", 2221)]
TRIO = PAIR + [member("n3", 2222)]


def props(members: list[dict], conf: str) -> dict:
    return {"members": members, "corosyncConf": conf, "corosyncConfSha256": sha256_hex(conf), "lastChange": None}


@pytest.fixture
def ssh(monkeypatch):
    """Every script the provider runs, in order, as (node port, script, stdin); `down` ports do not answer."""
    calls: list[tuple[int, str, str]] = []
    state: dict = {"down": set(), "fail": None}

    def fake_run_on_node(connection, script, stdin="", timeout_s=0, tries=0):
        port = connection["port"]
        if port in state["down"]:
            raise NodeUnreachable(f"hapx: cannot reach debian@127.0.0.1:{port} over SSH: Connection refused")
        calls.append((port, script, stdin))
        if state["fail"] and state["fail"] in script:
            raise NodeStateError("hapx: the command failed (1): refused")
        if "corosync-cfgtool -R" in script:
            return "membership: 3 nodes\n"
        return "corosync.conf changed\n" if "corosync.conf" in script else "drained\n"

    monkeypatch.setattr(cluster_membership, "run_on_node", fake_run_on_node)
    return calls, state


def test_create_touches_no_node(ssh):
    calls, _ = ssh
    outs = ClusterMembershipProvider().create(props(PAIR, "two")).outs
    assert calls == [] and outs["lastChange"].startswith("none")


def test_nothing_changed_runs_nothing(ssh):
    calls, _ = ssh
    provider = ClusterMembershipProvider()
    assert not provider.diff("m", props(PAIR, "two"), props(PAIR, "two")).changes
    provider.update("m", dict(props(PAIR, "two"), lastChange="x"), props(PAIR, "two"))
    assert calls == []


def test_a_node_added_the_others_get_the_file_and_reload_before_it_boots(ssh):
    calls, _ = ssh
    provider = ClusterMembershipProvider()
    diff = provider.diff("m", props(PAIR, "two"), props(TRIO, "three"))
    assert diff.changes and diff.replaces == []
    outs = provider.update("m", props(PAIR, "two"), props(TRIO, "three")).outs
    # The new node is not there yet: only the two running nodes get the file, then one reloads for three nodes.
    assert calls == [(2220, push_script(), "three"), (2221, push_script(), "three"), (2220, reload_script([], 3), "")]
    assert outs["lastChange"].endswith("membership: 3 nodes")


def test_a_node_removed_is_drained_before_the_others_forget_it(ssh):
    calls, _ = ssh
    ClusterMembershipProvider().update("m", props(TRIO, "three"), props(PAIR, "two"))
    assert calls == [
        (2222, drain_script("n3", require_peer=True), ""),  # standby, VIP handed over, cluster stack stopped
        (2220, push_script(), "two"),
        (2221, push_script(), "two"),
        (2220, reload_script(["n3"], 2), ""),
    ]


def test_a_timer_change_alone_is_pushed_and_reloaded(ssh):
    calls, _ = ssh
    assert ClusterMembershipProvider().diff("m", props(PAIR, "token 1000"), props(PAIR, "token 2000")).changes
    ClusterMembershipProvider().update("m", props(PAIR, "token 1000"), props(PAIR, "token 2000"))
    assert [c[0] for c in calls] == [2220, 2221, 2220] and calls[-1][1] == reload_script([], 2)


def test_an_unknown_file_is_a_change(ssh):
    news = dict(props(PAIR, "two"), corosyncConfSha256=UNKNOWN)
    assert ClusterMembershipProvider().diff("m", props(PAIR, "two"), news).changes


def test_unreachable_nodes_are_skipped_and_said(ssh):
    calls, state = ssh
    state["down"] = {2222, 2220}  # the leaving node is gone already; the first staying node is down
    outs = ClusterMembershipProvider().update("m", props(TRIO, "three"), props(PAIR, "two")).outs
    assert calls == [(2221, push_script(), "two"), (2221, reload_script(["n3"], 2), "")]
    assert "n3 gone already" in outs["lastChange"] and "n1 not updated (no answer)" in outs["lastChange"]


def test_a_refused_drain_fails_the_update_before_any_node_changes(ssh):
    calls, state = ssh
    state["fail"] = "standby"
    with pytest.raises(NodeStateError, match="refused"):
        ClusterMembershipProvider().update("m", props(TRIO, "three"), props(PAIR, "two"))
    assert [c[0] for c in calls] == [2222], "no file pushed after a refused drain"


def test_read_and_delete_touch_no_node(ssh):
    calls, _ = ssh
    provider = ClusterMembershipProvider()
    assert provider.read("m", props(PAIR, "two")).outs == props(PAIR, "two")
    provider.delete("m", props(PAIR, "two"))
    assert calls == []


def test_the_reload_forgets_exactly_the_nodes_that_left():
    assert 'for node in n3; do' in reload_script(["n3"], 2) and "Expected votes" in reload_script(["n3"], 2)
    assert 'for node in ; do' in reload_script([], 3)


# -- the graph (mocks) --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    from harness.paths import stack_config

    MOCKS.resources.clear()
    config = dict(stack_config("lab"))
    config["hapx:nodes"] = list(config["hapx:nodes"]) + [{"name": "hapx-node03", "clusterAddress": "192.168.4.23"}]
    return HaproxyCluster("scale", HaproxyClusterArgs(config=parse_config(config), stack="test"))


@pulumi.runtime.test
def test_the_membership_comes_before_every_node_and_keeps_keys_secret(cluster):
    def check(_):
        for node in ("hapx-node01", "hapx-node02", "hapx-node03"):
            assert depends(f"scale-{node}-drain", "scale-membership")
            assert depends(f"scale-{node}-vm", f"scale-{node}-drain")
        inputs = MOCKS.resources["scale-membership"].inputs
        # The members hold the SSH private key: secret as a whole.
        assert is_secret_input(inputs["members"])
        assert [m["node"] for m in unsecret(inputs["members"])] == ["hapx-node01", "hapx-node02", "hapx-node03"]
        assert "nodeid: 3" in inputs["corosyncConf"] and "two_node" not in inputs["corosyncConf"]

    return cluster.pacemaker.vip_node_at_apply.apply(check)


def test_the_corosync_nodelist_is_not_part_of_a_nodes_identity():
    """Adding a node changes corosync.conf on every node but replaces none of them; a new cluster name does."""
    from harness.paths import stack_config
    from components.rendering import NodeSecrets, render_cluster_files, render_node_files
    from components.drivers import driver_for

    def identity(raw: dict, node_index: int = 0) -> tuple[str, str]:
        cfg = parse_config(raw)
        driver = driver_for(cfg, "lab")
        cluster = render_cluster_files(cfg, "lab", driver.fence_plan())
        node = cfg.nodes[node_index]
        secrets = NodeSecrets("a", "b", "c", "d", "e")
        return render_node_files(cfg, "lab", node, driver.node_network(node, node_index), secrets, cluster).identity_sha, cluster.corosync_conf

    pair = dict(stack_config("lab"))
    trio = dict(pair, **{"hapx:nodes": list(pair["hapx:nodes"]) + [{"name": "hapx-node03", "clusterAddress": "192.168.4.23"}]})
    (same_a, conf_a), (same_b, conf_b) = identity(pair), identity(trio)
    assert conf_a != conf_b and same_a == same_b
    renamed = dict(pair, **{"hapx:clusterName": "other"})
    assert identity(renamed)[0] != same_a
