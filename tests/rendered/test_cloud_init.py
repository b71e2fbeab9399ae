"""NoCloud files as rendered: cloud-init's own schema and network renderer, and the ISO."""

from __future__ import annotations

import io
import json
import subprocess

import pycdlib
import yaml

from harness.paths import REPO
from tools.seed_iso import build_seed_iso

from .conftest import require_tool, run

NODES = ("hapx-node01", "hapx-node02")


def test_user_data_is_valid_cloud_config(rendered_dev):
    for node in NODES:
        result = run([require_tool("cloud-init"), "schema", "--config-file", str(rendered_dev / node / "user-data")])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Valid cloud-config" in result.stdout


def test_user_data_carries_what_the_node_needs_and_downloads_nothing(rendered_dev):
    data = yaml.safe_load((rendered_dev / "hapx-node01" / "user-data").read_text())
    paths = {f["path"]: f for f in data["write_files"]}
    assert {"/etc/corosync/authkey", "/etc/corosync/corosync.conf", "/etc/haproxy/haproxy.cfg", "/etc/haproxy/hapx-stats.env"} <= set(paths)
    assert paths["/etc/corosync/authkey"]["permissions"] == "0400"
    assert paths["/etc/haproxy/hapx-stats.env"]["permissions"] == "0600"
    assert "packages" not in data and "apt" not in data, "nodes must not download at boot"
    runcmd = json.dumps(data["runcmd"])
    assert "curl" not in runcmd and "wget" not in runcmd
    assert data["users"][0]["name"] == "debian" and data["ssh_pwauth"] is False
    assert data["hostname"] == "hapx-node01"


def test_rendered_output_holds_no_secret(rendered_dev):
    for path in rendered_dev.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "admin:admin" not in text
            assert "PRIVATE KEY-----" not in text, f"{path} holds a private key"
    user_data = (rendered_dev / "hapx-node01" / "user-data").read_text()
    assert "<secret: SSH host private key" in user_data and "<secret: hapx:statsPassword" in user_data


def test_network_config_renders_with_cloud_init(rendered_dev, tmp_path):
    out = tmp_path / "net"
    result = run([
        require_tool("cloud-init"), "devel", "net-convert",
        "-p", str(rendered_dev / "hapx-node01" / "network-config"), "-k", "yaml",
        "-d", str(out), "-D", "debian", "-O", "eni",
    ])
    assert result.returncode == 0, result.stdout + result.stderr
    eni = (out / "etc/network/interfaces.d/50-cloud-init").read_text()
    assert "iface dmz0.41 inet static" in eni and "address 192.168.4.21/27" in eni
    assert "iface mgmt0 inet static" in eni and "address 192.168.56.21/24" in eni
    rules = (out / "etc/udev/rules.d/70-persistent-net.rules").read_text()
    assert 'NAME="dmz0"' in rules and 'NAME="mgmt0"' in rules


def test_seed_iso_has_label_cidata_and_the_three_files(rendered_dev, tmp_path):
    files = {name: (rendered_dev / "hapx-node01" / name).read_text() for name in ("user-data", "meta-data", "network-config")}
    iso_path = tmp_path / "seed.iso"
    iso_path.write_bytes(build_seed_iso(files))
    iso = pycdlib.PyCdlib()
    iso.open(str(iso_path))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        for name, text in files.items():
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path=f"/{name}")
            assert buf.getvalue().decode() == text
    finally:
        iso.close()
    # And an independent reader agrees on the names cloud-init looks for.
    listing = subprocess.run([require_tool("xorriso"), "-indev", str(iso_path), "-ls", "/"], capture_output=True, text=True)
    for name in files:
        assert f"'{name}'" in listing.stdout


def test_seed_tool_writes_atomically_with_private_mode(tmp_path):
    payload = json.dumps({"user-data": "#cloud-config\n", "meta-data": "instance-id: t\n"})
    out = tmp_path / "seeds" / "n1.iso"
    result = run([".venv/bin/python", "tools/seed_iso.py", "--out", str(out)], input=payload, cwd=str(REPO))
    assert result.returncode == 0, result.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert "#cloud-config" not in result.stdout, "the tool must not echo seed content"


def test_lab_user_data_carries_the_certificate_and_the_exporter_on_loopback(tmp_path):
    out = tmp_path / "lab"
    result = run([str(REPO / ".venv/bin/python"), "-m", "tools.render", "--stack", "lab", "--out", str(out)], cwd=REPO)
    assert result.returncode == 0, result.stderr
    user_data = out / "hapx-node01" / "user-data"
    schema = run([require_tool("cloud-init"), "schema", "--config-file", str(user_data)])
    assert schema.returncode == 0, schema.stdout + schema.stderr
    data = yaml.safe_load(user_data.read_text())
    paths = {f["path"]: f for f in data["write_files"]}
    # The web service's certificate and key: root's alone (a placeholder here; the real one only in the seed ISO).
    assert paths["/etc/haproxy/certs/web.pem"]["permissions"] == "0600" and paths["/etc/haproxy/certs/web.pem"]["owner"] == "root:root"
    assert "<secret: web's certificate and private key" in paths["/etc/haproxy/certs/web.pem"]["content"]
    # The cluster exporter listens on loopback only; haproxy relays it behind the stats credentials.
    assert paths["/etc/sysconfig/prometheus-ha_cluster_exporter"]["content"] == "ARGS=--web.listen-address=127.0.0.1:9664\n"
    assert "restart ha_cluster_exporter" in json.dumps(data["runcmd"])
    assert "server exporter 127.0.0.1:9664" in (out / "haproxy.cfg").read_text()
