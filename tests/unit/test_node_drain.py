"""The rolling replacement in the graph (components/node_drain.py and HaproxyCluster): when the drain's provider
drains a node (only when its replacement key changes, never on create), what an unreachable node means, and the
order the program declares under mocks: drain -> VM -> ready -> config -> rejoin, and with `rollout: rolling`
one node's rejoin before the next node's drain; with `all-at-once`, no edge between nodes.

tests/rendered runs the drain and rejoin scripts with the real Pacemaker tools, tests/e2e replaces the lab's nodes."""

from __future__ import annotations

import pulumi
import pytest

from tests.unit.pulumi_mocks import MOCKS, depends, is_secret_input, unsecret

import components.node_drain as node_drain  # noqa: E402  (after the mocks)
from components.config import parse_config  # noqa: E402
from components.haproxy_cluster import HaproxyCluster, HaproxyClusterArgs  # noqa: E402
from components.node_drain import NOT_DRAINED, NodeDrainProvider, drain_script  # noqa: E402
from components.node_state import UNKNOWN, NodeStateError, NodeUnreachable  # noqa: E402

CONNECTION = {"host": "127.0.0.1", "port": 2222, "user": "debian", "privateKey": "KEY", "hostKey": "ssh-ed25519 AAAA"}


def props(key: str = "k1", require_peer: bool = True) -> dict:
    return {"node": "hapx-node01", "connection": CONNECTION, "replaceKey": key, "requirePeer": require_peer, "lastDrain": None}


@pytest.fixture
def ssh(monkeypatch):
    """Every script the provider would run over SSH; `answer` is what the fake node does."""
    calls: list[dict] = []
    state = {"answer": lambda script: "drain: hapx-node01 in standby\ndrained hapx-node01\n"}

    def fake_run_on_node(connection, script, stdin="", timeout_s=0, tries=0):
        calls.append({"connection": connection, "script": script, "tries": tries})
        return state["answer"](script)

    monkeypatch.setattr(node_drain, "run_on_node", fake_run_on_node)
    return calls, state


def test_create_drains_nothing(ssh):
    calls, _ = ssh
    result = NodeDrainProvider().create(props())
    assert calls == [] and result.outs["replaceKey"] == "k1" and result.outs["lastDrain"].startswith("none")


def test_a_new_key_drains_the_node_before_its_vm_is_replaced(ssh):
    calls, _ = ssh
    provider = NodeDrainProvider()
    assert provider.diff("id", props("k1"), props("k2")).changes
    assert provider.diff("id", props("k1"), props("k2")).replaces == []
    outs = provider.update("id", props("k1"), props("k2")).outs
    assert [c["script"] for c in calls] == [drain_script("hapx-node01", require_peer=True)]
    assert calls[0]["tries"] == node_drain.DRAIN_SSH_TRIES
    assert outs["lastDrain"] == "drained hapx-node01" and outs["replaceKey"] == "k2"


def test_an_unknown_key_is_a_change(ssh):
    assert NodeDrainProvider().diff("id", props("k1"), props(UNKNOWN)).changes


def test_the_same_key_drains_nothing_even_when_other_inputs_change(ssh):
    calls, _ = ssh
    provider = NodeDrainProvider()
    assert not provider.diff("id", props("k1"), props("k1")).changes
    olds = dict(props("k1"), lastDrain="drained hapx-node01")
    # rolling -> all-at-once: recorded, nothing drained
    assert provider.diff("id", olds, props("k1", require_peer=False)).changes
    outs = provider.update("id", olds, props("k1", require_peer=False)).outs
    assert calls == [] and outs["requirePeer"] is False and outs["lastDrain"] == "drained hapx-node01"


def test_an_unreachable_node_has_nothing_to_drain(ssh):
    _, state = ssh

    def unreachable(_script):
        raise NodeUnreachable("hapx: cannot reach debian@127.0.0.1:2222 over SSH: Connection refused")

    state["answer"] = unreachable
    assert NodeDrainProvider().update("id", props("k1"), props("k2")).outs["lastDrain"] == NOT_DRAINED


