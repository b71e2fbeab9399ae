"""Config parsing: the dev stack parses; every invalid case names its key and fix."""

from __future__ import annotations

import copy

import ipaddress
import json

import pytest
import yaml
from pydantic import ValidationError

import tools.render
from components.config import Accel, ConfigError, HaproxyRestart, Hypervisor, config_from_pulumi, parse_config
from harness.paths import stack_config
from tests.conftest import as_engine_config
from tools.render import main


def test_dev_stack_is_the_reference_topology(dev_raw):
    cfg = parse_config(dev_raw)
    assert cfg.hypervisor is Hypervisor.VIRTUALBOX
    assert [n.name for n in cfg.nodes] == ["hapx-node01", "hapx-node02"]
    assert cfg.vip == ipaddress.IPv4Address("192.168.4.20")
    assert cfg.vip_prefix_length == 27
    assert str(cfg.vip_broadcast) == "192.168.4.31"
    assert cfg.vip_interface == "dmz0.41"
    assert [(b.name, b.port) for b in cfg.backends] == [("kube-mast01", 6443), ("kube-mast02", 6443), ("kube-mast03", 6443)]
    assert cfg.haproxy.stats_port == 32700
    assert (cfg.node_size.cpus, cfg.node_size.memory_mb) == (1, 512)
    assert cfg.virtualbox.base_vm == "debian-base-image"


def test_engine_string_values_parse_the_same(dev_raw):
    # The engine hands numbers as strings and objects as JSON strings.
    assert parse_config(as_engine_config(dev_raw)) == parse_config(dev_raw)


def _set(raw, dotted, value):
    """Set hapx:key or hapx:key.sub or hapx:nodes[1].field in a raw config."""
    top, _, rest = dotted.partition(".")
    if "[" in top:
        name, idx = top[:-1].split("[")
        target = raw[name][int(idx)]
        target[rest] = value
    elif rest:
        raw.setdefault(top, {})[rest] = value
    else:
        raw[top] = value


def _delete(raw, key):
    raw.pop(key)


