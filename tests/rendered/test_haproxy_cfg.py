"""haproxy.cfg as rendered, checked by the real `haproxy -c`."""

from __future__ import annotations

import os

from components.config import parse_config
from tests.conftest import cluster_files

from .conftest import require_tool, run

STATS_ENV = {"HAPX_STATS_USER": "admin", "HAPX_STATS_PASSWORD": "not-a-real-password"}


def _check(path):
    return run([require_tool("haproxy"), "-c", "-f", str(path)], env={**os.environ, **STATS_ENV})


def test_dev_haproxy_cfg_is_valid(rendered_dev):
    result = _check(rendered_dev / "haproxy.cfg")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr


def test_ip_backends_render_without_resolvers_and_are_valid(ip_backends_raw, tmp_path):
    cfg = parse_config(ip_backends_raw)
    text = cluster_files(cfg, "test").haproxy_cfg
    assert "resolvers" not in text and "init-addr" not in text
    assert "server kube-mast01 192.168.4.11:6443 check" in text
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    result = _check(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_haproxy_cfg_holds_no_secret_and_no_default_password(rendered_dev):
    text = (rendered_dev / "haproxy.cfg").read_text()
    assert "admin:admin" not in text
    assert 'stats auth "${HAPX_STATS_USER}:${HAPX_STATS_PASSWORD}"' in text
    assert "bind :6443" in text and "bind :32700" in text
    assert text.count("check resolvers dns") == 3


def test_a_broken_config_is_rejected_by_the_same_check(rendered_dev, tmp_path):
    # Guards the check itself: if haproxy -c stopped failing, the tests above would prove nothing.
    path = tmp_path / "broken.cfg"
    path.write_text((rendered_dev / "haproxy.cfg").read_text().replace("balance roundrobin", "balance no-such-algorithm"))
    assert _check(path).returncode != 0


def _files_opened_by_check(path) -> list[str]:
    trace = run(
        [require_tool("strace"), "-f", "-qq", "-e", "trace=open,openat", "-e", "signal=none", require_tool("haproxy"), "-c", "-f", str(path)],
        env={**os.environ, **STATS_ENV},
    )
    assert trace.returncode == 0, trace.stdout + trace.stderr
    return [line for line in trace.stderr.splitlines() if "open" in line and "= -1" not in line]


def test_checking_the_config_reads_no_system_ca_store(rendered_dev, tmp_path):
    # haproxy 2.6 reads every file of the system's CA store at start-up for its internal HTTP client, unless that
    # client verifies nothing; on an emulated CPU that read was most of a restart (templates/haproxy.cfg.j2).
    opened = _files_opened_by_check(rendered_dev / "haproxy.cfg")
    assert any("haproxy.cfg" in line for line in opened), opened  # the trace sees the check's own reads
    assert not [line for line in opened if "/ssl/certs/" in line], opened
    # The same check sees the store read once the line is gone: it can fail.
    without = tmp_path / "haproxy.cfg"
    without.write_text((rendered_dev / "haproxy.cfg").read_text().replace("  httpclient.ssl.verify none\n", ""))
    assert len([line for line in _files_opened_by_check(without) if "/ssl/certs/" in line]) > 10
