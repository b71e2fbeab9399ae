"""The VirtualBox stack's driver-specific components under Pulumi mocks: the
host-only network, and fencing through fence_vbox with a generated SSH key.
(The whole VirtualBox tree with fencing off: tests/unit/test_haproxy_cluster.py.)"""

from __future__ import annotations

import pulumi
import pytest

from tests.unit.pulumi_mocks import FAKE_KEYPAIR, MOCKS, depends, is_secret_input, parent_name, unsecret

from components.config import parse_config  # noqa: E402  (after set_mocks, by design)
from components.fencing import NODE_VBOX_KEY_PATH  # noqa: E402
from components.haproxy_cluster import HaproxyCluster, HaproxyClusterArgs  # noqa: E402

NODES = ("hapx-node01", "hapx-node02")


@pytest.fixture(scope="module")
def fenced():
    from harness.paths import stack_config

    MOCKS.resources.clear()
    raw = stack_config("dev")
    raw["hapx:fencing"] = {"enabled": True, "hostUser": "vboxadmin", "pingTargets": ["192.168.4.1"]}
    return HaproxyCluster("vbx", HaproxyClusterArgs(config=parse_config(raw), stack="vbxtest"))


def _all_registered(cluster) -> pulumi.Output:
    return pulumi.Output.all(cluster.pacemaker.vip_node_at_apply, *[vm.ready.stdout for vm in cluster.node_vms])


@pulumi.runtime.test
def test_host_only_network_is_created_before_the_vms(fenced):
    def check(_):
        assert MOCKS.resources["vbx-network"].type == "hapx:index:VirtualBoxNetwork"
        host_only = MOCKS.resources["vbx-network-host-only"]
        assert parent_name(host_only) == "vbx-network"
        assert "hostonlyif" in host_only.inputs["create"] and "192.168.56.1" in host_only.inputs["create"]
        for node in NODES:
            assert depends(f"vbx-{node}-vm", "vbx-network-host-only")

    return _all_registered(fenced).apply(check)


@pulumi.runtime.test
def test_fence_vbox_key_is_generated_and_installed_secretly(fenced):
    def check(_):
        generator = MOCKS.resources["vbx-secrets-fence-ssh-key"]
        assert "ssh-keygen" in generator.inputs["create"] and generator.inputs["logging"] == "none"
        private_key = FAKE_KEYPAIR.split("-----END OPENSSH PRIVATE KEY-----")[0]
        for node in NODES:
            step = MOCKS.resources[f"vbx-{node}-fence-credential"]
            assert is_secret_input(step.inputs["stdin"])
            assert unsecret(step.inputs["stdin"]).startswith(private_key)
            assert step.inputs["logging"] == "stderr"
            assert NODE_VBOX_KEY_PATH in step.inputs["create"]
            # fence-agents ships fence_vbox: hapx installs only its haproxy agent.
            assert "/usr/sbin/fence_" not in MOCKS.resources[f"vbx-{node}-agents"].inputs["create"]
        # No lab host helper on VirtualBox.
        assert not any(name.startswith("vbx-fence-host") for name in MOCKS.resources)
        crm = unsecret(MOCKS.resources["vbx-pacemaker-apply"].inputs["stdin"])
        assert f"stonith:fence_vbox params ip=192.168.56.1 username=vboxadmin identity_file={NODE_VBOX_KEY_PATH}" in crm
        assert "fencing_topology" in crm

    return _all_registered(fenced).apply(check)


@pulumi.runtime.test
def test_fence_host_public_key_is_an_output(fenced):
    def check(key):
        assert key == FAKE_KEYPAIR.split("-----END OPENSSH PRIVATE KEY-----")[1].strip()
        assert key.startswith("ssh-ed25519 ")

    return fenced.fence_host_public_key.apply(check)


@pytest.fixture(scope="module")
def from_image(tmp_path_factory):
    from harness.paths import stack_config

    image = tmp_path_factory.mktemp("images") / "base.vdi"
    image.write_bytes(b"vdi")
    MOCKS.resources.clear()
    raw = stack_config("dev")
    raw["hapx:virtualbox"] = {**raw["hapx:virtualbox"], "baseImage": str(image), "baseVm": "hapx-img-base"}
    return HaproxyCluster("img", HaproxyClusterArgs(config=parse_config(raw), stack="imgtest"))


@pulumi.runtime.test
def test_base_vm_from_an_image_comes_before_the_nodes(from_image):
    def check(_):
        assert MOCKS.resources["img-base-vm"].type == "hapx:index:VirtualBoxBaseVm"
        command = MOCKS.resources["img-base-vm-vm"]
        assert parent_name(command) == "img-base-vm" and parent_name(MOCKS.resources["img-base-vm"]) == "img"
        assert "createvm --name=\"$vm\" --ostype=Debian_64 --register" in command.inputs["create"]
        assert "unregistervm \"$vm\" --delete" in command.inputs["delete"]
        for node in NODES:
            assert depends(f"img-{node}-vm", "img-base-vm-vm")
            assert "clonevm hapx-img-base --name=\"$vm\"" in MOCKS.resources[f"img-{node}-vm"].inputs["create"]

    return _all_registered(from_image).apply(check)
