"""corosync.conf as rendered, parsed by corosync itself (`corosync -t`).

corosync only accepts a config whose nodelist names the local host, so each
node's check runs in a throwaway network namespace that owns that node's
ring address; no packet is sent.
"""

from __future__ import annotations

import subprocess

import pytest

from components.config import parse_config

from .conftest import require_tool, run


def _check_as(netns: str, address: str, conf_path, tmp_path) -> subprocess.CompletedProcess:
    subprocess.run(["ip", "-n", netns, "addr", "add", f"{address}/27", "dev", "lo"], check=True)
    authkey = tmp_path / "authkey"
    authkey.write_bytes(b"k" * 256)
    authkey.chmod(0o400)
    conf = tmp_path / "corosync.conf"
    # The nodes read /etc/corosync/authkey; point this check at a test key.
    conf.write_text(conf_path.read_text().replace("  transport: knet\n", f"  transport: knet\n  keyfile: {authkey}\n"))
    return run(["ip", "netns", "exec", netns, require_tool("corosync"), "-t", "-c", str(conf)])


@pytest.mark.parametrize("node_index", [0, 1])
def test_corosync_accepts_the_config_on_each_node(rendered_dev, dev_raw, netns, tmp_path, node_index):
    node = parse_config(dev_raw).nodes[node_index]
    result = _check_as(netns, str(node.cluster_address), rendered_dev / "corosync.conf", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_corosync_rejects_a_broken_config(rendered_dev, dev_raw, netns, tmp_path):
    # Guards the check: crypto with a UDP transport must be refused.
    broken = tmp_path / "broken.conf"
    broken.write_text((rendered_dev / "corosync.conf").read_text().replace("transport: knet", "transport: udp"))
    node = parse_config(dev_raw).nodes[0]
    result = _check_as(netns, str(node.cluster_address), broken, tmp_path)
    assert result.returncode != 0


def test_corosync_conf_is_unicast_knet_two_node(rendered_dev):
    text = (rendered_dev / "corosync.conf").read_text()
    settings = [line.split("#", 1)[0] for line in text.splitlines()]
    assert not any("mcastaddr" in s or "bindnetaddr" in s for s in settings)
    assert "two_node: 1" in text and "crypto_cipher: aes256" in text
    assert "ring0_addr: 192.168.4.21" in text and "ring0_addr: 192.168.4.22" in text
