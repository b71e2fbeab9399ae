"""The crm script in an empty CIB: crmsh loads it, crm_verify accepts it, and
crm_simulate shows VIP and haproxy starting together and moving together."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from components.pacemaker_resource_set import apply_script
from components.fencing import FENCE_DEVICE_ID, FENCE_HEURISTICS_ID
from components.rendering import CRM_IDS, HAPROXY_CLONE_ID, HAPROXY_ID, SETTLED_ATTRIBUTE, VIP_AVOIDS_DC_ID, VIP_ID, crm_ids
from harness.lab import planned_actions
from tests.conftest import cluster_files, fence_plan

from .conftest import require_tool, run, stand_in_path

NODES = ("hapx-node01", "hapx-node02")


@pytest.fixture
def empty_cib(tmp_path) -> Path:
    cib = tmp_path / "cib.xml"
    result = run([require_tool("cibadmin"), "--empty"])
    assert result.returncode == 0, result.stderr
    cib.write_text(result.stdout)
    return cib


def _crm_load(cib: Path, script: Path) -> None:
    # -F: this host has no systemd for crmsh to ask about systemd:haproxy's
    # metadata; the nodes do, and there apply.sh runs without -F.
    with script.open() as stdin:
        result = run([require_tool("crm"), "-F", "configure", "load", "update", "-"], stdin=stdin, env={**os.environ, "CIB_file": str(cib)})
    assert result.returncode == 0, result.stdout + result.stderr


def _simulate(cib: Path, *args: str) -> str:
    result = run([require_tool("crm_simulate"), "-x", str(cib), "--quorum", "true", *args])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _started_on(output: str, resource: str) -> str:
    revised = output.split("Revised Cluster Status:", 1)[1]
    match = re.search(rf"\* {re.escape(resource)}\s+\(.*?\):\s+Started (\S+)", revised)
    assert match, f"{resource} not started in:\n{revised}"
    return match.group(1)


def _haproxy_nodes(output: str) -> set[str]:
    """Nodes where a haproxy clone instance runs after the transition."""
    revised = output.split("Revised Cluster Status:", 1)[1]
    clone = revised.split(f"Clone Set: {HAPROXY_CLONE_ID}", 1)[1]
    match = re.search(r"\* Started: \[ ([^\]]*) \]", clone.split("Clone Set:", 1)[0])
    return set(match.group(1).split()) if match else set()


def _config(stack: str = "dev", **overrides):
    from components.config import parse_config
    from harness.paths import stack_config

    raw = stack_config(stack)
    raw.update({f"hapx:{k}": v for k, v in overrides.items()})
    return parse_config(raw)


def _crm_script(haproxy_on_all_nodes: bool) -> str:
    return cluster_files(_config(pacemaker={"haproxyOnAllNodes": haproxy_on_all_nodes}), "dev").crm_script


def test_dev_stack_runs_haproxy_on_all_nodes(rendered_dev):
    text = (rendered_dev / "pacemaker.crm").read_text()
    # No clone-max: one instance per cluster node, whatever their number (a node added or removed needs no edit).
    assert f"clone {HAPROXY_CLONE_ID} {HAPROXY_ID} meta clone-node-max=1 interleave=true" in text
    assert "clone-max=" not in text


def test_haproxy_instances_follow_the_cluster_nodes(empty_cib, tmp_path):
    """Scale (issue 13): the same script runs haproxy on two nodes, then on a third that joins, and an older stack's
    clone-max=2 is dropped by `load update`, not kept."""
    script = tmp_path / "pacemaker.crm"
    script.write_text(_crm_script(True).replace("meta clone-node-max=1", "meta clone-max=2 clone-node-max=1"))
    _crm_load(empty_cib, script)
    three = (*NODES, "hapx-node03")
    up = sum((["--node-up", n] for n in three), [])
    assert len(_haproxy_nodes(_simulate(empty_cib, *up, "-S"))) == 2, "the older script's clone-max=2 holds before the update"
    script.write_text(_crm_script(True))
    _crm_load(empty_cib, script)
    assert 'name="clone-max"' not in empty_cib.read_text(), "load update kept the old clone-max"
    assert _haproxy_nodes(_simulate(empty_cib, *up, "-S")) == set(three)
    assert _haproxy_nodes(_simulate(empty_cib, *sum((["--node-up", n] for n in NODES), []), "-S")) == set(NODES)


@pytest.mark.parametrize("haproxy_on_all_nodes", [True, False], ids=["haproxy-on-all-nodes", "haproxy-moves-with-vip"])
def test_crm_script_loads_verifies_and_fails_over(haproxy_on_all_nodes, empty_cib, tmp_path):
    script = tmp_path / "pacemaker.crm"
    script.write_text(_crm_script(haproxy_on_all_nodes))
    _crm_load(empty_cib, script)
    verify = run([require_tool("crm_verify"), "-x", str(empty_cib)])
    assert verify.returncode == 0, verify.stdout + verify.stderr

    both_up = tmp_path / "up.xml"
    out = _simulate(empty_cib, *sum((["--node-up", n] for n in NODES), []), "-S", "-O", str(both_up))
    active = _started_on(out, VIP_ID)
    expected = set(NODES) if haproxy_on_all_nodes else {active}
    assert _haproxy_nodes(out) == expected, "haproxy must run where the VIP is (and, cloned, everywhere)"

    out = _simulate(both_up, "--node-fail", active, "-S")
    survivor = _started_on(out, VIP_ID)
    assert survivor != active and survivor in NODES
    assert _haproxy_nodes(out) == {survivor}, "the VIP must land where haproxy runs"
    transition = out.split("Executing Cluster Transition:", 1)[1]
    if haproxy_on_all_nodes:
        # Failover only moves the address: haproxy is already running.
        assert HAPROXY_ID not in transition.split("Revised Cluster Status:", 1)[0]
    else:
        assert transition.index(f"{HAPROXY_ID}") < transition.index(f"{VIP_ID} "), "haproxy must start before the VIP"


def test_crm_script_has_one_property_line(rendered_dev):
    text = (rendered_dev / "pacemaker.crm").read_text()
    assert len(re.findall(r"^property ", text, re.M)) == 1
    assert "stonith-enabled=false" in text and "no-quorum-policy=stop" in text


@pytest.mark.parametrize("delay_ms", [500, 0])
def test_the_transition_delay_lands_in_the_cib_as_pacemaker_reads_it(delay_ms, empty_cib, tmp_path):
    # The controller reads transition-delay as an interval ("300ms" set by
    # hand on a lab node: "New Transition Timer just popped ... time=300ms").
    # crm_verify does not check the option's value, so the stored string is
    # read back exactly.
    script = tmp_path / "pacemaker.crm"
    script.write_text(cluster_files(_config(pacemaker={"transitionDelayMs": delay_ms}), "dev").crm_script)
    _crm_load(empty_cib, script)
    verify = run([require_tool("crm_verify"), "-x", str(empty_cib)])
    assert verify.returncode == 0, verify.stdout + verify.stderr
    query = run(
        [require_tool("crm_attribute"), "--type", "crm_config", "--name", "transition-delay", "--query", "--quiet"],
        env={**os.environ, "CIB_file": str(empty_cib)},
    )
    assert query.returncode == 0 and query.stdout.strip() == f"{delay_ms}ms", query.stdout + query.stderr


@pytest.fixture
def fake_sudo(tmp_path) -> dict:
    """A PATH where `sudo` just runs its command, so the node scripts run here against a CIB file."""
    return {**os.environ, "PATH": stand_in_path(tmp_path / "bin", {"sudo": 'exec "$@"'})}


def test_apply_script_against_a_cib_file(rendered_dev, empty_cib, fake_sudo):
    env = {**fake_sudo, "CIB_file": str(empty_cib)}
    crm = (rendered_dev / "pacemaker.crm").read_text()
    cfg = _config()
    ids = crm_ids(fence_plan(cfg, "dev"), cfg.pacemaker.vip_avoids_dc)
    assert set(CRM_IDS) <= set(ids)
    applied = run(["sh", "-c", apply_script(ids, offline=True)], input=crm, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "applied crm configuration sha256=" in applied.stdout
    cib = empty_cib.read_text()
    for resource_id in ids:
        assert f'id="{resource_id}"' in cib

    # Re-applying the same script is a no-op that still succeeds (idempotent).
    again = run(["sh", "-c", apply_script(ids, offline=True)], input=crm, env=env)
    assert again.returncode == 0, again.stderr
    # So does the script with the node instances it is applied for, as comments (a replaced node re-applies it).
    commented = crm + "\n# node instance hapx-node01-0123456789abcdef\n"
    with_nodes = run(["sh", "-c", apply_script(ids, offline=True)], input=commented, env=env)
    assert with_nodes.returncode == 0, with_nodes.stderr
    assert empty_cib.read_text().count('id="hapx-vip"') == 1


def test_apply_script_fails_when_the_load_leaves_resources_out(empty_cib, fake_sudo):
    # A script that loads but lacks the VIP: the CIB check must catch it.
    env = {**fake_sudo, "CIB_file": str(empty_cib)}
    partial = (
        "property cib-bootstrap-options: stonith-enabled=false\n"
        "primitive hapx-haproxy systemd:haproxy op monitor interval=20s\n"
        "clone hapx-haproxy-clone hapx-haproxy\n"
    )
    result = run(["sh", "-c", apply_script(CRM_IDS, offline=True)], input=partial, env=env)
    assert result.returncode != 0
    assert "missing from the CIB" in result.stderr


# -- fencing ---------------------------------------------------------------


def _lab_crm(**overrides) -> tuple[str, tuple[str, ...]]:
    cfg = _config("lab", **overrides)
    return cluster_files(cfg, "lab").crm_script, crm_ids(fence_plan(cfg, "lab"), cfg.pacemaker.vip_avoids_dc)


def test_lab_fences_through_the_heuristic_then_the_qemu_agent(empty_cib, tmp_path, fake_sudo):
    """Fencing on (the lab default): the device loads with the ping targets it
    checks itself, verifies, and a lost node is fenced before its VIP starts
    elsewhere."""
    script, ids = _lab_crm()
    assert FENCE_DEVICE_ID in ids and FENCE_HEURISTICS_ID not in ids
    assert 'ping_targets="192.168.4.11,192.168.4.12,192.168.4.13"' in script
    env = {**fake_sudo, "CIB_file": str(empty_cib)}
    applied = run(["sh", "-c", apply_script(ids, offline=True)], input=script, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    cib = empty_cib.read_text()
    assert 'name="stonith-enabled" value="true"' in cib
    assert "<fencing-level" not in cib  # one device, one agent run per fencing
    verify = run([require_tool("crm_verify"), "-x", str(empty_cib)])
    assert verify.returncode == 0, verify.stdout + verify.stderr

    up = tmp_path / "up.xml"
    out = _simulate(empty_cib, *sum((["--node-up", n] for n in NODES), []), "-S", "-O", str(up))
    active = _started_on(out, VIP_ID)
    out = _simulate(up, "--node-fail", active, "-S")
    transition = out.split("Executing Cluster Transition:", 1)[1].split("Revised Cluster Status:", 1)[0]
    fence_step = re.search(rf"Fencing {re.escape(active)}", transition)
    assert fence_step, f"no fencing of {active} in:\n{transition}"
    assert transition.index(fence_step.group(0)) < transition.index(f"{VIP_ID} "), "the VIP must wait for fencing"
    assert _started_on(out, VIP_ID) != active


def _set_dc(cib: Path, node: str) -> None:
    """Make `node` the DC in a CIB file (crm_simulate keeps whatever dc-uuid the file has)."""
    result = run([require_tool("cibadmin"), "--modify", "--xml-text", f'<cib dc-uuid="{node}"/>'], env={**os.environ, "CIB_file": str(cib)})
    assert result.returncode == 0, result.stdout + result.stderr


def _set_settled(cib: Path, node: str) -> None:
    """Give `node` the settled attribute in a CIB file's status, as hapx-mark-settled does on a node through attrd."""
    xml = (
        f'<node_state id="{node}"><transient_attributes id="{node}"><instance_attributes id="status-{node}">'
        f'<nvpair id="status-{node}-{SETTLED_ATTRIBUTE}" name="{SETTLED_ATTRIBUTE}" value="1"/>'
        "</instance_attributes></transient_attributes></node_state>"
    )
    env = {**os.environ, "CIB_file": str(cib)}
    result = run([require_tool("cibadmin"), "--modify", "--scope", "status", "--xml-text", xml], env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def _transition(output: str) -> str:
    return output.split("Executing Cluster Transition:", 1)[1].split("Revised Cluster Status:", 1)[0]


@pytest.mark.parametrize("avoids_dc", [True, False], ids=["avoids-dc", "turned-off"])
def test_the_vip_holder_is_not_the_dc_so_its_death_costs_no_election(avoids_dc, empty_cib, tmp_path, fake_sudo):
    """hapx:pacemaker.vipAvoidsDc: with both nodes up the VIP goes to the node that is not the DC once that node is
    settled (a member for vipHandoverAfterS), and not before; when that node dies the DC (the survivor) takes the
    VIP after fencing it; when it comes back the VIP stays with the DC until the node is settled again, then is
    handed over (migrate_to/migrate_from, never a stop and a start). Turned off, the VIP stays where it is."""
    script, ids = _lab_crm(pacemaker={"vipAvoidsDc": avoids_dc})
    assert (VIP_AVOIDS_DC_ID in ids) is avoids_dc
    env = {**fake_sudo, "CIB_file": str(empty_cib)}
    applied = run(["sh", "-c", apply_script(ids, offline=True)], input=script, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    verify = run([require_tool("crm_verify"), "-x", str(empty_cib)])
    assert verify.returncode == 0, verify.stdout + verify.stderr
    up, settled, failed = (tmp_path / f"{name}.xml" for name in ("up", "settled", "failed"))
    # The VIP's first placement (no DC in the file yet); that node is then made the DC, as after a failover.
    dc = _started_on(_simulate(empty_cib, *sum((["--node-up", n] for n in NODES), []), "-S", "-O", str(up)), VIP_ID)
    (other,) = [n for n in NODES if n != dc]
    _set_dc(up, dc)
    # Nobody settled yet: nothing moves.
    assert planned_actions(_simulate(up, "-S")) == []
    for node in NODES:
        _set_settled(up, node)
    planned = _simulate(up, "-S", "-O", str(settled))
    holder = _started_on(planned, VIP_ID)
    assert holder == (other if avoids_dc else dc)
    # What the lab harness reads to know the cluster is settled (LabStack.scheduler_idle), on real output.
    assert [a.split()[:2] for a in planned_actions(planned)] == ([["*", "Migrate"]] if avoids_dc else [])
    assert planned_actions(_simulate(settled, "-S")) == []
    if not avoids_dc:
        return
    out = _simulate(settled, "--node-fail", other, "-S", "-O", str(failed))
    assert _started_on(out, VIP_ID) == dc, "the lone DC must still take the VIP (the rule is a preference, not a ban)"
    # Pacemaker drops a node's transient attributes when it leaves (and crm_simulate's fencing did): back, it has none.
    assert f'id="status-{other}-{SETTLED_ATTRIBUTE}"' not in failed.read_text()
    out = _simulate(failed, "--node-up", other, "-S")
    # The scheduler's plan, not the simulated status after it: crm_simulate fakes the probes' results, and some
    # runs fake the VIP's probe on the returning node as "running".
    assert [a for a in planned_actions(out) if VIP_ID in a] == [], "a node that just came back must not take the VIP"
    assert not re.search(rf"{re.escape(VIP_ID)}\s+(migrate_to|stop|start) ", _transition(out)), _transition(out)
    _set_settled(failed, other)  # then settled again (the file keeps it when the node comes up)
    out = _simulate(failed, "--node-up", other, "-S")
    transition = _transition(out)
    assert re.search(rf"{re.escape(VIP_ID)}\s+migrate_to on {dc}", transition), transition
    assert re.search(rf"{re.escape(VIP_ID)}\s+migrate_from on {other}", transition), transition
    assert not re.search(rf"Resource action: +{re.escape(VIP_ID)}\s+start on", transition), transition
    assert [a.split() for a in planned_actions(out) if VIP_ID in a] == [["*", "Migrate", VIP_ID, "(", dc, "->", other, ")"]]


def test_turning_the_dc_rule_off_removes_it(empty_cib, fake_sudo):
    env = {**fake_sudo, "CIB_file": str(empty_cib)}
    for avoids_dc in (True, False):
        script, ids = _lab_crm(pacemaker={"vipAvoidsDc": avoids_dc})
        applied = run(["sh", "-c", apply_script(ids, offline=True)], input=script, env=env)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert (f'id="{VIP_AVOIDS_DC_ID}"' in empty_cib.read_text()) is avoids_dc


def test_turning_fencing_off_removes_the_fence_resources(empty_cib, fake_sudo):
    env = {**fake_sudo, "CIB_file": str(empty_cib)}
    script, ids = _lab_crm()
    assert run(["sh", "-c", apply_script(ids, offline=True)], input=script, env=env).returncode == 0
    script, ids = _lab_crm(fencing={"enabled": False})
    assert FENCE_DEVICE_ID not in ids
    applied = run(["sh", "-c", apply_script(ids, offline=True)], input=script, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    cib = empty_cib.read_text()
    assert "hapx-fence" not in cib and "<fencing-level" not in cib
    assert 'name="stonith-enabled" value="false"' in cib
    verify = run([require_tool("crm_verify"), "-x", str(empty_cib)])
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_virtualbox_fencing_is_fence_vbox_behind_a_ping_heuristic(empty_cib, fake_sudo):
    cfg = _config("dev", fencing={"enabled": True, "hostUser": "vboxadmin", "pingTargets": ["192.168.4.1"]})
    script = cluster_files(cfg, "dev").crm_script
    assert "stonith:fence_vbox params ip=192.168.56.1 username=vboxadmin identity_file=/etc/hapx/fence-vbox-key" in script
    env = {**fake_sudo, "CIB_file": str(empty_cib)}
    applied = run(["sh", "-c", apply_script(crm_ids(fence_plan(cfg, "dev"), cfg.pacemaker.vip_avoids_dc), offline=True)], input=script, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    cib = empty_cib.read_text()
    levels = re.findall(r"<fencing-level [^>]*>", cib)
    assert len(levels) == len(NODES), levels
    for node in NODES:
        assert any(f'target="{node}"' in lvl and f'devices="{FENCE_HEURISTICS_ID},{FENCE_DEVICE_ID}"' in lvl for lvl in levels)
    verify = run([require_tool("crm_verify"), "-x", str(empty_cib)])
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # Turning the heuristic off (no targets) takes its level out again.
    cfg = _config("dev", fencing={"enabled": True, "hostUser": "vboxadmin", "pingTargets": []})
    script = cluster_files(cfg, "dev").crm_script
    applied = run(["sh", "-c", apply_script(crm_ids(fence_plan(cfg, "dev"), cfg.pacemaker.vip_avoids_dc), offline=True)], input=script, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    cib = empty_cib.read_text()
    assert "<fencing-level" not in cib and FENCE_HEURISTICS_ID not in cib
