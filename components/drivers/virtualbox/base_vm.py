"""VirtualBoxBaseVm: the base VM the nodes are cloned from, made by hapx from
a disk image (`make image`'s base.vdi) when `hapx:virtualbox.baseImage` is set.

It is a VM that never runs: createvm with a Debian 64-bit OS type, BIOS,
a SATA (AHCI) controller with hapx's own copy of the image on port 0, no
audio, booting from the disk. Without `baseImage`, the operator's existing VM
named by `hapx:virtualbox.baseVm` is cloned instead and hapx creates nothing
here. Destroy unregisters the VM and deletes the copy; the image file the
operator gave is only ever read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import local


@dataclass
class VirtualBoxBaseVmArgs:
    vm_name: str
    create: str  # the driver's scripts (templates/virtualbox/base-vm-*.sh.j2)
    delete: str
    # What the image is (its build key, or its size and time): a new image
    # makes a new base VM, and the nodes cloned from the old one are replaced.
    image_identity: str


class VirtualBoxBaseVm(pulumi.ComponentResource):
    vm_name: pulumi.Output[str]
    uuid: pulumi.Output[str]

    def __init__(self, name: str, args: VirtualBoxBaseVmArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hapx:index:VirtualBoxBaseVm", name, None, opts)
        self.vm = local.Command(
            f"{name}-vm",
            create=args.create,
            delete=args.delete,
            interpreter=["/bin/sh", "-c"],
            triggers=[args.image_identity],
            opts=pulumi.ResourceOptions(
                parent=self,
                # Same name on the host: the old one goes before the new one comes.
                delete_before_replace=True,
            ),
        )
        self.vm_name = self.vm.stdout.apply(lambda _: args.vm_name)
        self.uuid = self.vm.stdout.apply(lambda out: out.strip().rsplit("vbox-base-uuid=", 1)[-1])
        self.register_outputs({"vmName": self.vm_name, "uuid": self.uuid})
