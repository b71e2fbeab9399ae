"""`pulumi preview` under the real engine: every resource of the design,
under the right parent, and invalid config stopped before anything exists."""

from __future__ import annotations

import copy
import json
import re

import pytest

from harness.paths import stack_config

PROJECT = "hapx"


def preview_steps(workspace, stack: str) -> list[dict]:
    proc = workspace.run("preview", "--json", stack=stack, check=True)
    return json.loads(proc.stdout)["steps"]


def tree(steps: list[dict]) -> dict[str, tuple[str, str]]:
    """name -> (type, parent name) for every resource the preview would create."""
    by_urn = {s["urn"]: s for s in steps}
    out = {}
    for step in steps:
        state = step["newState"]
        parent = state.get("parent", "")
        parent_name = by_urn[parent]["urn"].rsplit("::", 1)[-1] if parent in by_urn else ""
        out[step["urn"].rsplit("::", 1)[-1]] = (state["type"], parent_name)
    return out


def per_node(node: str, vm_network: tuple[str, str]) -> dict[str, tuple[str, str]]:
    return {
        f"hapx-{node}-seed": ("hapx:index:CloudInitSeed", "hapx"),
        f"hapx-{node}-seed-iso": ("command:local:Command", f"hapx-{node}-seed"),
        f"hapx-{node}": ("hapx:index:HapxVm", "hapx"),
        f"hapx-{node}-vm": ("command:local:Command", f"hapx-{node}"),
        f"hapx-{node}-ready": ("command:remote:Command", f"hapx-{node}"),
        f"hapx-{node}-haproxy-cfg": ("command:remote:Command", "hapx"),
        f"hapx-{node}-stats-credentials": ("command:remote:Command", "hapx"),
        f"hapx-{node}-agents": ("command:remote:Command", "hapx"),
        f"hapx-secrets-{node}-ssh-host-key": ("command:local:Command", "hapx-secrets"),
        # The drift check (components/node_state.py), a Python dynamic resource.
        f"hapx-{node}-state": ("pulumi-python:dynamic/hapx:NodeState", "hapx"),
        # The rolling replacement (components/node_drain.py): drained before a new VM, back in service after.
        f"hapx-{node}-drain": ("pulumi-python:dynamic/hapx:NodeDrain", "hapx"),
        f"hapx-{node}-rejoin": ("command:remote:Command", "hapx"),
    }


COMMON = {
    f"{PROJECT}-{{stack}}": ("pulumi:pulumi:Stack", ""),
    "hapx": ("hapx:index:HaproxyCluster", f"{PROJECT}-{{stack}}"),
    "hapx-secrets": ("hapx:index:StackSecrets", "hapx"),
    "hapx-secrets-admin-ssh-key": ("command:local:Command", "hapx-secrets"),
    "hapx-secrets-stats-password": ("command:local:Command", "hapx-secrets"),
    "hapx-secrets-corosync-authkey": ("command:local:Command", "hapx-secrets"),
    "hapx-network": None,  # per hypervisor, below
    # corosync.conf carried to the running nodes (components/cluster_membership.py): scale without replacing VMs.
    "hapx-membership": ("pulumi-python:dynamic/hapx:ClusterMembership", "hapx"),
    "hapx-pacemaker": ("hapx:index:PacemakerResourceSet", "hapx"),
    "hapx-pacemaker-cluster-formed": ("command:remote:Command", "hapx-pacemaker"),
    "hapx-pacemaker-apply": ("command:remote:Command", "hapx-pacemaker"),
    "hapx-pacemaker-vip-placed": ("command:remote:Command", "hapx-pacemaker"),
}

NETWORKS = {
    "dev": {
        "hapx-network": ("hapx:index:VirtualBoxNetwork", "hapx"),
        "hapx-network-host-only": ("command:local:Command", "hapx-network"),
    },
    "lab": {
        "hapx-network": ("hapx:index:QemuLabNetwork", "hapx"),
        "hapx-network-segment": ("command:local:Command", "hapx-network"),
        "hapx-network-backends": ("command:local:Command", "hapx-network"),
        # Fencing is on in the lab: a generated password, the host's copy of
        # it, and each node's copy.
        "hapx-secrets-fence-password": ("command:local:Command", "hapx-secrets"),
        "hapx-fence-host": ("hapx:index:QemuFenceHost", "hapx"),
        "hapx-fence-host-secret": ("command:local:Command", "hapx-fence-host"),
        "hapx-hapx-node01-fence-credential": ("command:remote:Command", "hapx"),
        "hapx-hapx-node02-fence-credential": ("command:remote:Command", "hapx"),
        # The web service terminates TLS: a per-stack CA, its certificate, a copy on each node.
        "hapx-secrets-tls-ca": ("command:local:Command", "hapx-secrets"),
        "hapx-secrets-web-tls-certificate": ("command:local:Command", "hapx-secrets"),
        "hapx-hapx-node01-web-tls": ("command:remote:Command", "hapx"),
        "hapx-hapx-node02-web-tls": ("command:remote:Command", "hapx"),
        # A booted VM back to the host's normal priority (the lab's VMs boot niced).
        "hapx-hapx-node01-settled": ("command:local:Command", "hapx-hapx-node01"),
        "hapx-hapx-node02-settled": ("command:local:Command", "hapx-hapx-node02"),
    },
}


