"""hapx's VIP resource agent (templates/node/ocf-vip) on this host.

The agent runs in a network namespace of the test's own, on one end of a
veth pair whose other end sits in a second namespace, the "client". The
real `ip` and resource-agents' real send_arp do the work: the tests check
the address on the interface, the OCF exit codes Pacemaker acts on, and
that a client which knew the VIP at another MAC learns the new one from
the agent's gratuitous ARPs (as a client does when the VIP moves).
"""

from __future__ import annotations

import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.paths import REPO

from .conftest import require_tool

AGENT = REPO / "templates" / "node" / "ocf-vip"
SEND_ARP = Path("/usr/libexec/heartbeat/send_arp")
OCF_SUCCESS, OCF_ERR_CONFIGURED, OCF_NOT_RUNNING = 0, 6, 7
VIP, PREFIX, BROADCAST = "10.213.0.20", "27", "10.213.0.31"
OLD_MAC = "02:00:00:00:00:99"  # where the client believes the VIP is before the start


@pytest.fixture
def segment(tmp_path):
    """Two namespaces joined by a veth pair: `node` (nic dmz0) and `client`."""
    require_tool("ip")
    if not SEND_ARP.exists():
        pytest.fail("resource-agents is not installed (send_arp); run `make setup`")
    tag = uuid.uuid4().hex[:6]
    node, client = f"hapx-vn-{tag}", f"hapx-vc-{tag}"
    for ns in (node, client):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip = lambda *args: subprocess.run(["ip", *args], check=True)  # noqa: E731
        ip("-n", node, "link", "add", "dmz0", "type", "veth", "peer", "name", "eth0", "netns", client)
        ip("-n", node, "addr", "add", "10.213.0.2/27", "dev", "dmz0")
        ip("-n", client, "addr", "add", "10.213.0.9/27", "dev", "eth0")
        for ns, dev in ((node, "dmz0"), (client, "eth0")):
            ip("-n", ns, "link", "set", dev, "up")
        yield {"node": node, "client": client, "run_dir": tmp_path / "run"}
    finally:
        for ns in (node, client):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def agent(segment: dict, action: str, send_arp: Path = SEND_ARP, **params: str) -> subprocess.CompletedProcess:
    env = {
        "HAPX_SEND_ARP": str(send_arp),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "OCF_RESOURCE_INSTANCE": "test-vip",
        "OCF_RESKEY_ip": VIP,
        "OCF_RESKEY_cidr_netmask": PREFIX,
        "OCF_RESKEY_broadcast": BROADCAST,
        "OCF_RESKEY_nic": "dmz0",
        "HAPX_RUN_DIR": str(segment["run_dir"]),
        **{f"OCF_RESKEY_{k}": v for k, v in params.items()},
    }
    cmd = ["ip", "netns", "exec", segment["node"], "sh", str(AGENT), action]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)


def node_addresses(segment: dict) -> str:
    return subprocess.run(
        ["ip", "-n", segment["node"], "-o", "-4", "addr", "show", "dev", "dmz0"], capture_output=True, text=True, check=True
    ).stdout


