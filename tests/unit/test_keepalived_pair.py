"""The benchmark's keepalived pair judges haproxy as hapx's agent does: its
tracked script requests haproxy's monitor-uri on the local stats listener."""

from __future__ import annotations

import re
import types

from bench.keepalived import CHECK_TIMEOUT_S, render_keepalived
from components.rendering import HEALTH_PATH, TEMPLATE_DIR
from harness.lab import haproxy_serving_check
from harness.paths import stack_config


def test_tracked_script_is_the_serving_check():
    config = stack_config("lab")
    lab = types.SimpleNamespace(config=config, nodes=[n["name"] for n in config["hapx:nodes"]])
    conf = render_keepalived(lab, lab.nodes[0], auth_pass="0123abcd")
    (script,) = re.findall(r'vrrp_script chk_haproxy \{\s*script "([^"]+)"', conf)
    stats_port = config["hapx:haproxy"]["statsPort"]
    assert f"http://127.0.0.1:{stats_port}{HEALTH_PATH}" in script
    assert script == haproxy_serving_check(stats_port, timeout_s=CHECK_TIMEOUT_S)
    # keepalived ends the script only after curl's own limit.
    (script_timeout,) = re.findall(r"vrrp_script chk_haproxy \{[^}]*\n  timeout (\d+)\n", conf)
    assert int(script_timeout) > CHECK_TIMEOUT_S
    assert "track_script {\n    chk_haproxy\n  }" in conf


def test_the_check_allows_what_hapxs_agent_allows():
    # Judged alike: the request may take as long on both pairs (a tighter limit made keepalived give up its VIP under
    # the benchmark's own probe).
    agent = (TEMPLATE_DIR / "node" / "ocf-haproxy").read_text()
    (agent_timeout,) = re.findall(r'^: "\$\{OCF_RESKEY_check_timeout:=(\d+)\}"$', agent, re.M)
    assert CHECK_TIMEOUT_S == int(agent_timeout)