def expected_tree(stack: str) -> dict[str, tuple[str, str]]:
    expected = {k.format(stack=stack): tuple(x.format(stack=stack) for x in v) for k, v in COMMON.items() if v}
    expected.update(NETWORKS[stack])
    for node in ("hapx-node01", "hapx-node02"):
        expected.update(per_node(node, NETWORKS[stack]["hapx-network"]))
    return expected


@pytest.mark.parametrize("stack", ["dev", "lab"])
def test_preview_lists_every_resource_with_its_parent(workspace, stack):
    name = f"preview-{stack}"
    workspace.init_stack(name, stack_config(stack))
    steps = preview_steps(workspace, name)
    assert {s["op"] for s in steps} == {"create"}
    assert tree(steps) == _rename_stack(expected_tree(stack), stack, name)


def _rename_stack(expected: dict, stack: str, name: str) -> dict:
    """The stack resource is named after the stack the test created."""
    renamed = {}
    for key, (typ, parent) in expected.items():
        key = f"{PROJECT}-{name}" if key == f"{PROJECT}-{stack}" else key
        parent = f"{PROJECT}-{name}" if parent == f"{PROJECT}-{stack}" else parent
        renamed[key] = (typ, parent)
    return renamed


def test_preview_orders_network_seed_vm_cluster_crm(workspace):
    """The engine sees the design's order: network -> seed -> VM -> ready ->
    cluster formed -> crm applied -> VIP placed (transitively, per node)."""
    workspace.init_stack("order", stack_config("lab"))
    steps = preview_steps(workspace, "order")
    deps = {s["urn"].rsplit("::", 1)[-1]: {d.rsplit("::", 1)[-1] for d in s["newState"].get("dependencies", [])} for s in steps}

    def reaches(src: str, dst: str) -> bool:
        seen, todo = set(), [src]
        while todo:
            cur = todo.pop()
            if cur == dst:
                return True
            if cur not in seen:
                seen.add(cur)
                todo.extend(deps.get(cur, ()))
        return False

    for node in ("hapx-node01", "hapx-node02"):
        assert reaches(f"hapx-{node}-vm", "hapx-network-segment")
        assert reaches(f"hapx-{node}-vm", f"hapx-{node}-seed-iso")
        assert reaches(f"hapx-{node}-ready", f"hapx-{node}-vm")
        assert reaches("hapx-pacemaker-cluster-formed", f"hapx-{node}-ready")
        assert reaches("hapx-pacemaker-cluster-formed", f"hapx-{node}-haproxy-cfg")
        assert reaches(f"hapx-{node}-vm", f"hapx-{node}-drain")
        assert reaches(f"hapx-{node}-rejoin", f"hapx-{node}-haproxy-cfg")
        assert reaches("hapx-pacemaker-cluster-formed", f"hapx-{node}-rejoin")
    assert reaches("hapx-pacemaker-apply", "hapx-pacemaker-cluster-formed")
    assert reaches("hapx-pacemaker-vip-placed", "hapx-pacemaker-apply")
    # Rolling (the default): the second node is drained, so replaced, only after the first is back in service,
    # and the preview lists the steps in that order.
    assert reaches("hapx-hapx-node02-drain", "hapx-hapx-node01-rejoin")
    assert not reaches("hapx-hapx-node01-drain", "hapx-hapx-node02-vm")
    order = [s["urn"].rsplit("::", 1)[-1] for s in steps]
    assert order.index("hapx-hapx-node01-rejoin") < order.index("hapx-hapx-node02-drain") < order.index("hapx-hapx-node02-vm")
    # The drift check reads each node once the resource set is placed.
    for node in ("hapx-node01", "hapx-node02"):
        assert reaches(f"hapx-{node}-state", "hapx-pacemaker-vip-placed")
    # And nothing backwards: the VMs do not wait for the cluster, nor for the drift check.
    assert not reaches("hapx-hapx-node01-vm", "hapx-pacemaker-apply")
    assert not any(reaches(name, "hapx-hapx-node01-state") for name in deps if name != "hapx-hapx-node01-state")