def client_mac_for_vip(segment: dict) -> str:
    out = subprocess.run(
        ["ip", "-n", segment["client"], "neigh", "show", VIP, "dev", "eth0"], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else ""


def test_meta_data_is_ocf_xml_with_ipaddr2s_parameter_names():
    out = subprocess.run(["sh", str(AGENT), "meta-data"], capture_output=True, text=True, check=True).stdout
    root = ET.fromstring(out)
    names = {p.get("name") for p in root.iter("parameter")}
    assert root.get("name") == "vip" and {"ip", "cidr_netmask", "broadcast", "nic"} <= names
    assert {a.get("name") for a in root.iter("action")} >= {"start", "stop", "monitor", "validate-all", "meta-data"}
    # Pacemaker hands the VIP over (allow-migrate) only with an agent that has these.
    assert {a.get("name") for a in root.iter("action")} >= {"migrate_to", "migrate_from"}


def test_a_handover_keeps_the_address_on_the_source_until_its_stop(segment):
    # migrate_to runs on the holder: it must hold the address, and keeps it (the target adds it next).
    assert agent(segment, "migrate_to", CRM_meta_migrate_target="other").returncode == 1, "not the holder: an error"
    assert agent(segment, "start", arp_count="0").returncode == OCF_SUCCESS
    assert agent(segment, "migrate_to", CRM_meta_migrate_target="other").returncode == OCF_SUCCESS
    assert f"inet {VIP}/{PREFIX} " in node_addresses(segment), "the source still holds it"
    assert agent(segment, "stop").returncode == OCF_SUCCESS
    # migrate_from runs on the target: it adds the address as a start does.
    assert agent(segment, "migrate_from", arp_count="0").returncode == OCF_SUCCESS
    assert agent(segment, "monitor").returncode == OCF_SUCCESS


def test_start_monitor_stop_with_the_exit_codes_pacemaker_acts_on(segment):
    assert agent(segment, "monitor").returncode == OCF_NOT_RUNNING
    assert agent(segment, "start", arp_count="0").returncode == OCF_SUCCESS
    assert f"inet {VIP}/{PREFIX} brd {BROADCAST} " in node_addresses(segment)
    assert agent(segment, "monitor").returncode == OCF_SUCCESS
    assert agent(segment, "start", arp_count="0").returncode == OCF_SUCCESS, "a second start must succeed"
    assert node_addresses(segment).count(f"inet {VIP}/") == 1
    assert agent(segment, "stop").returncode == OCF_SUCCESS
    assert VIP not in node_addresses(segment)
    assert agent(segment, "monitor").returncode == OCF_NOT_RUNNING
    assert agent(segment, "stop").returncode == OCF_SUCCESS, "stopping a stopped VIP must succeed"


def test_monitor_does_not_mistake_another_address_for_the_vip(segment):
    subprocess.run(["ip", "-n", segment["node"], "addr", "add", f"{VIP}0/32", "dev", "dmz0"], check=True)  # 10.213.0.200
    assert agent(segment, "monitor").returncode == OCF_NOT_RUNNING


def test_clients_learn_the_vips_new_mac_before_start_returns(segment, tmp_path):
    # The client knew the VIP at another MAC (the node that died); Linux
    # updates an existing entry from a gratuitous ARP.
    subprocess.run(
        ["ip", "-n", segment["client"], "neigh", "replace", VIP, "lladdr", OLD_MAC, "dev", "eth0", "nud", "stale"],
        check=True,
    )
    mac = subprocess.run(  # sysfs shows the namespace's own interfaces under ip netns exec
        ["ip", "netns", "exec", segment["node"], "cat", "/sys/class/net/dmz0/address"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # send_arp as slow to start as on a busy emulated node: 0.2 s before it
    # runs, the real one then.
    slow_send_arp = tmp_path / "send_arp"
    slow_send_arp.write_text(f"#!/bin/sh\nsleep 0.2\nexec {SEND_ARP} \"$@\"\n")
    slow_send_arp.chmod(0o755)
    started = time.monotonic()
    result = agent(segment, "start", send_arp=slow_send_arp, arp_count="4", arp_interval_ms="200")
    took = time.monotonic() - started
    assert result.returncode == OCF_SUCCESS, result.stderr
    # The first ARP is out before start returns (a failover's clients must
    # not wait for a detached process to get the CPU); the other three
    # (3 x 200 ms) are not waited for.
    assert client_mac_for_vip(segment) == mac, "start returned before the client had the new MAC"
    assert took < 0.2 + 0.4, f"start took {took:.2f} s: it must not wait for the later ARPs"
    # The detached send_arp runs (its pidfile comes) and ends (it goes).
    pidfile, seen = segment["run_dir"] / f"send_arp-{VIP}", False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (seen and not pidfile.exists()):
        seen = seen or pidfile.exists()
        time.sleep(0.01)
    assert seen and not pidfile.exists(), "no detached send_arp ran to its end for the later ARPs"


def test_a_send_arp_that_never_returns_does_not_hang_the_start(segment, tmp_path):
    # Debian's send_arp can wait forever for a timer signal that came before
    # its wait began (a process preempted in between, on a busy emulated
    # node): start must return, with the address on, long before
    # Pacemaker's 20 s timeout fails the VIP on the node.
    stuck_send_arp = tmp_path / "send_arp"
    stuck_send_arp.write_text("#!/bin/sh\nexec sleep 60\n")
    stuck_send_arp.chmod(0o755)
    started = time.monotonic()
    result = agent(segment, "start", send_arp=stuck_send_arp, arp_count="1")
    took = time.monotonic() - started
    assert result.returncode == OCF_SUCCESS, result.stderr
    assert f"inet {VIP}/{PREFIX} " in node_addresses(segment)
    assert took < 2, f"start took {took:.1f} s behind a send_arp that never returns"


def test_validate_names_what_is_wrong(segment):
    for params, expected in (
        ({"nic": "nope0"}, "no such interface"),
        ({"ip": "10.213.0"}, "not an IPv4 address"),
        ({"ip": "10.213.0.256"}, "not an IPv4 address"),
        ({"cidr_netmask": "33"}, "not a prefix length"),
    ):
        result = agent(segment, "validate-all", **params)
        assert result.returncode == OCF_ERR_CONFIGURED and expected in result.stderr, (params, result.stderr)
    assert agent(segment, "validate-all").returncode == OCF_SUCCESS
    assert agent(segment, "start", nic="nope0").returncode == OCF_ERR_CONFIGURED
