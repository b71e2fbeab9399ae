"""The QEMU lab stack's component tree under Pulumi mocks: the lab network,
the host's fence helper credential, the VMs' QEMU scripts and the nodes'
fence steps. tests/e2e runs the same components for real."""

from __future__ import annotations

import os

import pulumi
import pytest

from tests.unit.pulumi_mocks import MOCKS, depends, is_secret_input, parent_name, unsecret

from components.config import parse_config  # noqa: E402  (after set_mocks, by design)
from components.drivers.qemu.lab import tap_name  # noqa: E402
from components.fencing import NODE_PASSWORD_PATH, host_password_path  # noqa: E402
from components.haproxy_cluster import HaproxyCluster, HaproxyClusterArgs  # noqa: E402

STACK = "labtest"
NODES = ("hapx-node01", "hapx-node02")
# The mock's generated password (tests/unit/pulumi_mocks.py).
MOCK_PASSWORD = "p4ssw0rdp4ssw0rdp4ssw0rdp4ssw0rd"


@pytest.fixture(scope="module")
def lab():
    from harness.paths import stack_config

    MOCKS.resources.clear()
    cfg = parse_config(stack_config("lab"))
    return HaproxyCluster("lab", HaproxyClusterArgs(config=cfg, stack=STACK))


def _stack_dir() -> str:
    return os.path.join(os.path.expanduser("~/.cache/hapx/lab"), STACK)


def _all_registered(cluster) -> pulumi.Output:
    return pulumi.Output.all(
        cluster.pacemaker.vip_node_at_apply, cluster.lab_namespace, *[vm.ready.stdout for vm in cluster.node_vms]
    )


@pulumi.runtime.test
def test_lab_network_is_a_namespace_with_stand_in_backends(lab):
    def check(_):
        assert MOCKS.resources["lab-network"].type == "hapx:index:QemuLabNetwork"
        segment = MOCKS.resources["lab-network-segment"]
        backends = MOCKS.resources["lab-network-backends"]
        assert parent_name(segment) == parent_name(backends) == "lab-network"
        assert parent_name(MOCKS.resources["lab-network"]) == "lab"
        assert "ip netns add" in segment.inputs["create"]
        # The stand-ins' addresses and the lab client's live in the namespace.
        for address in ("192.168.4.11/27", "192.168.4.12/27", "192.168.4.13/27"):
            assert f"addr replace {address} dev hapx-br" in segment.inputs["create"]
        assert "ip netns delete" in segment.inputs["delete"]
        assert depends("lab-network-backends", "lab-network-segment")
        assert "kube-mast01 192.168.4.11:6443" in backends.inputs["create"]
        # The other services' stand-ins share those addresses (each added once), on their own ports:
        # HTTP ones that can be made to fail their check, TLS ones for the passthrough service.
        assert segment.inputs["create"].count("addr replace 192.168.4.11/27") == 1
        create = backends.inputs["create"]
        assert "web.web-a 192.168.4.11:8080" in create and "tls-passthrough.tls-b 192.168.4.12:9443" in create
        assert '--unhealthy-file "$run_dir/web.web-a.unhealthy"' in create
        assert create.count('--tls-cert "$run_dir/stand-in-tls.pem"') == 2
        # The VMs attach to the segment: they wait for the network component.
        for node in NODES:
            assert depends(f"lab-{node}-vm", "lab-network-segment") and depends(f"lab-{node}-vm", "lab-network-backends")

    return _all_registered(lab).apply(check)


@pulumi.runtime.test
def test_vm_scripts_start_qemu_on_the_lab_bridge_with_the_fence_forward(lab):
    def check(_):
        for index, node in enumerate(NODES):
            create = MOCKS.resources[f"lab-{node}-vm"].inputs["create"]
            assert "qemu-system-x86_64" in create
            # The default translation cache (hapx:qemu.translationCacheMb).
            assert 'accel_opts="tcg,tb-size=2048"' in create
            assert f"tap={tap_name(STACK, node)}" in create
            assert f"hostfwd=tcp:127.0.0.1:{2220 + index}-:22" in create
            # Fencing is on in the lab: the node reaches the host helper.
            assert "guestfwd=tcp:10.0.2.100:1229-cmd:" in create
            assert f"--stack-dir {_stack_dir()} --from {node}" in create
            delete = MOCKS.resources[f"lab-{node}-vm"].inputs["delete"]
            assert "qemu.pid" in delete

    return _all_registered(lab).apply(check)


@pulumi.runtime.test
def test_fence_host_gets_the_password_on_stdin_and_never_logs_it(lab):
    def check(_):
        assert MOCKS.resources["lab-fence-host"].type == "hapx:index:QemuFenceHost"
        secret = MOCKS.resources["lab-fence-host-secret"]
        assert parent_name(secret) == "lab-fence-host"
        assert is_secret_input(secret.inputs["stdin"])
        assert unsecret(secret.inputs["stdin"]) == MOCK_PASSWORD
        assert secret.inputs["logging"] == "stderr"
        assert MOCK_PASSWORD not in secret.inputs["create"] + secret.inputs["delete"]
        path = host_password_path(_stack_dir())
        assert f"path={path}" in secret.inputs["create"] and f"path={path}" in secret.inputs["delete"]
        # The cluster is configured only once the host can answer fence requests.
        assert depends("lab-pacemaker-cluster-formed", "lab-fence-host-secret")

    return _all_registered(lab).apply(check)


@pulumi.runtime.test
def test_nodes_get_the_fence_agent_and_its_password(lab):
    def check(_):
        for node in NODES:
            step = MOCKS.resources[f"lab-{node}-fence-credential"]
            assert is_secret_input(step.inputs["stdin"]) and unsecret(step.inputs["stdin"]) == MOCK_PASSWORD
            assert step.inputs["logging"] == "stderr"
            assert NODE_PASSWORD_PATH in step.inputs["create"]
            assert depends(f"lab-{node}-fence-credential", f"lab-{node}-ready")
            assert depends("lab-pacemaker-cluster-formed", f"lab-{node}-fence-credential")
            assert "/usr/sbin/fence_hapx_qemu" in MOCKS.resources[f"lab-{node}-agents"].inputs["create"]
        crm = unsecret(MOCKS.resources["lab-pacemaker-apply"].inputs["stdin"])
        assert "stonith:fence_hapx_qemu params ip=10.0.2.100 ipport=1229" in crm
        assert MOCK_PASSWORD not in crm, "the fence password must stay out of the CIB"

    return _all_registered(lab).apply(check)


@pulumi.runtime.test
def test_lab_outputs(lab):
    def check(values):
        namespace, nodes, fence_key = values
        assert namespace == "hapx-lab"
        assert nodes["hapx-node02"] == {"vm": "hapx-node02", "sshHost": "127.0.0.1", "sshPort": 2221, "clusterAddress": "192.168.4.22"}
        # No VirtualBox host to give a key to.
        assert fence_key is None

    return pulumi.Output.all(lab.lab_namespace, lab.nodes, lab.fence_host_public_key).apply(check)