def test_a_failed_drain_fails_the_update(ssh):
    _, state = ssh

    def refused(_script):
        raise NodeStateError("hapx: the command on debian@127.0.0.1:2222 failed (1): no other node is online")

    state["answer"] = refused
    with pytest.raises(NodeStateError, match="no other node is online"):
        NodeDrainProvider().update("id", props("k1"), props("k2"))


def test_read_and_delete_touch_no_node(ssh):
    calls, _ = ssh
    provider = NodeDrainProvider()
    assert provider.read("hapx-node01", props()).outs == props()
    provider.delete("hapx-node01", props())
    assert calls == []


def test_only_the_rolling_drain_asks_for_a_peer():
    assert "no other node is online" in drain_script("n1", require_peer=True)
    assert "no other node is online" not in drain_script("n1", require_peer=False)


# -- the order HaproxyCluster declares (mocks) ------------------------------------------------------------------


def _cluster(name: str, rollout: str) -> HaproxyCluster:
    from harness.paths import stack_config

    config = dict(stack_config("lab"), **{"hapx:rollout": rollout})
    return HaproxyCluster(name, HaproxyClusterArgs(config=parse_config(config), stack="test"))


@pytest.fixture(scope="module")
def clusters():
    MOCKS.resources.clear()
    return {"rolling": _cluster("roll", "rolling"), "all-at-once": _cluster("flat", "all-at-once")}


def _registered(clusters) -> pulumi.Output:
    return pulumi.Output.all(*[c.pacemaker.vip_node_at_apply for c in clusters.values()])


@pulumi.runtime.test
def test_each_node_is_drained_before_its_vm_and_rejoins_after_its_config(clusters):
    def check(_):
        for prefix in ("roll", "flat"):
            for node in ("hapx-node01", "hapx-node02"):
                n = f"{prefix}-{node}"
                assert depends(f"{n}-vm", f"{n}-drain")
                for step in ("ready", "haproxy-cfg", "stats-credentials", "agents", "fence-credential"):
                    assert depends(f"{n}-rejoin", f"{n}-{step}"), step
                assert depends(f"{prefix}-pacemaker-cluster-formed", f"{n}-rejoin")
                drain = MOCKS.resources[f"{n}-drain"].inputs
                assert is_secret_input(drain["replaceKey"])
                connection = drain["connection"]
                assert is_secret_input(connection) or is_secret_input(connection["privateKey"])
                # The rejoin re-runs after a drain as well as after a new VM.
                assert len(MOCKS.resources[f"{n}-rejoin"].inputs["triggers"]) == 2

    return _registered(clusters).apply(check)


@pulumi.runtime.test
def test_rolling_drains_the_second_node_only_after_the_first_rejoined(clusters):
    def check(_):
        assert depends("roll-hapx-node02-drain", "roll-hapx-node01-rejoin")
        waits = lambda name: [u for u in MOCKS.resources[name].depends_on if "-rejoin" in u or "-vm" in u]  # noqa: E731
        assert not waits("roll-hapx-node01-drain"), "the first node waits for no node"
        assert not waits("flat-hapx-node02-drain") and not waits("flat-hapx-node01-drain")
        assert MOCKS.resources["roll-hapx-node01-drain"].inputs["requirePeer"] is True
        assert MOCKS.resources["flat-hapx-node01-drain"].inputs["requirePeer"] is False

    return _registered(clusters).apply(check)


@pulumi.runtime.test
def test_the_drain_key_is_the_vms_triggers(clusters):
    # Same seed identity and size -> same key; the VM's triggers are exactly those two.
    def check(_):
        vm = [unsecret(t) for t in unsecret(MOCKS.resources["roll-hapx-node01-vm"].inputs["triggers"])]
        assert len(vm) == 2
        key = unsecret(MOCKS.resources["roll-hapx-node01-drain"].inputs["replaceKey"])
        from components.rendering import sha256_text

        assert key == sha256_text(*map(str, vm))

    return _registered(clusters).apply(check)
