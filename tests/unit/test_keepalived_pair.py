"""The benchmark's keepalived pair judges haproxy as hapx's agent does: its
tracked script requests haproxy's monitor-uri on the local stats listener."""

from __future__ import annotations

import re
import types

from bench.keepalived import render_keepalived
from components.rendering import HEALTH_PATH
from harness.lab import haproxy_serving_check
from harness.paths import stack_config


def test_tracked_script_is_the_serving_check():
    config = stack_config("lab")
    lab = types.SimpleNamespace(config=config, nodes=[n["name"] for n in config["hapx:nodes"]])
    conf = render_keepalived(lab, lab.nodes[0], auth_pass="0123abcd")
    (script,) = re.findall(r'vrrp_script chk_haproxy \{\s*script "([^"]+)"', conf)
    stats_port = config["hapx:haproxy"]["statsPort"]
    assert f"http://127.0.0.1:{stats_port}{HEALTH_PATH}" in script
    assert script == haproxy_serving_check(stats_port, timeout_s=1)
    assert "track_script {\n    chk_haproxy\n  }" in conf
