"""QEMU driver: the hapx VMs as local QEMU processes, for the lab and CI.

Layout (mirrors the VirtualBox one): NIC 1 (`mgmt0`) is QEMU user-mode
networking with `restrict=on`, reachable only through an SSH port forward on
the host's loopback (127.0.0.1:sshPortBase+i); NIC 2 (`dmz0`, VLANs inside the
guest as on VirtualBox) is a tap on a bridge inside the lab's network
namespace, which also holds the stand-in backends and the test clients.
Disks are copy-on-write overlays on the base image from `make image`.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Optional

import pulumi

from ...config import HapxConfig, NodeConfig
from ...fencing import QEMU_FENCE_ADDRESS, QEMU_FENCE_PORT, FencePlan, qemu_lab_plan
from ...rendering import NodeNetwork, render_template
from ..base import (
    HypervisorDriver,
    SshEndpoint,
    VmScripts,
    VmSpec,
    cluster_nic,
    management_nic,
    stable_mac,
)
from .fence_host import HELPER, QemuFenceHost, QemuFenceHostArgs
from .lab import LAB_BRIDGE, tap_name
from .lab_network import QemuLabNetwork, QemuLabNetworkArgs

QEMU_OUI = "52:54:00"
DISK_SIZE = "4G"  # virtual size of each node's overlay (the base is 3 GiB)
BOOT_NICE = 10  # a booting VM's host priority, until it is ready (templates/qemu/vm-settled.sh.j2)


class QemuDriver(HypervisorDriver):
    kind = "qemu"

    def __init__(self, cfg: HapxConfig, stack: str):
        super().__init__(cfg, stack)
        assert cfg.qemu is not None, "config parser guarantees hapx:qemu for this driver"
        self.qemu = cfg.qemu
        self.state_root = os.path.expanduser(self.qemu.state_dir)
        self.stack_dir = os.path.join(self.state_root, stack)
        self.image_dir = os.path.expanduser(self.qemu.image_dir)

    def node_network(self, node: NodeConfig, index: int) -> NodeNetwork:
        return NodeNetwork(
            # Addressed by QEMU's user-mode DHCP; only the port forward matters.
            management=management_nic(stable_mac(QEMU_OUI, self.stack, node.name, "management")),
            cluster=cluster_nic(stable_mac(QEMU_OUI, self.stack, node.name, "cluster")),
        )

    def ssh_endpoint(self, node: NodeConfig, index: int) -> SshEndpoint:
        return SshEndpoint(host="127.0.0.1", port=self.qemu.ssh_port_base + index)

    def seed_path(self, node: NodeConfig) -> str:
        # Outside the VM's directory: replacing a VM deletes that directory,
        # and an unchanged seed is not rewritten.
        return os.path.join(self.stack_dir, "seeds", f"{node.name}.iso")

    def vm_dir(self, node: NodeConfig) -> str:
        return os.path.join(self.stack_dir, "vms", node.name)

    def vm_spec(self, node: NodeConfig, index: int) -> VmSpec:
        # The base image is part of what a VM is: a rebuilt image replaces it.
        # Not the forward's command line: it names this clone's path, and
        # moving the clone should not replace the VMs.
        wiring = f"fence={QEMU_FENCE_ADDRESS}:{QEMU_FENCE_PORT}" if self.cfg.fencing.enabled else ""
        return replace(super().vm_spec(node, index), image=self.image_key(), host_wiring=wiring)

    def image_key(self) -> str:
        """The key of the base image `make image` built, "" before it exists."""
        try:
            with open(os.path.join(self.image_dir, "image.json")) as f:
                return str(json.load(f)["key"])
        except (OSError, ValueError, KeyError):
            return ""

    def process_name(self, node: NodeConfig) -> str:
        return f"hapx-{self.stack}-{node.name}"

    def tap_name(self, node: NodeConfig) -> str:
        return tap_name(self.stack, node.name)

    def fence_forward(self, node: NodeConfig) -> str:
        """The guestfwd rule that takes the node's fence requests to the host helper."""
        if not self.cfg.fencing.enabled:
            return ""
        command = f"/usr/bin/env python3 {HELPER} --stack-dir {self.stack_dir} --from {node.name}"
        # Inside a -netdev option a literal comma is written twice.
        return f",guestfwd=tcp:{QEMU_FENCE_ADDRESS}:{QEMU_FENCE_PORT}-cmd:" + command.replace(",", ",,")

    def fence_plan(self) -> Optional[FencePlan]:
        return qemu_lab_plan(self.cfg) if self.cfg.fencing.enabled else None

    def fence_host(self, name: str, secret: pulumi.Input[str], opts: pulumi.ResourceOptions) -> Optional[pulumi.Resource]:
        if not self.cfg.fencing.enabled:
            return None
        return QemuFenceHost(name, QemuFenceHostArgs(stack_dir=self.stack_dir, password=secret), opts)

    def vm_scripts(self, spec: VmSpec, seed_iso: str) -> VmScripts:
        values = dict(
            stack=self.stack,
            vm=spec.name,
            vm_dir=self.vm_dir(spec.node),
            state_root=self.state_root,
            image_dir=self.image_dir,
            namespace=self.qemu.lab_namespace,
            bridge=LAB_BRIDGE,
            tap=self.tap_name(spec.node),
            process_name=self.process_name(spec.node),
            accel=self.qemu.accel.value,
            translation_cache_mb=self.qemu.translation_cache_mb,
            cpus=spec.cpus,
            memory_mb=spec.memory_mb,
            disk_size=DISK_SIZE,
            ssh_port=self.ssh_endpoint(spec.node, spec.index).port,
            management_mac=spec.network.management.mac,
            cluster_mac=spec.network.cluster.mac,
            seed_iso=seed_iso,
            fence_forward=self.fence_forward(spec.node),
            boot_nice=BOOT_NICE,
        )
        return VmScripts(
            create=render_template("qemu/vm-create.sh.j2", **values),
            delete=render_template("qemu/vm-delete.sh.j2", **values),
            update=render_template("qemu/vm-update.sh.j2", **values),
            settled=render_template("qemu/vm-settled.sh.j2", **values),
        )

    def network(self, name: str, opts: pulumi.ResourceOptions) -> Optional[pulumi.Resource]:
        return QemuLabNetwork(name, QemuLabNetworkArgs(config=self.cfg, stack_dir=self.stack_dir), opts)