# (description, mutation, key named in the error, words in the message)
INVALID = [
    ("VIP outside its subnet", lambda r: _set(r, "hapx:vip", "192.168.5.20"), "hapx:vip", "outside hapx:clusterNetwork"),
    ("VIP is the network address", lambda r: _set(r, "hapx:vip", "192.168.4.0"), "hapx:vip", "network or broadcast"),
    ("VIP equals a node address", lambda r: _set(r, "hapx:vip", "192.168.4.21"), "hapx:vip", "clusterAddress of node hapx-node01"),
    (
        "VIP equals a backend address",
        lambda r: _set(r, "hapx:backends", [{"name": "k1", "address": "192.168.4.20", "port": 6443}]),
        "hapx:vip",
        "address of backend k1",
    ),
    ("VIP not an address", lambda r: _set(r, "hapx:vip", "192.168.4.300"), "hapx:vip", "not an IPv4 address"),
    ("duplicate node names", lambda r: _set(r, "hapx:nodes[1].name", "hapx-node01"), "hapx:nodes[1].name", "duplicates"),
    (
        "duplicate node addresses",
        lambda r: _set(r, "hapx:nodes[1].clusterAddress", "192.168.4.21"),
        "hapx:nodes[1].clusterAddress",
        "already used by node hapx-node01",
    ),
    (
        "duplicate management addresses",
        lambda r: _set(r, "hapx:nodes[1].managementAddress", "192.168.56.21"),
        "hapx:nodes[1].managementAddress",
        "already used",
    ),
    (
        "node outside the cluster network",
        lambda r: _set(r, "hapx:nodes[0].clusterAddress", "10.0.0.5"),
        "hapx:nodes[0].clusterAddress",
        "outside hapx:clusterNetwork",
    ),
    ("frontend port out of range", lambda r: _set(r, "hapx:haproxy.frontendPort", 70000), "hapx:haproxy.frontendPort", "out of range"),
    ("stats port zero", lambda r: _set(r, "hapx:haproxy.statsPort", 0), "hapx:haproxy.statsPort", "out of range"),
    ("backend port out of range", lambda r: _set(r, "hapx:backends[0].port", 65536), "hapx:backends[0].port", "out of range"),
    ("port not a number", lambda r: _set(r, "hapx:haproxy.statsPort", "http"), "hapx:haproxy.statsPort", "expected a TCP port"),
    ("same frontend and stats port", lambda r: _set(r, "hapx:haproxy.statsPort", 6443), "hapx:haproxy.statsPort", "equals haproxy.frontendPort"),
    ("no backends", lambda r: _set(r, "hapx:backends", []), "hapx:backends", "has no backends"),
    ("backends missing", lambda r: _delete(r, "hapx:backends"), "hapx:backends", "has no backends"),
    ("unknown top-level key", lambda r: _set(r, "hapx:vipp", "192.168.4.20"), "hapx:vipp", "unknown key"),
    ("unknown nested key", lambda r: _set(r, "hapx:haproxy.statsPassword", "x"), "hapx:haproxy.statsPassword", "unknown key"),
    ("unknown node key", lambda r: _set(r, "hapx:nodes[0].ip", "192.168.4.21"), "hapx:nodes[0].ip", "unknown key"),
    ("one node", lambda r: r["hapx:nodes"].pop(), "hapx:nodes", "needs at least two"),
    ("bad CIDR", lambda r: _set(r, "hapx:clusterNetwork", "192.168.4.0/33"), "hapx:clusterNetwork", "not a valid IPv4 CIDR"),
    ("CIDR with host bits", lambda r: _set(r, "hapx:clusterNetwork", "192.168.4.5/27"), "hapx:clusterNetwork", "not a valid IPv4 CIDR"),
    ("bad host-only CIDR", lambda r: _set(r, "hapx:virtualbox.hostOnlyNetwork", "192.168.56.1/40"), "hapx:virtualbox.hostOnlyNetwork", "not an address/prefix"),
    ("unknown hypervisor", lambda r: _set(r, "hapx:hypervisor", "hyperv"), "hapx:hypervisor", "not one of: virtualbox, qemu"),
    ("VLAN out of range", lambda r: _set(r, "hapx:clusterVlan", 4095), "hapx:clusterVlan", "out of range"),
    ("bad node name", lambda r: _set(r, "hapx:nodes[0].name", "Node_1"), "hapx:nodes[0].name", "not valid"),
    ("consensus below 1.2 x token", lambda r: _set(r, "hapx:corosync", {"tokenMs": 1000, "consensusMs": 1000}), "hapx:corosync.consensusMs", "less than 1.2 x tokenMs"),
    ("management address missing", lambda r: r["hapx:nodes"][0].pop("managementAddress"), "hapx:nodes[0].managementAddress", "required with hapx:hypervisor virtualbox"),
    ("root admin", lambda r: _set(r, "hapx:adminUser", "root"), "hapx:adminUser", "root is not allowed"),
    ("qemu section on a virtualbox stack", lambda r: _set(r, "hapx:qemu", {"accel": "tcg"}), "hapx:qemu", "hapx:hypervisor is virtualbox"),
    (
        "VirtualBox fencing without a host user",
        lambda r: _set(r, "hapx:fencing", {"enabled": True}),
        "hapx:fencing.hostUser",
        "required when fencing is on with VirtualBox",
    ),
    ("fencing enabled not a bool", lambda r: _set(r, "hapx:fencing", {"enabled": "yes"}), "hapx:fencing.enabled", "expected true or false"),
    ("ping targets not a list", lambda r: _set(r, "hapx:fencing", {"pingTargets": "192.168.4.11"}), "hapx:fencing.pingTargets", "expected a list"),
    ("bad ping target", lambda r: _set(r, "hapx:fencing", {"pingTargets": ["192.168.4.300"]}), "hapx:fencing.pingTargets[0]", "not an IPv4 address"),
    ("unknown haproxy restart", lambda r: _set(r, "hapx:pacemaker", {"haproxyRestart": "cron"}), "hapx:pacemaker.haproxyRestart", "not valid"),
    ("ping target twice", lambda r: _set(r, "hapx:fencing", {"pingTargets": ["a", "a"]}), "hapx:fencing.pingTargets", "lists a target twice"),
    (
        "VIP avoids the DC with one haproxy",
        lambda r: _set(r, "hapx:pacemaker", {"haproxyOnAllNodes": False, "vipAvoidsDc": True}),
        "hapx:pacemaker.vipAvoidsDc",
        "cannot be handed over",
    ),
    (
        "VIP avoids the DC with IPaddr2",
        lambda r: _set(r, "hapx:pacemaker", {"vipAgent": "IPaddr2", "vipAvoidsDc": True}),
        "hapx:pacemaker.vipAvoidsDc",
        "cannot be handed over",
    ),
    (
        "VIP avoids the DC with stickiness at INFINITY",
        lambda r: _set(r, "hapx:pacemaker", {"stickiness": 1000000, "vipAvoidsDc": True}),
        "hapx:pacemaker.stickiness",
        "leaves no room for the VIP's DC rule",
    ),
]


