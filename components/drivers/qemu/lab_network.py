"""QemuLabNetwork: the QEMU lab's cluster segment and the hosts on it.

A network namespace (hapx:qemu.labNamespace) holds a bridge that the nodes'
cluster NICs join, a VLAN device on it carrying the lab's own addresses, and
stand-in kube-apiservers at the backend addresses that lie on the cluster
network. Tests and `make lab` clients run in the namespace too; it has no
route out, so lab traffic never leaves it.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import local

from ...config import DEFAULT_SERVICE, HapxConfig, ServiceMode
from ...rendering import render_template
from ..base import stable_mac
from .lab import LAB_BRIDGE, lab_device

LAB_BRIDGE_OUI = "02:68:78"  # locally administered ("hx")
LAB_PYTHON = ".venv/bin/python"


@dataclass(frozen=True)
class StandIn:
    """One stand-in backend: `id` names its pid file, `name` is what it answers with."""

    id: str
    name: str
    address: str
    port: int
    # tcp: a one-line HTTP answer to any connection; http: the same, failing
    # its health check while <id>.unhealthy exists in the run dir; tls: tcp inside TLS.
    kind: str


def stand_in_backends(cfg: HapxConfig) -> list[StandIn]:
    """Backends the lab serves itself: those with an address on the cluster network, for every service."""
    hosted = []
    for service in cfg.all_services:
        if service.mode is ServiceMode.HTTP:
            kind = "tls" if service.backend_tls else "http"
        else:
            kind = "tls" if service.check.tls else "tcp"
        for backend in service.backends:
            try:
                address = ipaddress.IPv4Address(backend.address)
            except ValueError:
                continue  # a DNS name: not something the lab can stand in for
            if address in cfg.cluster_network:
                # The reference's stand-ins keep their plain names (the bench and tests know them).
                ident = backend.name if service.name == DEFAULT_SERVICE else f"{service.name}.{backend.name}"
                hosted.append(StandIn(ident, backend.name, backend.address, backend.port, kind))
    return hosted


@dataclass
class QemuLabNetworkArgs:
    config: HapxConfig
    stack_dir: str  # the stack's lab state directory (pid files live under it)


class QemuLabNetwork(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    client_address: pulumi.Output[str]
    backends: pulumi.Output[list]

    def __init__(self, name: str, args: QemuLabNetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hapx:index:QemuLabNetwork", name, None, opts)
        cfg = args.config
        assert cfg.qemu is not None and cfg.qemu.lab_client_address is not None
        prefix = cfg.cluster_network.prefixlen
        stand_ins = stand_in_backends(cfg)
        addresses = [f"{cfg.qemu.lab_client_address}/{prefix}"] + list(dict.fromkeys(f"{b.address}/{prefix}" for b in stand_ins))
        values = dict(
            namespace=cfg.qemu.lab_namespace,
            bridge=LAB_BRIDGE,
            vlan=cfg.cluster_vlan,
            lab_device=lab_device(cfg.cluster_vlan),
            # Locally administered (02:...), the same on every run of this lab.
            bridge_mac=stable_mac(LAB_BRIDGE_OUI, cfg.qemu.lab_namespace, "bridge"),
        )
        # Addresses are part of the namespace's create script, so a backend
        # change updates this command in place (`ip addr replace`), it does
        # not replace the namespace under the running VMs.
        self.segment = local.Command(
            f"{name}-segment",
            create=render_template("qemu/lab-network-create.sh.j2", addresses=addresses, **values),
            delete=render_template("qemu/lab-network-delete.sh.j2", stack_dir=args.stack_dir, **values),
            interpreter=["/bin/sh", "-c"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        run_dir = os.path.join(args.stack_dir, "backends")
        backend_values = dict(namespace=cfg.qemu.lab_namespace, run_dir=run_dir, python=LAB_PYTHON, backends=stand_ins)
        self.stand_ins = local.Command(
            f"{name}-backends",
            create=render_template("qemu/lab-backends.sh.j2", start=True, **backend_values),
            delete=render_template("qemu/lab-backends.sh.j2", start=False, **backend_values),
            interpreter=["/bin/sh", "-c"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.segment]),
        )
        self.namespace = self.segment.stdout.apply(lambda _: cfg.qemu.lab_namespace)
        self.client_address = pulumi.Output.from_input(str(cfg.qemu.lab_client_address))
        self.backends = self.stand_ins.stdout.apply(lambda _: [f"{b.address}:{b.port}" for b in stand_ins])
        self.register_outputs(
            {"namespace": self.namespace, "clientAddress": self.client_address, "backends": self.backends}
        )
