"""Component tree under Pulumi mocks: parents, dependency order, secrets, outputs.

Mocks are for speed; tests/engine runs the same program under the real engine.
"""

from __future__ import annotations

import pulumi
import pytest

from tests.unit.pulumi_mocks import MOCKS, depends, parent_name, unsecret

from components.config import parse_config  # noqa: E402  (after set_mocks, by design)
from components.haproxy_cluster import HaproxyCluster, HaproxyClusterArgs  # noqa: E402


@pytest.fixture(scope="module")
def cluster(request):
    from harness.paths import stack_config

    MOCKS.resources.clear()
    cfg = parse_config(stack_config("dev"))
    return HaproxyCluster("hapx", HaproxyClusterArgs(config=cfg, stack="test"))


def _all_registered(cluster) -> pulumi.Output:
    """An Output that resolves once the last resources of the tree exist."""
    return pulumi.Output.all(
        cluster.pacemaker.vip_node_at_apply,
        *[vm.ready.stdout for vm in cluster.node_vms],
        cluster.nodes,
    )


@pulumi.runtime.test
def test_every_component_and_child_exists(cluster):
    def check(_):
        names = set(MOCKS.resources)
        expected = {
            "hapx-secrets",
            "hapx-secrets-admin-ssh-key",
            "hapx-secrets-hapx-node01-ssh-host-key",
            "hapx-secrets-hapx-node02-ssh-host-key",
            "hapx-secrets-stats-password",
            "hapx-secrets-corosync-authkey",
            "hapx-network",
            "hapx-network-host-only",
            "hapx-pacemaker",
            "hapx-pacemaker-cluster-formed",
            "hapx-pacemaker-apply",
            "hapx-pacemaker-vip-placed",
        }
        for node in ("hapx-node01", "hapx-node02"):
            expected |= {
                f"hapx-{node}-seed",
                f"hapx-{node}-seed-iso",
                f"hapx-{node}",
                f"hapx-{node}-vm",
                f"hapx-{node}-ready",
                f"hapx-{node}-haproxy-cfg",
                f"hapx-{node}-stats-credentials",
                f"hapx-{node}-agents",
            }
        missing = expected - names
        assert not missing, f"not registered: {sorted(missing)}"
        types = {n: r.type for n, r in MOCKS.resources.items()}
        assert types["hapx-network"] == "hapx:index:VirtualBoxNetwork"
        assert types["hapx-hapx-node01-seed"] == "hapx:index:CloudInitSeed"
        assert types["hapx-hapx-node01"] == "hapx:index:HapxVm"
        assert types["hapx-pacemaker"] == "hapx:index:PacemakerResourceSet"
        assert types["hapx-secrets"] == "hapx:index:StackSecrets"
        assert types["hapx-hapx-node01-vm"] == "command:local:Command"
        assert types["hapx-hapx-node01-ready"] == "command:remote:Command"

    return _all_registered(cluster).apply(check)


@pulumi.runtime.test
def test_children_are_parented_to_their_component(cluster):
    def check(_):
        parents = {n: parent_name(r) for n, r in MOCKS.resources.items()}
        assert parents["hapx-network-host-only"] == "hapx-network"
        assert parents["hapx-hapx-node01-seed-iso"] == "hapx-hapx-node01-seed"
        assert parents["hapx-hapx-node01-vm"] == "hapx-hapx-node01"
        assert parents["hapx-hapx-node01-ready"] == "hapx-hapx-node01"
        assert parents["hapx-pacemaker-apply"] == "hapx-pacemaker"
        assert parents["hapx-secrets-admin-ssh-key"] == "hapx-secrets"
        for component in ("hapx-network", "hapx-secrets", "hapx-pacemaker", "hapx-hapx-node01", "hapx-hapx-node01-seed"):
            assert parents[component] == "hapx", f"{component} is parented to {parents[component]!r}"

    return _all_registered(cluster).apply(check)


@pulumi.runtime.test
def test_vm_commands_run_the_virtualbox_scripts(cluster):
    def check(_):
        vm = MOCKS.resources["hapx-hapx-node01-vm"].inputs
        assert "clonevm debian-base-image --name=\"$vm\" --register --mode=all" in vm["create"]
        assert "--nic1=intnet --intnet1=dmz" in vm["create"]
        assert "--host-only-adapter2=vboxnet0" in vm["create"]
        assert "unregistervm \"$vm\" --delete" in vm["delete"]
        seed = MOCKS.resources["hapx-hapx-node01-seed-iso"].inputs
        assert seed["create"].startswith(".venv/bin/python tools/seed_iso.py --out ")
        assert seed["create"].endswith("test-hapx-node01.iso")
        # The payload goes on stdin and holds the rendered NoCloud files.
        stdin = unsecret(seed["stdin"])
        assert "\"user-data\"" in stdin and "#cloud-config" in stdin

    return _all_registered(cluster).apply(check)


