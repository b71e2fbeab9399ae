"""The drift check's scripts (templates/drift/) with the real Pacemaker tools against a CIB file: the lab's crm
script applied, both nodes up (crm_simulate); the read script's report parsed by the provider's own functions; hand
edits (a hapx constraint deleted, a resource stopped, a ban, cluster maintenance, a node in standby) named as drift;
the restore and node-online scripts put all of it back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from components.config import parse_config
from components.node_observation import (
    ABSENT,
    DECLARED_NODE,
    MISSING,
    as_applied,
    canonical_pacemaker,
    pacemaker_drift,
    pacemaker_restore,
    parse_node_report,
)
from components.node_state import sha256_hex
from components.pacemaker_resource_set import apply_script
from components.rendering import COLOCATION_ID, VIP_ID, crm_ids, render_template
from harness.paths import stack_config
from tests.conftest import cluster_files, fence_plan

from .conftest import require_tool, run, stand_in_path

NODE = "hapx-node01"
OTHER = "hapx-node02"


@pytest.fixture
def node(tmp_path) -> dict:
    """This host as a lab node, as far as the scripts can tell: `sudo` that just runs its command, systemd units
    that are active, the lab's crm script applied to a CIB file with both nodes up, and a haproxy.cfg."""
    cfg = parse_config(stack_config("lab"))
    crm, ids = cluster_files(cfg, "lab").crm_script, crm_ids(fence_plan(cfg, "lab"), cfg.pacemaker.vip_avoids_dc)
    path = stand_in_path(tmp_path / "bin", {"sudo": 'exec "$@"', "systemctl": "exit 0"})
    cib = tmp_path / "cib.xml"
    cib.write_text(run([require_tool("cibadmin"), "--empty"]).stdout)
    env = {**os.environ, "PATH": path, "CIB_file": str(cib)}
    applied = run(["sh", "-c", apply_script(ids, offline=True)], input=crm, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    up = run([require_tool("crm_simulate"), "-x", str(cib), "--node-up", NODE, "--node-up", OTHER, "--quorum", "true", "-S", "-O", str(cib)])
    assert up.returncode == 0, up.stdout + up.stderr
    haproxy_cfg = tmp_path / "haproxy.cfg"
    haproxy_cfg.write_text(cluster_files(cfg, "lab").haproxy_cfg)
    return {"env": env, "crm": crm, "ids": ids, "haproxy_cfg": haproxy_cfg, "cib": cib}


def sh(node: dict, script: str, stdin: str = "") -> str:
    result = run(["sh", "-c", script], input=stdin, env=node["env"])
    assert result.returncode == 0, f"{script[:200]}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def read(node: dict, include_cib: bool = True, haproxy_cfg: Path | None = None):
    script = render_template("drift/read-node-state.sh.j2", haproxy_cfg_path=haproxy_cfg or node["haproxy_cfg"], include_cib=include_cib)
    return parse_node_report(sh(node, script), NODE)


def test_the_read_script_reports_what_the_node_is(node):
    seen = read(node)
    assert seen.hostname == os.uname().nodename
    assert seen.haproxy_cfg_sha256 == sha256_hex(node["haproxy_cfg"].read_text())
    assert seen.node == DECLARED_NODE
    live = canonical_pacemaker(seen.cib_configuration, node["ids"])
    assert set(node["ids"]) - {"hapx-haproxy"} <= set(live)  # the primitive is inside its clone
    assert live["property:stonith-enabled"] == "true"
    assert as_applied(live, node["ids"]) == live, "a fresh apply holds nothing hapx did not make"
    without = read(node, include_cib=False)
    assert not without.cib_asked and without.node == DECLARED_NODE


def test_the_read_script_without_pacemaker_or_haproxy_cfg(node, tmp_path):
    node["env"]["CIB_file"] = str(tmp_path / "no-such-cib.xml")
    seen = read(node, haproxy_cfg=tmp_path / "no-such-haproxy.cfg")
    assert seen.haproxy_cfg_sha256 == MISSING
    assert seen.node["online"] is False
    assert seen.cib_asked and seen.cib_configuration is None


def test_hand_edits_are_drift_and_the_restore_scripts_put_them_back(node):
    applied = as_applied(canonical_pacemaker(read(node).cib_configuration, node["ids"]), node["ids"])
    sh(node, f"cibadmin --delete --xpath \"//*[@id='{COLOCATION_ID}']\"")
    sh(node, f"crm_resource --resource {VIP_ID} --meta --set-parameter target-role --parameter-value Stopped")
    sh(node, f"crm_resource --resource {VIP_ID} --ban --node {OTHER}")
    sh(node, "crm_attribute --type crm_config --name maintenance-mode --update true")
    sh(node, f"crm_attribute --node {NODE} --name standby --update on")

    seen = read(node)
    assert seen.node == {"online": True, "standby": True, "maintenance": False}
    drift = pacemaker_drift(applied, canonical_pacemaker(seen.cib_configuration, node["ids"]))
    ban = f"cli-ban-{VIP_ID}-on-{OTHER}"
    assert set(drift) == {COLOCATION_ID, VIP_ID, ban, "property:maintenance-mode"}
    assert drift[COLOCATION_ID] == ABSENT and "target-role" in drift[VIP_ID]

    undo = pacemaker_restore(applied, drift)
    restore = render_template(
        "drift/restore-pacemaker.sh.j2",
        apply_script=apply_script(node["ids"], offline=True),
        extra_constraints=undo.extra_constraints,
        properties=undo.properties,
    )
    sh(node, restore, stdin=node["crm"])
    online = sh(node, render_template("drift/node-online.sh.j2", node=NODE, timeout_s=30))
    assert f"{NODE} online" in online

    seen = read(node)
    assert seen.node == DECLARED_NODE
    assert pacemaker_drift(applied, canonical_pacemaker(seen.cib_configuration, node["ids"])) == {}
    # Idempotent: on a node as declared, the scripts change nothing hapx checks.
    sh(node, restore, stdin=node["crm"])
    sh(node, render_template("drift/node-online.sh.j2", node=NODE, timeout_s=30))
    assert pacemaker_drift(applied, canonical_pacemaker(read(node).cib_configuration, node["ids"])) == {}


def test_node_online_clears_maintenance_too(node):
    sh(node, f"crm_attribute --node {NODE} --name maintenance --update true")
    assert read(node, include_cib=False).node["maintenance"] is True
    sh(node, render_template("drift/node-online.sh.j2", node=NODE, timeout_s=30))
    assert read(node, include_cib=False).node == DECLARED_NODE


def test_node_online_gives_up_in_time_when_the_node_stays_out(node, tmp_path):
    node["env"]["CIB_file"] = str(tmp_path / "no-such-cib.xml")  # Pacemaker never answers
    result = run(["sh", "-c", render_template("drift/node-online.sh.j2", node=NODE, timeout_s=3)], env=node["env"])
    assert result.returncode == 1
    assert f"Pacemaker on {NODE} did not answer within 3s" in result.stderr
