"""VirtualBoxNetwork: the host-only network Pulumi reaches the nodes through.

The internal network `dmz` (cluster segment, VLANs inside the guests) needs
no host-side object: VirtualBox makes an internal network when a NIC names
it. The host-only network does need one, and hapx removes it on destroy only
if hapx created it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import local

from ..base import NetworkScripts


@dataclass
class VirtualBoxNetworkArgs:
    scripts: NetworkScripts
    host_only_name: str
    internal_network: str


class VirtualBoxNetwork(pulumi.ComponentResource):
    host_only_name: pulumi.Output[str]
    internal_network: pulumi.Output[str]

    def __init__(self, name: str, args: VirtualBoxNetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hapx:index:VirtualBoxNetwork", name, None, opts)
        self.host_only = local.Command(
            f"{name}-host-only",
            create=args.scripts.create,
            delete=args.scripts.delete,
            interpreter=["/bin/sh", "-c"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Exposed through the command so that VMs wait for the network.
        self.host_only_name = self.host_only.stdout.apply(lambda _: args.host_only_name)
        self.internal_network = pulumi.Output.from_input(args.internal_network)
        self.register_outputs({"hostOnlyName": self.host_only_name, "internalNetwork": self.internal_network})