@pytest.mark.parametrize("what,mutate,key,words", INVALID, ids=[case[0] for case in INVALID])
def test_invalid_config_names_key_and_fix(dev_raw, what, mutate, key, words):
    mutate(dev_raw)
    with pytest.raises(ConfigError) as caught:
        parse_config(dev_raw)
    error = caught.value
    assert error.key == key, f"{what}: error names {error.key}, expected {key}"
    assert words in error.problem, f"{what}: {error}"
    assert error.fix, f"{what}: no fix given"
    assert str(error).startswith(f"{key}: ") and "Fix: " in str(error)


def test_invalid_cases_also_fail_with_engine_encoding(dev_raw):
    dev_raw["hapx:haproxy"]["frontendPort"] = 70000
    with pytest.raises(ConfigError, match=r"hapx:haproxy.frontendPort: 70000 is out of range"):
        parse_config(as_engine_config(dev_raw))


def _third_node(raw: dict) -> dict:
    third = copy.deepcopy(raw["hapx:nodes"][-1])
    third.update(name="hapx-node03", clusterAddress="192.168.4.23", managementAddress="192.168.56.23")
    raw["hapx:nodes"] = [*raw["hapx:nodes"], third]
    return raw


def test_two_nodes_default_to_a_consensus_of_half_the_token(dev_raw):
    dev_raw["hapx:corosync"] = {"tokenMs": 1000}
    cfg = parse_config(dev_raw)
    assert (cfg.corosync.token_ms, cfg.corosync.consensus_ms) == (1000, 500)


def test_three_nodes_default_to_a_consensus_of_1_2_token(dev_raw):
    _third_node(dev_raw)["hapx:corosync"] = {"tokenMs": 1000}
    cfg = parse_config(dev_raw)
    assert (len(cfg.nodes), cfg.corosync.consensus_ms) == (3, 1200)


def test_two_nodes_may_set_a_consensus_below_the_token(dev_raw):
    dev_raw["hapx:corosync"] = {"tokenMs": 1000, "consensusMs": 300}
    assert parse_config(dev_raw).corosync.consensus_ms == 300


def test_three_nodes_may_not_set_a_consensus_below_1_2_token(dev_raw):
    _third_node(dev_raw)["hapx:corosync"] = {"tokenMs": 1000, "consensusMs": 300}
    with pytest.raises(ConfigError) as caught:
        parse_config(dev_raw)
    message = str(caught.value)
    assert "hapx:corosync.consensusMs" in message and "300 is less than 1.2 x tokenMs (1200)" in message
    assert "below tokenMs" not in message  # that way out is only for two nodes


def test_the_vip_avoids_the_dc_wherever_it_can_be_handed_over(dev_raw):
    """Unset, the rule is on when a node that comes back can take the VIP by a handover (hapx's agent, haproxy on
    every node), off otherwise; asked for where it cannot hand over, the error names the key and the fix."""
    assert parse_config(dev_raw).pacemaker.vip_avoids_dc is True
    assert parse_config(dev_raw).pacemaker.vip_handover_after_s == 60
    for blocker in ({"vipAgent": "IPaddr2"}, {"haproxyOnAllNodes": False}, {"stickiness": 999999}):
        dev_raw["hapx:pacemaker"] = dict(blocker)
        assert parse_config(dev_raw).pacemaker.vip_avoids_dc is False, blocker
        dev_raw["hapx:pacemaker"] = {**blocker, "vipAvoidsDc": True}
        with pytest.raises(ConfigError) as caught:
            parse_config(dev_raw)
        assert caught.value.key in ("hapx:pacemaker.vipAvoidsDc", "hapx:pacemaker.stickiness"), caught.value
        assert "set pacemaker.vipAvoidsDc false" in str(caught.value) or "or set it false" in str(caught.value)
    dev_raw["hapx:pacemaker"] = {"vipAvoidsDc": False}
    assert parse_config(dev_raw).pacemaker.vip_avoids_dc is False


def test_consensus_at_least_the_join_timeout(dev_raw):
    dev_raw["hapx:corosync"] = {"tokenMs": 1000, "consensusMs": 50}
    with pytest.raises(ConfigError, match="hapx:corosync.consensusMs"):
        parse_config(dev_raw)


