"""The drift check under the real engine: hapx's launcher starts the dynamic provider in the project's virtualenv,
the provider (pickled by reference) reads a node on refresh and restores it on up, the private key stays encrypted
in state, and nothing is replaced.

The node is this host, behind a stand-in for ssh (tests/fixtures/fake_node_ssh.py): the real scripts run here, in
a mount namespace where a directory of the test's is /etc/haproxy, with the real Pacemaker tools on a CIB file (two
nodes up, resources as the lab has them but with ocf:pacemaker:Dummy agents). Needs root (the mount namespace)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from components.rendering import COLOCATION_ID, CRM_IDS, HAPROXY_CLONE_ID, HAPROXY_ID, ORDER_ID, VIP_ID
from harness.paths import REPO
from harness.workspace import PulumiWorkspace

NODE, OTHER = "hapx-node01", "hapx-node02"
STACK = "drift"
URN_NAME = "node01-state"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZS1kcmlmdC1jaGVjay1rZXktbm90LXJlYWwtMDEyMzQ1Njc4OQ==\n-----END OPENSSH PRIVATE KEY-----\n"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKeyForTheDriftCheckEngineTest00 hapx-node01"
HAPROXY_CFG = """global
  daemon
defaults
  mode tcp
  timeout connect 1s
  timeout client 5s
  timeout server 5s
listen stats
  bind 127.0.0.1:32799
  mode http
  stats enable
"""
CRM = f"""property cib-bootstrap-options: cluster-name=drift stonith-enabled=false no-quorum-policy=stop
rsc_defaults rsc-options: resource-stickiness=100 migration-threshold=3 failure-timeout=60s
primitive {VIP_ID} ocf:pacemaker:Dummy op monitor interval=10s timeout=20s
primitive {HAPROXY_ID} ocf:pacemaker:Dummy op monitor interval=10s timeout=20s
clone {HAPROXY_CLONE_ID} {HAPROXY_ID} meta clone-max=2 clone-node-max=1 interleave=true
colocation {COLOCATION_ID} inf: {VIP_ID} {HAPROXY_CLONE_ID}
order {ORDER_ID} Optional: {HAPROXY_CLONE_ID} {VIP_ID}
"""
PROGRAM = f"""
import pulumi
from pulumi_command import remote
from components.node_state import NodeState, NodeStateArgs