@pulumi.runtime.test
def test_crm_script_goes_on_stdin_of_the_apply_command(cluster):
    def check(_):
        apply = MOCKS.resources["hapx-pacemaker-apply"].inputs
        assert "crm configure load update" in apply["create"]
        crm = unsecret(apply["stdin"])
        assert crm.count("property cib-bootstrap-options:") == 1
        assert "primitive hapx-vip ocf:hapx:vip params ip=192.168.4.20 cidr_netmask=27" in crm
        assert "192.168.4.20" not in apply["create"], "config belongs on stdin, not in the command"
        # No delete command: a replaced `apply` must never take hapx's resources out of a serving cluster.
        assert not apply.get("delete")
        # A replaced node changes its stdin (an update), never its triggers (a replacement).
        assert not apply.get("triggers")
        assert crm.count("\n# node instance ") == 2

    return _all_registered(cluster).apply(check)


@pulumi.runtime.test
def test_outputs(cluster):
    def check(values):
        vip, url, nodes, ssh = values
        assert vip == "192.168.4.20"
        assert url == "http://192.168.4.20:32700/"
        assert nodes["hapx-node01"] == {"vm": "hapx-node01", "sshHost": "192.168.56.21", "sshPort": 22, "clusterAddress": "192.168.4.21"}
        assert ssh["hapx-node02"] == (
            "ssh -i ~/.ssh/hapx-test -o UserKnownHostsFile=~/.ssh/hapx-test.known_hosts -p 22 debian@192.168.56.22"
        )

    return pulumi.Output.all(cluster.vip, cluster.stats_url, cluster.nodes, cluster.ssh_commands).apply(check)


@pulumi.runtime.test
def test_secrets_are_marked_secret(cluster):
    async def check():
        assert await cluster.stats_password.is_secret()
        assert await cluster.admin_private_key.is_secret()
        for node_vm in cluster.node_vms:
            assert await node_vm.connection.private_key.is_secret()
        # Public values stay plain so they can be shown.
        assert not await cluster.vip.is_secret()

    return pulumi.Output.from_input(None).apply(lambda _: check())


@pulumi.runtime.test
def test_secret_generators_never_log(cluster):
    def check(_):
        for name, reg in MOCKS.resources.items():
            if name.startswith("hapx-secrets-"):
                assert reg.inputs.get("logging") == "none", f"{name} logs its output"

    return _all_registered(cluster).apply(check)


@pulumi.runtime.test
def test_dependency_order_network_seed_vm_ready_formed_crm(cluster):
    def check(_):
        for node in ("hapx-node01", "hapx-node02"):
            vm = f"hapx-{node}-vm"
            assert depends(vm, "hapx-network-host-only") or depends(vm, "hapx-network"), f"{vm} does not wait for the network"
            assert depends(vm, f"hapx-{node}-seed-iso") or depends(vm, f"hapx-{node}-seed"), f"{vm} does not wait for its seed"
            assert depends(f"hapx-{node}-ready", vm)
            assert depends(f"hapx-{node}-haproxy-cfg", f"hapx-{node}-ready")
            assert depends(f"hapx-{node}-stats-credentials", f"hapx-{node}-ready")
            assert depends("hapx-pacemaker-cluster-formed", f"hapx-{node}-ready")
            assert depends("hapx-pacemaker-cluster-formed", f"hapx-{node}-haproxy-cfg")
            # The crm script names hapx's agents: they are installed first.
            assert depends(f"hapx-{node}-agents", f"hapx-{node}-ready")
            assert depends("hapx-pacemaker-cluster-formed", f"hapx-{node}-agents")
        assert depends("hapx-pacemaker-apply", "hapx-pacemaker-cluster-formed")
        assert depends("hapx-pacemaker-vip-placed", "hapx-pacemaker-apply")
        # And nothing the other way round.
        assert not depends("hapx-hapx-node01-vm", "hapx-pacemaker-apply")

    return _all_registered(cluster).apply(check)