def test_fencing_defaults_follow_the_hypervisor(dev_raw, lab_raw):
    dev = parse_config(dev_raw)
    # VirtualBox: off until the operator gives hapx a way to the host.
    assert dev.fencing.enabled is False
    lab = parse_config(lab_raw)
    assert lab.fencing.enabled is True
    # The lab's backends are addresses, so they are the ping targets.
    assert lab.fencing.ping_targets == ("192.168.4.11", "192.168.4.12", "192.168.4.13")
    dev_raw["hapx:fencing"] = {"enabled": True, "hostUser": "vbox"}
    vbox = parse_config(dev_raw).fencing
    assert (str(vbox.host_address), vbox.host_user) == ("192.168.56.1", "vbox")
    # dev's backends are DNS names: no default targets, and no heuristic level.
    assert vbox.ping_targets == ()


def test_virtualbox_only_fencing_keys_are_refused_on_qemu(lab_raw):
    lab_raw["hapx:fencing"] = {"hostUser": "me"}
    with pytest.raises(ConfigError, match=r"hapx:fencing.hostUser: is for VirtualBox"):
        parse_config(lab_raw)


def _verdict(parse) -> str:
    """The key a config error names, or "ok"."""
    try:
        parse()
    except ConfigError as error:
        return error.key
    return "ok"


@pytest.mark.parametrize("stored", ["plain", "encrypted"])
def test_render_and_preview_give_the_same_verdict_on_a_secret(dev_raw, tmp_path, monkeypatch, stored):
    # make render reads Pulumi.<stack>.yaml, where an encrypted value is {secure: ...} and is never decrypted.
    value = "plain-text-password" if stored == "plain" else {"secure": "v1:bm90LXJlYWQ=:bm90LXJlYWQ="}
    (tmp_path / "Pulumi.t.yaml").write_text(yaml.safe_dump({"config": {**dev_raw, "hapx:statsPassword": value}}))
    rendered = _verdict(lambda: tools.render.render("t", tmp_path / "out", root=tmp_path))
    # pulumi preview: the engine hands the program every value as text, secrets decrypted, and names the secret keys.
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({**as_engine_config(dev_raw), "hapx:statsPassword": "plain-text-password"}))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["hapx:statsPassword"] if stored == "encrypted" else []))
    previewed = _verdict(config_from_pulumi)
    assert rendered == previewed == ("hapx:statsPassword" if stored == "plain" else "ok")
    assert main(["--stack", "dev", "--out", str(tmp_path / "dev")]) == 0  # the committed stacks still render


def test_plain_text_secret_error_says_how_and_never_shows_the_value(dev_raw):
    dev_raw["hapx:corosyncAuthkey"] = "c2VjcmV0LWF1dGhrZXk="
    with pytest.raises(ConfigError) as caught:
        parse_config(dev_raw)
    assert caught.value.key == "hapx:corosyncAuthkey" and "--secret" in caught.value.fix
    assert "c2VjcmV0LWF1dGhrZXk=" not in str(caught.value)
    assert parse_config(dev_raw, secret_keys={"hapx:corosyncAuthkey"}) == parse_config(stack_config("dev"))


# Strict types inside objects: the engine keeps nested types (`pulumi config set --path` stores numbers and
# booleans as such), so only top-level text is decoded.
STRICT = [
    ("number as text in an object", lambda r: _set(r, "hapx:haproxy.statsPort", "32700"), "hapx:haproxy.statsPort", "expected a TCP port"),
    ("true as a number", lambda r: _set(r, "hapx:nodeSize.cpus", True), "hapx:nodeSize.cpus", "expected an integer"),
    ("float as a number", lambda r: _set(r, "hapx:nodeSize.memoryMb", 512.5), "hapx:nodeSize.memoryMb", "expected a size in MiB"),
    ("1 as a boolean", lambda r: _set(r, "hapx:pacemaker", {"haproxyOnAllNodes": 1}), "hapx:pacemaker.haproxyOnAllNodes", "true or false"),
    ("text as a boolean", lambda r: _set(r, "hapx:fencing", {"enabled": "true"}), "hapx:fencing.enabled", "expected true or false"),
    ("number as a name", lambda r: _set(r, "hapx:clusterName", 5), "hapx:clusterName", "expected a non-empty string"),
    ("number as an address", lambda r: _set(r, "hapx:vip", 3232236564), "hapx:vip", "expected an IPv4 address"),
    ("object instead of a list", lambda r: _set(r, "hapx:backends", {"name": "k1"}), "hapx:backends", "expected a list"),
    ("list instead of an object", lambda r: _set(r, "hapx:haproxy", [6443]), "hapx:haproxy", "expected an object"),
    ("missing node address", lambda r: r["hapx:nodes"][0].pop("clusterAddress"), "hapx:nodes[0].clusterAddress", "is required"),
    ("unknown key in a backend", lambda r: _set(r, "hapx:backends[2].weight", 3), "hapx:backends[2].weight", "unknown key"),
    ("nodeId is not a key", lambda r: _set(r, "hapx:nodes[0].nodeId", 7), "hapx:nodes[0].nodeId", "unknown key"),
    ("bad host-only mode", lambda r: _set(r, "hapx:virtualbox.hostOnlyMode", "bridged"), "hapx:virtualbox.hostOnlyMode", "not one of: hostonlyif"),
    ("bad nameserver", lambda r: _set(r, "hapx:haproxy.nameservers", ["192.168.4.1:99999"]), "hapx:haproxy.nameservers[0]", "not a TCP port"),
    ("17 nodes", lambda r: r["hapx:nodes"].extend(r["hapx:nodes"][:1] * 15), "hapx:nodes", "at most 16"),
]