config = pulumi.Config("drift")
NodeState(
    {URN_NAME!r},
    NodeStateArgs(
        node={NODE!r},
        connection=remote.ConnectionArgs(
            host="127.0.0.1", port=22, user="root", private_key=config.require_secret("privateKey"), host_key={HOST_KEY!r}
        ),
        instance_id="vm-1",
        haproxy_cfg=config.require("haproxyCfg"),
        crm_script=config.require("crmScript"),
        crm_ids={list(CRM_IDS)!r},
    ),
)
"""
TOOLS = {
    "sudo": 'exec "$@"',
    "hostname": f"echo {NODE}",
    # haproxy is not running on this stand-in: a new haproxy.cfg is installed, not reloaded.
    "systemctl": 'case "$*" in *haproxy*) exit 3 ;; *) exit 0 ;; esac',
    "crm_node": 'case "$*" in *--quorum*) echo 1 ;; *) exit 1 ;; esac',
}


def _tool(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Path:
    if os.geteuid() != 0:
        pytest.fail("this test runs the node's scripts in a mount namespace: it needs root", pytrace=False)
    for tool in ("unshare", "cibadmin", "crm", "crm_simulate", "haproxy"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; run `make setup`", pytrace=False)
    node_dir = tmp_path_factory.mktemp("node")
    (node_dir / "bin").mkdir()
    for name, body in TOOLS.items():
        _tool(node_dir / "bin" / name, body)
    etc = node_dir / "etc-haproxy"
    etc.mkdir()
    (etc / "haproxy.cfg").write_text("# before hapx\n")
    (etc / "hapx-stats.env").write_text("HAPX_STATS_USER=stats\nHAPX_STATS_PASSWORD=not-a-secret\n")
    cib = node_dir / "cib.xml"
    cib.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True).stdout)
    env = {**os.environ, "CIB_file": str(cib)}
    subprocess.run(["crm", "-F", "configure", "load", "update", "-"], input=CRM, text=True, env=env, check=True, capture_output=True)
    subprocess.run(["crm_simulate", "-x", str(cib), "--node-up", NODE, "--node-up", OTHER, "--quorum", "true", "-S", "-O", str(cib)],
                   check=True, capture_output=True)  # fmt: skip
    (node_dir / "expected-key").write_text(KEY)
    (node_dir / "known-host").write_text(f"hapx-node {HOST_KEY}\n")
    return node_dir


@pytest.fixture(scope="module")
def drift_stack(node, tmp_path_factory) -> PulumiWorkspace:
    workspace = PulumiWorkspace(tmp_path_factory.mktemp("pulumi-drift"))
    project = workspace.root
    (project / "Pulumi.yaml").write_text(
        f"name: hapx-drift-check\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: {REPO / '.venv'}\n"
    )
    (project / "__main__.py").write_text(PROGRAM)
    bin_dir = project / "ssh-bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(f"#!/bin/sh\nexec {sys.executable} {REPO / 'tests' / 'fixtures' / 'fake_node_ssh.py'} \"$@\"\n")
    ssh.chmod(ssh.stat().st_mode | stat.S_IEXEC)
    workspace.env.update(
        PATH=f"{bin_dir}:{workspace.env['PATH']}",
        PYTHONPATH=str(REPO),  # the program and its provider import components/
        FAKE_NODE_DIR=str(node),
    )
    workspace.run("stack", "init", STACK, check=True, cwd=project)
    workspace.write_config(STACK, {"drift:haproxyCfg": HAPROXY_CFG, "drift:crmScript": CRM})
    # On stdin: the key starts with dashes, and must not be on a command line anyway.
    subprocess.run(
        ["pulumi", "config", "set", "--secret", "--raw", "drift:privateKey", "--non-interactive",
         "--stack", STACK, "--config-file", str(workspace.config_file(STACK))],
        input=KEY, text=True, cwd=project, env=workspace.env, check=True, capture_output=True,
    )  # fmt: skip
    return workspace


def pulumi(workspace: PulumiWorkspace, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return workspace.run(*args, stack=STACK, check=check, cwd=workspace.root)


def calls(node: Path) -> int:
    log = node / "calls.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def export(workspace: PulumiWorkspace, show_secrets: bool = False) -> str:
    args = ["stack", "export", "--stack", STACK] + (["--show-secrets"] if show_secrets else [])
    return workspace.run(*args, check=True, cwd=workspace.root).stdout


def node_state(workspace: PulumiWorkspace) -> dict:
    resources = json.loads(export(workspace, show_secrets=True))["deployment"]["resources"]
    (found,) = [r for r in resources if r["urn"].endswith(f"::{URN_NAME}")]
    return found


def refresh_event(workspace: PulumiWorkspace) -> dict:
    """`pulumi refresh --json`: the engine's event for the NodeState once refreshed (op, old and new state)."""
    output = pulumi(workspace, "refresh", "--yes", "--skip-preview", "--json").stdout
    assert KEY.splitlines()[1] not in output
    lines = output.splitlines()
    events = [json.loads(line) for line in lines]
    (done,) = [
        e["resOutputsEvent"]["metadata"]
        for e in events
        if "resOutputsEvent" in e and e["resOutputsEvent"]["metadata"]["urn"].endswith(f"::{URN_NAME}")
    ]
    return done


def cib_has(node: Path, xpath: str) -> bool:
    env = {**os.environ, "CIB_file": str(node / "cib.xml")}
    return subprocess.run(["cibadmin", "--query", "--xpath", xpath], env=env, capture_output=True).returncode == 0


def test_up_pushes_nothing_needless_and_keeps_the_key_encrypted(drift_stack, node):
    up = pulumi(drift_stack, "up", "--yes", "--skip-preview")
    state = node_state(drift_stack)
    assert state["type"] == "pulumi-python:dynamic/hapx:NodeState"
    # The stand-in had another haproxy.cfg: the create put the declared one there.
    assert (node / "etc-haproxy" / "haproxy.cfg").read_text() == HAPROXY_CFG
    outputs = state["outputs"]
    assert outputs["pacemakerDrift"] == {} and COLOCATION_ID in outputs["pacemakerApplied"]
    key_line = KEY.splitlines()[1]
    encrypted = export(drift_stack)
    state_files = "".join(p.read_text() for p in (drift_stack.root / "state").rglob("*.json"))
    for where, text in (("stack export", encrypted), ("state file", state_files), ("up output", up.stdout + up.stderr)):
        assert key_line not in text, f"the private key appears in plain text in the {where}"
    assert key_line in json.dumps(outputs["connection"])  # it is there, decrypted: what read uses


