"""The hypervisor driver interface and the types drivers share.

A driver turns typed config into the guest's NICs, the SSH endpoint Pulumi
uses, the shell scripts that create, update and delete one VM, and the
fence plan for its hypervisor. Apart from `network()` and `fence_host()`,
which build the driver's own host-side components, drivers create no Pulumi
resources; the components run the scripts with pulumi-command, so
VirtualBox and QEMU are peers behind this one interface. This module
imports nothing from the drivers themselves.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass
from typing import Optional

import pulumi

from ..config import CLUSTER_NIC, MANAGEMENT_NIC, HapxConfig, NodeConfig
from ..fencing import FencePlan
from ..rendering import GuestNic, NodeNetwork


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    port: int


@dataclass(frozen=True)
class VmSpec:
    """Everything about one VM that is not secret and not the seed."""

    stack: str
    name: str  # the VM's name on the hypervisor
    node: NodeConfig
    index: int
    cpus: int
    memory_mb: int
    network: NodeNetwork
    image: str = ""  # the base image's identity, where the driver knows it
    # Hypervisor-side wiring the VM is started with (the QEMU lab's fence
    # forward): changing it means starting the VM anew.
    host_wiring: str = ""

    def fingerprint(self) -> str:
        """Changes to these settings replace the VM."""
        return hashlib.sha256(repr(self).encode()).hexdigest()


@dataclass(frozen=True)
class VmScripts:
    create: str
    delete: str
    # When the scripts change but not the VM's triggers (a new hapx): keeps
    # the running VM and prints its id as create does (a different last line
    # would look like a new VM to everything that follows instance_id).
    update: str
    # Run on the host once the new VM is ready ("": nothing): the QEMU lab
    # gives a VM that has finished booting its full share of the host's CPU.
    settled: str = ""


@dataclass(frozen=True)
class NetworkScripts:
    """Create and delete scripts of a host-side object (a network, a base VM)."""

    create: str
    delete: str


def stable_mac(oui: str, *parts: str) -> str:
    """A MAC that is the same on every run for the same stack, node and role.

    cloud-init matches NICs by MAC, so MACs must be known before the VM exists.
    `oui` is three octets ("08:00:27" VirtualBox, "52:54:00" QEMU).
    """
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    tail = ":".join(f"{b:02x}" for b in digest[:3])
    return f"{oui}:{tail}"


class HypervisorDriver(abc.ABC):
    """One hypervisor. Subclasses are pure: they return data and scripts."""

    kind: str

    def __init__(self, cfg: HapxConfig, stack: str):
        self.cfg = cfg
        self.stack = stack

    @abc.abstractmethod
    def node_network(self, node: NodeConfig, index: int) -> NodeNetwork:
        """The guest's NICs (MACs, addresses) as network-config describes them."""

    @abc.abstractmethod
    def ssh_endpoint(self, node: NodeConfig, index: int) -> SshEndpoint:
        """Where Pulumi reaches the node's sshd: its own stable address, never the VIP."""

    @abc.abstractmethod
    def seed_path(self, node: NodeConfig) -> str:
        """Absolute path of the node's NoCloud seed ISO."""

    @abc.abstractmethod
    def vm_scripts(self, spec: VmSpec, seed_iso: str) -> VmScripts:
        """Shell scripts that create, update (seed rewritten) and delete the VM."""

    @abc.abstractmethod
    def network(self, name: str, opts: pulumi.ResourceOptions) -> Optional[pulumi.Resource]:
        """The host-side network component the VMs attach to (None if none is needed)."""

    def base_vm(self, name: str, opts: pulumi.ResourceOptions) -> Optional[pulumi.Resource]:
        """The VM or image the nodes are made from, when hapx makes it (None: it exists already)."""
        return None

    @abc.abstractmethod
    def fence_plan(self) -> Optional[FencePlan]:
        """How a node fences its peer on this hypervisor (None: fencing is off)."""

    def fence_host(self, name: str, secret: pulumi.Input[str], opts: pulumi.ResourceOptions) -> Optional[pulumi.Resource]:
        """What the hypervisor host needs for fencing the nodes (None: nothing)."""
        return None

    def vm_name(self, node: NodeConfig) -> str:
        return node.name

    def vm_spec(self, node: NodeConfig, index: int) -> VmSpec:
        return VmSpec(
            stack=self.stack,
            name=self.vm_name(node),
            node=node,
            index=index,
            cpus=self.cfg.node_size.cpus,
            memory_mb=self.cfg.node_size.memory_mb,
            network=self.node_network(node, index),
        )


def management_nic(mac: str, addresses: tuple[str, ...] = ()) -> GuestNic:
    return GuestNic(name=MANAGEMENT_NIC, mac=mac, addresses=addresses)


def cluster_nic(mac: str) -> GuestNic:
    return GuestNic(name=CLUSTER_NIC, mac=mac)
