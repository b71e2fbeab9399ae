"""VirtualBox driver: VBoxManage scripts for the hapx VMs and their networks.

Layout (as the reference design): NIC 1 on the internal network `dmz`
carrying VLAN 41 (ring + VIP) and optionally VLAN 43 (DHCP); NIC 2 on a
host-only network so Pulumi on the host reaches each node's sshd.
Syntax follows the VBoxManage 7 manual; docs/virtualbox.md notes 6.1 spellings.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Optional

import pulumi

from ...config import HapxConfig, NodeConfig
from ...fencing import FencePlan, fence_vbox_plan
from ...rendering import NodeNetwork, render_template
from ..base import (
    HypervisorDriver,
    NetworkScripts,
    SshEndpoint,
    VmScripts,
    VmSpec,
    cluster_nic,
    management_nic,
    stable_mac,
)
from .base_vm import VirtualBoxBaseVm, VirtualBoxBaseVmArgs
from .network import VirtualBoxNetwork, VirtualBoxNetworkArgs

VIRTUALBOX_OUI = "08:00:27"
SEED_PORT = 1  # storage controller port the seed DVD drive uses


def vbox_mac(mac: str) -> str:
    """VBoxManage wants MACs as 12 hex digits without separators."""
    return mac.replace(":", "").upper()


class VirtualBoxDriver(HypervisorDriver):
    kind = "virtualbox"

    def __init__(self, cfg: HapxConfig, stack: str):
        super().__init__(cfg, stack)
        assert cfg.virtualbox is not None, "config parser guarantees hapx:virtualbox for this driver"
        self.vbox = cfg.virtualbox

    def node_network(self, node: NodeConfig, index: int) -> NodeNetwork:
        prefix = self.vbox.host_only_network.network.prefixlen
        return NodeNetwork(
            management=management_nic(
                stable_mac(VIRTUALBOX_OUI, self.stack, node.name, "management"),
                (f"{node.management_address}/{prefix}",),
            ),
            cluster=cluster_nic(stable_mac(VIRTUALBOX_OUI, self.stack, node.name, "cluster")),
        )

    def ssh_endpoint(self, node: NodeConfig, index: int) -> SshEndpoint:
        return SshEndpoint(host=str(node.management_address), port=22)

    def seed_path(self, node: NodeConfig) -> str:
        seed_dir = os.path.expanduser(self.vbox.seed_dir)
        return os.path.join(seed_dir, f"{self.stack}-{node.name}.iso")

    def vm_spec(self, node: NodeConfig, index: int) -> VmSpec:
        # A base VM made from an image is part of what a node is: a new image
        # replaces the nodes. A base VM the operator made is not tracked
        # (empty identity, as before hapx made base VMs).
        return replace(super().vm_spec(node, index), image=self.base_image_identity())

    def base_image_identity(self) -> str:
        """What the base image is: `make image`'s build key beside it, else its size and time."""
        if self.vbox.base_image is None:
            return ""
        path = os.path.expanduser(self.vbox.base_image)
        try:
            with open(os.path.join(os.path.dirname(path), "image.json")) as f:
                return f"image-key={json.load(f)['key']}"
        except (OSError, ValueError, KeyError):
            pass
        try:
            stat = os.stat(path)
        except OSError:
            return ""
        return f"size={stat.st_size} mtime={int(stat.st_mtime)}"

    def base_vm_scripts(self) -> NetworkScripts:
        """Create and delete scripts of the base VM hapx makes from hapx:virtualbox.baseImage."""
        assert self.vbox.base_image is not None
        values = dict(
            vboxmanage=self.vbox.vboxmanage,
            vm=self.vbox.base_vm,
            image=os.path.expanduser(self.vbox.base_image),
            owner=f"hapx stack {self.stack}",
            storage_controller=self.vbox.storage_controller,
            cpus=self.cfg.node_size.cpus,
            memory_mb=self.cfg.node_size.memory_mb,
        )
        return NetworkScripts(
            create=render_template("virtualbox/base-vm-create.sh.j2", **values),
            delete=render_template("virtualbox/base-vm-delete.sh.j2", **values),
        )

    def base_vm(self, name: str, opts: pulumi.ResourceOptions) -> Optional[pulumi.Resource]:
        if self.vbox.base_image is None:
            return None
        scripts = self.base_vm_scripts()
        args = VirtualBoxBaseVmArgs(
            vm_name=self.vbox.base_vm, create=scripts.create, delete=scripts.delete, image_identity=self.base_image_identity()
        )
        return VirtualBoxBaseVm(name, args, opts)

    def vm_scripts(self, spec: VmSpec, seed_iso: str) -> VmScripts:
        values = dict(
            vboxmanage=self.vbox.vboxmanage,
            vm=spec.name,
            base_vm=self.vbox.base_vm,
            cpus=spec.cpus,
            memory_mb=spec.memory_mb,
            internal_network=self.vbox.internal_network,
            cluster_mac=vbox_mac(spec.network.cluster.mac),
            host_only_mode=self.vbox.host_only_mode.value,
            host_only_name=self.vbox.host_only_name,
            management_mac=vbox_mac(spec.network.management.mac),
            storage_controller=self.vbox.storage_controller,
            seed_port=SEED_PORT,
            seed_iso=seed_iso,
        )
        return VmScripts(
            create=render_template("virtualbox/vm-create.sh.j2", **values),
            delete=render_template("virtualbox/vm-delete.sh.j2", **values),
            update=render_template("virtualbox/vm-update.sh.j2", **values),
        )

    def fence_plan(self) -> Optional[FencePlan]:
        return fence_vbox_plan(self.cfg) if self.cfg.fencing.enabled else None

    def network(self, name: str, opts: pulumi.ResourceOptions) -> Optional[pulumi.Resource]:
        args = VirtualBoxNetworkArgs(
            scripts=self.network_scripts(),
            host_only_name=self.vbox.host_only_name,
            internal_network=self.vbox.internal_network,
        )
        return VirtualBoxNetwork(name, args, opts)

    def network_scripts(self) -> NetworkScripts:
        net = self.vbox.host_only_network
        hosts = list(net.network.hosts())
        values = dict(
            vboxmanage=self.vbox.vboxmanage,
            name=self.vbox.host_only_name,
            mode=self.vbox.host_only_mode.value,
            host_ip=str(net.ip),
            netmask=str(net.netmask),
            lower_ip=str(hosts[0]),
            upper_ip=str(hosts[-1]),
        )
        return NetworkScripts(
            create=render_template("virtualbox/network-create.sh.j2", **values),
            delete=render_template("virtualbox/network-delete.sh.j2", **values),
        )

