"""The rolling replacement's scripts (templates/roll/) with the real Pacemaker tools against a CIB file: the lab's
crm script applied, both nodes up. Each `sleep` in a script lets the cluster act on what the script did
(crm_simulate runs the transition the scheduler computes), so the drain and the rejoin wait for what a live
cluster would do. Also: the scheduler hands the VIP over (migrate_to, migrate_from, then stop) when its holder
is put in standby, rather than stopping it first."""

from __future__ import annotations

import os
import re

import pytest

from components.config import parse_config
from components.node_drain import drain_script
from components.pacemaker_resource_set import apply_script
from components.rendering import HAPROXY_CLONE_ID, SETTLED_ATTRIBUTE, VIP_AVOIDS_DC_ID, VIP_ID, crm_ids, render_template
from harness.paths import stack_config
from tests.conftest import cluster_files, fence_plan

from .conftest import require_tool, run, stand_in_path

NODE = "hapx-node01"
OTHER = "hapx-node02"


@pytest.fixture
def cluster(tmp_path) -> dict:
    """This host as the lab's first node: `sudo` that runs its command, `systemctl` that records what it is told,
    `sleep` that lets the cluster run its next transition, the lab's crm script applied to a CIB file, both nodes up
    and the resources started (the VIP on the first node)."""
    cfg = parse_config(stack_config("lab"))
    crm, ids = cluster_files(cfg, "lab").crm_script, crm_ids(fence_plan(cfg, "lab"), cfg.pacemaker.vip_avoids_dc)
    cib = tmp_path / "cib.xml"
    transitions = tmp_path / "transitions.log"
    units = tmp_path / "systemctl.log"
    simulate = require_tool("crm_simulate")
    bin_dir = tmp_path / "bin"
    fakes = {
        "sudo": 'exec "$@"',
        "systemctl": f'echo "$*" >> {units}\n[ "$1" != is-active ] || [ ! -e {tmp_path}/pacemaker-stopped ]',
        "sleep": f'{simulate} -x {cib} -S -O {cib} >> {transitions} 2>&1',
        # corosync's view of the votes, as the test writes it (none: corosync does not answer).
        "corosync-quorumtool": f'cat {tmp_path}/quorum 2>/dev/null',
    }
    path = stand_in_path(bin_dir, fakes)
    cib.write_text(run([require_tool("cibadmin"), "--empty"]).stdout)
    env = {**os.environ, "PATH": path, "CIB_file": str(cib)}
    applied = run(["sh", "-c", apply_script(ids, offline=True)], input=crm, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    up = run([simulate, "-x", str(cib), "--node-up", NODE, "--node-up", OTHER, "--quorum", "true", "-S", "-O", str(cib)])
    assert up.returncode == 0, up.stdout + up.stderr
    state = {"env": env, "cib": cib, "transitions": transitions, "units": units, "tmp": tmp_path}
    assert vip_on(state) == NODE, "the fixture expects the VIP on the first node"
    return state


def sh(cluster: dict, script: str) -> "subprocess.CompletedProcess":  # noqa: F821
    return run(["sh", "-c", script], env=cluster["env"])


def vip_on(cluster: dict) -> str:
    out = sh(cluster, f"crm_resource --resource {VIP_ID} --locate").stdout
    return ",".join(re.findall(r"is running on: (\S+)", out))


def haproxy_on(cluster: dict) -> set[str]:
    return set(re.findall(r"is running on: (\S+)", sh(cluster, f"crm_resource --resource {HAPROXY_CLONE_ID} --locate").stdout))


def rejoin_script(timeout_s: int) -> str:
    return render_template(
        "roll/rejoin.sh.j2",
        node=NODE,
        haproxy_clone_id=HAPROXY_CLONE_ID,
        vip_id=VIP_ID,
        vip_avoids_dc_id=VIP_AVOIDS_DC_ID,
        settled_attribute=SETTLED_ATTRIBUTE,
        timeout_s=timeout_s,
    )


def settle(cluster: dict, node: str) -> None:
    """What hapx-mark-settled does on a node (through attrd, which writes the node's status in the CIB)."""
    xml = (
        f'<node_state id="{node}"><transient_attributes id="{node}"><instance_attributes id="status-{node}">'
        f'<nvpair id="status-{node}-{SETTLED_ATTRIBUTE}" name="{SETTLED_ATTRIBUTE}" value="1"/>'
        "</instance_attributes></transient_attributes></node_state>"
    )
    assert sh(cluster, f"cibadmin --modify --scope status --xml-text '{xml}'").returncode == 0


def standby(cluster: dict, node: str) -> str:
    return sh(cluster, f"crm_attribute --node {node} --name standby --query --quiet").stdout.strip()


def test_the_drain_hands_the_vip_over_then_stops_the_cluster_stack(cluster):
    result = sh(cluster, drain_script(NODE, require_peer=True))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(f"drained {NODE}")
    assert vip_on(cluster) == OTHER and haproxy_on(cluster) == {OTHER}
    assert standby(cluster, NODE) == "on"
    transitions = cluster["transitions"].read_text()
    # A handover, not stop-then-start: the target holds the address before the source lets it go.
    actions = re.findall(rf"Resource action: +{VIP_ID} +(\S+) on (\S+)", transitions)
    assert actions[:3] == [("migrate_to", NODE), ("migrate_from", OTHER), ("stop", NODE)], transitions
    assert ("start", OTHER) not in actions, transitions
    units = cluster["units"].read_text().splitlines()
    assert units[-2:] == ["stop pacemaker", "stop corosync"], units


def test_rolling_drain_refuses_when_no_other_node_is_in_service(cluster):
    sh(cluster, f"crm_attribute --node {OTHER} --name standby --update on")
    result = sh(cluster, drain_script(NODE, require_peer=True))
    assert result.returncode == 1
    assert f"no other node is online and in service to take over from {NODE}" in result.stderr
    assert "hapx:rollout to all-at-once" in result.stderr
    assert standby(cluster, NODE) != "on", "a refused drain changes nothing"
    assert "stop" not in cluster["units"].read_text()


QUORUM = "Quorum information\n------------------\nExpected votes:   {expected}\nTotal votes:      {votes}\nQuorum:           {needed}  \nFlags:            Quorate\n"


def test_rolling_drain_refuses_when_the_others_would_lose_quorum(cluster):
    # Three nodes in corosync's nodelist, the third not joined yet: without this node the other holds 1 of 2 votes.
    (cluster["tmp"] / "quorum").write_text(QUORUM.format(expected=3, votes=2, needed=2))
    result = sh(cluster, drain_script(NODE, require_peer=True))
    assert result.returncode == 1
    assert f"without {NODE} the cluster would hold 1 of the 2 votes it needs for quorum" in result.stderr
    assert standby(cluster, NODE) != "on", "a refused drain changes nothing"
    assert "stop" not in cluster["units"].read_text()


def test_rolling_drain_goes_ahead_when_the_others_keep_quorum(cluster):
    (cluster["tmp"] / "quorum").write_text(QUORUM.format(expected=3, votes=3, needed=2))
    result = sh(cluster, drain_script(NODE, require_peer=True))
    assert result.returncode == 0, result.stdout + result.stderr
    assert vip_on(cluster) == OTHER


def test_all_at_once_drain_goes_ahead_without_a_peer(cluster):
    sh(cluster, f"crm_attribute --node {OTHER} --name standby --update on")
    result = sh(cluster, drain_script(NODE, require_peer=False))
    assert result.returncode == 0, result.stdout + result.stderr
    assert vip_on(cluster) == "" and haproxy_on(cluster) == set()


def test_a_node_without_pacemaker_has_nothing_to_drain(cluster):
    (cluster["tmp"] / "pacemaker-stopped").touch()
    result = sh(cluster, drain_script(NODE, require_peer=True))
    assert result.returncode == 0, result.stderr
    assert "nothing to move" in result.stdout
    assert vip_on(cluster) == NODE, "the CIB was not touched"


def test_the_rejoin_brings_a_drained_node_back_and_waits_for_its_haproxy_and_the_handover(cluster):
    assert sh(cluster, drain_script(NODE, require_peer=True)).returncode == 0
    assert vip_on(cluster) == OTHER
    # The other node is the DC now (the drained one left), and the rejoined node gets settled: the VIP's rule
    # against the DC hands the VIP back to it, and the rejoin returns only once that is done.
    assert sh(cluster, f"cibadmin --modify --xml-text '<cib dc-uuid=\"{OTHER}\"/>'").returncode == 0
    settle(cluster, NODE)
    result = sh(cluster, rejoin_script(60))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{NODE} online" in result.stdout and f"{NODE} serves haproxy" in result.stdout
    assert f"{NODE} settled; the VIP is on {NODE}, off the DC" in result.stdout
    assert standby(cluster, NODE) != "on"
    assert haproxy_on(cluster) == {NODE, OTHER}
    assert vip_on(cluster) == NODE
    actions = re.findall(rf"Resource action: +{VIP_ID} +(\S+) on (\S+)", cluster["transitions"].read_text())
    assert ("migrate_from", NODE) in actions, actions  # a handover, as at any planned move


def test_the_rejoin_waits_for_the_node_to_be_settled(cluster):
    assert sh(cluster, drain_script(NODE, require_peer=True)).returncode == 0
    assert sh(cluster, f"cibadmin --modify --xml-text '<cib dc-uuid=\"{OTHER}\"/>'").returncode == 0
    result = sh(cluster, rejoin_script(5))  # never settled: the rejoin fails in time and says why
    assert result.returncode == 1
    assert f"{NODE} is not settled, or the VIP not handed over off the DC, within 5s" in result.stderr
    assert vip_on(cluster) == OTHER


def test_the_rejoin_of_a_first_build_waits_for_no_haproxy(cluster):
    for scope in ("constraints", "resources"):  # a cluster before hapx's resource set is applied
        assert sh(cluster, f"cibadmin --replace --scope {scope} --xml-text '<{scope}/>'").returncode == 0
    result = sh(cluster, rejoin_script(30))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "serves haproxy" not in result.stdout


def test_the_rejoin_gives_up_in_time_when_haproxy_never_runs(cluster):
    assert sh(cluster, drain_script(NODE, require_peer=True)).returncode == 0
    # haproxy may not run on the node at all: the rejoin must fail, naming it, within its bound.
    sh(cluster, f"crm_resource --resource {HAPROXY_CLONE_ID} --ban --node {NODE}")
    result = sh(cluster, rejoin_script(5))
    assert result.returncode == 1
    assert f"haproxy is not running on {NODE} within 5s" in result.stderr