SERVICE = {"name": "web", "mode": "http", "ports": [443], "backends": [{"name": "w1", "address": "192.168.4.11", "port": 80}]}


@pytest.mark.parametrize(
    "mutate, key, fix",
    [
        (lambda c: c.update({"hapx:vip": "192.168.5.20"}), "hapx:vip", "inside"),
        (lambda c: c["hapx:nodes"].pop(), "hapx:nodes", "at least two"),
        (lambda c: c.update({"hapx:backends": []}), "hapx:backends", "Fix:"),
        (lambda c: c.update({"hapx:colour": "blue"}), "hapx:colour", "Fix:"),
        (lambda c: c.update({"hapx:services": [SERVICE, {**SERVICE, "name": "api"}]}), "hapx:services[1].ports[0]", "another port"),
        (lambda c: c.update({"hapx:services": [{**SERVICE, "mode": "tcp", "check": {"type": "http"}}]}), "hapx:services[0].check.type",
         "set mode: http"),
        (lambda c: c.update({"hapx:services": [SERVICE]}) or c.pop("hapx:backends"), "hapx:haproxy.frontendPort",
         "hapx:services[].ports"),
    ],
    ids=["vip-outside-subnet", "one-node", "no-backends", "unknown-key", "service-port-twice", "http-check-on-tcp", "frontend-port-alone"],
)
def test_invalid_config_fails_preview_and_creates_nothing(workspace, mutate, key, fix):
    config = copy.deepcopy(stack_config("dev"))
    mutate(config)
    name = "bad-" + re.sub(r"[^A-Za-z0-9.-]", "-", key.split(":")[1])
    workspace.init_stack(name, config)
    proc = workspace.run("preview", stack=name)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid stack config" in output and key in output and fix in output, output[-2000:]
    # No traceback: the operator sees the message, not Python internals.
    assert "Traceback" not in output
    up = workspace.run("up", "--yes", "--skip-preview", stack=name)
    assert up.returncode != 0
    # The engine records its root Stack resource for any run; nothing else.
    resources = workspace.export(name)["deployment"].get("resources") or []
    assert [r["type"] for r in resources if r["type"] != "pulumi:pulumi:Stack"] == []


def test_plain_text_secret_in_config_is_refused(workspace):
    config = copy.deepcopy(stack_config("dev"))
    config["hapx:statsPassword"] = "plain-text-password"
    workspace.init_stack("plain-secret", config)
    proc = workspace.run("preview", stack="plain-secret")
    assert proc.returncode != 0
    assert "hapx:statsPassword" in proc.stdout + proc.stderr and "--secret" in proc.stdout + proc.stderr


def test_dev_with_a_base_image_previews_the_base_vm_before_the_nodes(workspace, tmp_path):
    """hapx:virtualbox.baseImage: the preview shows the base VM hapx makes,
    and every node's VM waits for it."""
    image = tmp_path / "base.vdi"
    image.write_bytes(b"<<< VirtualBox Disk Image >>>")
    config = copy.deepcopy(stack_config("dev"))
    config["hapx:virtualbox"] = {**config["hapx:virtualbox"], "baseImage": str(image), "baseVm": "hapx-dev-base"}
    workspace.init_stack("dev-image", config)
    steps = preview_steps(workspace, "dev-image")
    resources = tree(steps)
    assert resources["hapx-base-vm"] == ("hapx:index:VirtualBoxBaseVm", "hapx")
    assert resources["hapx-base-vm-vm"] == ("command:local:Command", "hapx-base-vm")
    names = [s["urn"].rsplit("::", 1)[-1] for s in steps]
    deps = {s["urn"].rsplit("::", 1)[-1]: {d.rsplit("::", 1)[-1] for d in s["newState"].get("dependencies", [])} for s in steps}
    for node in ("hapx-node01", "hapx-node02"):
        assert names.index("hapx-base-vm-vm") < names.index(f"hapx-{node}-vm")
        assert "hapx-base-vm-vm" in deps[f"hapx-{node}-vm"]
    # A missing image stops the preview with the key and the fix.
    image.unlink()
    proc = workspace.run("preview", stack="dev-image")
    assert proc.returncode != 0 and "hapx:virtualbox.baseImage" in proc.stdout + proc.stderr and "make image" in proc.stdout + proc.stderr