@pytest.mark.parametrize("what,mutate,key,words", STRICT, ids=[case[0] for case in STRICT])
def test_strict_types_name_key_and_fix(dev_raw, what, mutate, key, words):
    mutate(dev_raw)
    with pytest.raises(ConfigError) as caught:
        parse_config(dev_raw)
    assert (caught.value.key, words in caught.value.problem, bool(caught.value.fix)) == (key, True, True), str(caught.value)


def test_engine_text_and_nulls_at_the_top_level(dev_raw):
    engine = as_engine_config(dev_raw)
    assert parse_config({**engine, "hapx:clusterVlan": " 41 ", "hapx:dhcpVlan": None}).dhcp_vlan is None
    assert parse_config({**engine, "hapx:haproxy": None}).haproxy.frontend_port == 6443  # null: the default
    assert parse_config({**engine, "hapx:clusterName": "123"}).cluster_name == "123"  # a key that wants text keeps it
    with pytest.raises(ConfigError, match=r"^hapx:nodes: expected a list, got '\[not json'"):
        parse_config({**engine, "hapx:nodes": "[not json"})


def test_defaults_that_follow_other_keys(lab_raw):
    lab = parse_config(lab_raw)
    # The lab's client takes the last host of the cluster network, unless that is taken.
    assert (lab.qemu.lab_client_address, lab.corosync.consensus_ms) == (ipaddress.IPv4Address("192.168.4.30"), 500)  # half the default 1000 ms token
    assert [n.node_id for n in lab.nodes] == [1, 2]
    assert lab.qemu.translation_cache_mb == 2048
    with pytest.raises(ConfigError, match=r"^hapx:qemu.translationCacheMb: .*set it to a size in MiB, from 64 to 16384"):
        parse_config({**lab_raw, "hapx:qemu": {**lab_raw["hapx:qemu"], "translationCacheMb": 32}})
    lab_raw["hapx:qemu"]["labClientAddress"] = "192.168.4.11"
    with pytest.raises(ConfigError, match=r"hapx:qemu.labClientAddress: 192.168.4.11 is already the address of backend kube-mast01"):
        parse_config(lab_raw)


def test_parsed_config_is_frozen_and_hashable(dev_raw):
    cfg = parse_config(dev_raw)
    assert hash(cfg) == hash(parse_config(dev_raw))
    with pytest.raises(ValidationError):
        cfg.nodes[0].name = "other"
    # VM identity hashes repr(NodeConfig) (hypervisor.VmSpec.fingerprint): its form must not change.
    assert repr(cfg.nodes[0]) == (
        "NodeConfig(name='hapx-node01', cluster_address=IPv4Address('192.168.4.21'), "
        "management_address=IPv4Address('192.168.56.21'), node_id=1)"
    )
    assert HaproxyRestart.SYSTEMD == "systemd" and Accel("tcg") is Accel.TCG


def test_base_image_must_be_an_existing_vdi(dev_raw, tmp_path):
    vbox = dev_raw["hapx:virtualbox"]
    for image, words in ((str(tmp_path / "base.qcow2"), "is not valid"), (str(tmp_path / "none.vdi"), "does not exist")):
        dev_raw["hapx:virtualbox"] = {**vbox, "baseImage": image}
        with pytest.raises(ConfigError) as caught:
            parse_config(dev_raw)
        assert caught.value.key == "hapx:virtualbox.baseImage" and words in caught.value.problem
        assert "make image" in caught.value.fix
    (tmp_path / "base.vdi").write_bytes(b"vdi")
    dev_raw["hapx:virtualbox"] = {**vbox, "baseImage": str(tmp_path / "base.vdi")}
    assert parse_config(dev_raw).virtualbox.base_image == str(tmp_path / "base.vdi")