def test_refresh_of_an_undrifted_node_changes_nothing_in_one_round_trip(drift_stack, node):
    before = calls(node)
    pulumi(drift_stack, "refresh", "--yes", "--skip-preview", "--expect-no-changes")
    assert calls(node) == before + 1
    # And the next up has nothing to do (declared and observed compare equal, number types and all).
    pulumi(drift_stack, "up", "--yes", "--skip-preview", "--expect-no-changes")
    assert calls(node) == before + 1


def test_hand_edits_show_in_refresh_and_up_restores_them(drift_stack, node):
    applied = node_state(drift_stack)["outputs"]["pacemakerApplied"]
    env = {**os.environ, "CIB_file": str(node / "cib.xml")}
    subprocess.run(["cibadmin", "--delete", "--xpath", f"//*[@id='{COLOCATION_ID}']"], env=env, check=True)
    subprocess.run(["crm_attribute", "--node", NODE, "--name", "standby", "--update", "on"], env=env, check=True)
    with (node / "etc-haproxy" / "haproxy.cfg").open("a") as f:
        f.write("# edited by hand\n")

    done = refresh_event(drift_stack)
    assert done["op"] == "update"
    old, new = done["old"]["outputs"], done["new"]["outputs"]
    assert (old["pacemakerNode"]["standby"], new["pacemakerNode"]["standby"]) == (False, True)
    assert (old["pacemakerDrift"], new["pacemakerDrift"]) == ({}, {COLOCATION_ID: "absent"})
    assert old["haproxyCfgSha256"] != new["haproxyCfgSha256"]
    # Until an up restores the node, every refresh says it differs from what the program declares.
    assert pulumi(drift_stack, "refresh", "--yes", "--skip-preview", "--expect-no-changes", check=False).returncode != 0
    state = node_state(drift_stack)["outputs"]
    assert state["pacemakerNode"] == {"online": True, "standby": True, "maintenance": False}
    assert state["pacemakerDrift"] == {COLOCATION_ID: "absent"}
    edited = (node / "etc-haproxy" / "haproxy.cfg").read_bytes()
    assert state["haproxyCfgSha256"] == hashlib.sha256(edited).hexdigest()

    preview = json.loads(pulumi(drift_stack, "preview", "--json").stdout)
    ops = {s["urn"].rsplit("::", 1)[-1]: s["op"] for s in preview["steps"]}
    assert ops[URN_NAME] == "update", ops

    pulumi(drift_stack, "up", "--yes", "--skip-preview")
    assert (node / "etc-haproxy" / "haproxy.cfg").read_text() == HAPROXY_CFG
    assert cib_has(node, f"//rsc_colocation[@id='{COLOCATION_ID}']")
    assert not cib_has(node, f"//node[@uname='{NODE}']//nvpair[@name='standby']")
    assert node_state(drift_stack)["outputs"]["pacemakerApplied"] == applied
    pulumi(drift_stack, "refresh", "--yes", "--skip-preview", "--expect-no-changes")


def test_refresh_json_names_what_drifted(drift_stack, node):
    env = {**os.environ, "CIB_file": str(node / "cib.xml")}
    subprocess.run(["crm_attribute", "--type", "crm_config", "--name", "maintenance-mode", "--update", "true"], env=env, check=True)
    done = refresh_event(drift_stack)
    assert done["op"] == "update"
    assert done["old"]["outputs"]["pacemakerDrift"] == {}
    assert done["new"]["outputs"]["pacemakerDrift"] == {"property:maintenance-mode": "true"}
    pulumi(drift_stack, "up", "--yes", "--skip-preview")
    assert not cib_has(node, "//nvpair[@name='maintenance-mode']")
    pulumi(drift_stack, "refresh", "--yes", "--skip-preview", "--expect-no-changes")


def test_destroy_does_not_touch_the_node(drift_stack, node):
    before = calls(node)
    pulumi(drift_stack, "destroy", "--yes", "--skip-preview")
    assert calls(node) == before
    assert (node / "etc-haproxy" / "haproxy.cfg").read_text() == HAPROXY_CFG
