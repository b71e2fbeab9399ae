"""HapxVm: one cluster node: the VM on its hypervisor and the wait until it is ready.

The VM itself is a local command running the driver's scripts. It is
replaced when the node's identity (name, network, keys, cluster membership)
or its size changes; a seed change that leaves the identity alone does not
touch it. Every remote command on the node depends on `ready`,
and re-runs when `instance_id` shows the VM was replaced. The VM comes after
the node's drain (components/node_drain.py), which carries the same triggers:
a replacement always finds the old node drained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import local, remote

from .cloud_init_seed import CloudInitSeed
from .drivers.base import SshEndpoint, VmScripts, VmSpec
from .rendering import render_template, sha256_text

# A TCG guest takes about 50 s to answer SSH and the reference's VirtualBox
# guests reboot once; pulumi-command's default of 10 failed dials (about
# 7.5 s of refused connections) is far too short. With its backoff capped at
# 5 s, 120 dials bound the wait to roughly 10 to 30 minutes.
DIAL_ERROR_LIMIT = 120
PER_DIAL_TIMEOUT_S = 10


@dataclass
class HapxVmArgs:
    spec: VmSpec
    scripts: VmScripts
    seed: CloudInitSeed
    ssh: SshEndpoint
    admin_user: str
    admin_private_key: pulumi.Input[str]
    host_public_key: pulumi.Input[str]
    # The hypervisor network the VM attaches to (created first).
    network: Optional[pulumi.Resource] = None
    # The base VM it is cloned from, when hapx makes that too (created first).
    base_vm: Optional[pulumi.Resource] = None
    # The step that takes the old node out of service before a replacement.
    drain: Optional[pulumi.Resource] = None


def replace_key(seed: CloudInitSeed, spec: VmSpec) -> pulumi.Output[str]:
    """What replaces the VM when it changes (its triggers), as one secret hash."""
    return pulumi.Output.secret(
        pulumi.Output.all(seed.identity_sha, spec.fingerprint()).apply(lambda parts: sha256_text(*map(str, parts)))
    )


def node_connection(
    ssh: SshEndpoint, admin_user: str, admin_private_key: pulumi.Input[str], host_public_key: pulumi.Input[str]
) -> remote.ConnectionArgs:
    """The node's own stable address, never the VIP: a connection change
    would touch every command on the node."""
    return remote.ConnectionArgs(
        host=ssh.host,
        port=ssh.port,
        user=admin_user,
        private_key=pulumi.Output.secret(admin_private_key),
        host_key=host_public_key,
        dial_error_limit=DIAL_ERROR_LIMIT,
        per_dial_timeout=PER_DIAL_TIMEOUT_S,
    )


class HapxVm(pulumi.ComponentResource):
    vm_name: pulumi.Output[str]
    ssh_host: pulumi.Output[str]
    ssh_port: pulumi.Output[int]
    instance_id: pulumi.Output[str]
    ready: remote.Command
    connection: remote.ConnectionArgs

    def __init__(self, name: str, args: HapxVmArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hapx:index:HapxVm", name, None, opts)
        self.vm = local.Command(
            f"{name}-vm",
            create=args.scripts.create,
            update=args.scripts.update,
            delete=args.scripts.delete,
            interpreter=["/bin/sh", "-c"],
            # Identity or size changed: a new VM. A seed change that keeps the
            # identity leaves the VM alone (the running node gets day-2 config
            # over SSH). Nothing here may become unknown on such a change: the
            # commands triggered by instance_id would be replaced in preview.
            triggers=[args.seed.identity_sha, args.spec.fingerprint()],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[args.seed] + [r for r in (args.network, args.base_vm, args.drain) if r is not None],
                # The replacement has the same name on the hypervisor, so the
                # old VM must be gone before the new one is created.
                delete_before_replace=True,
            ),
        )
        self.instance_id = self.vm.stdout.apply(lambda out: out.strip().splitlines()[-1] if out.strip() else "")

        self.connection = node_connection(args.ssh, args.admin_user, args.admin_private_key, args.host_public_key)
        self.ready = remote.Command(
            f"{name}-ready",
            connection=self.connection,
            create=render_template("node/wait-ready.sh.j2"),
            triggers=[self.instance_id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.vm], deleted_with=self.vm),
        )
        # The hypervisor's step once the VM is ready (the QEMU lab: full host priority after the boot), if any.
        self.settled: Optional[local.Command] = None
        if args.scripts.settled:
            self.settled = local.Command(
                f"{name}-settled",
                create=args.scripts.settled,
                interpreter=["/bin/sh", "-c"],
                triggers=[self.instance_id],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.ready], deleted_with=self.vm),
            )
        self.vm_name = pulumi.Output.from_input(args.spec.name)
        self.ssh_host = pulumi.Output.from_input(args.ssh.host)
        self.ssh_port = pulumi.Output.from_input(args.ssh.port)
        self.register_outputs(
            {
                "vmName": self.vm_name,
                "sshHost": self.ssh_host,
                "sshPort": self.ssh_port,
                "instanceId": self.instance_id,
                "ready": self.ready.stdout,
            }
        )
