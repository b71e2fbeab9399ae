"""QemuFenceHost: the lab host's side of fencing, one per QEMU stack.

A node fences a peer by connecting to the fence address of its user-mode
network; QEMU runs tools/qemu_fence_host.py for each such connection
(a guestfwd rule in the VM's create script), and that helper drives the
peer's QEMU monitor. This component gives the helper the stack's fence
password: a root-only file in the stack's lab directory, written from a
Pulumi secret on stdin and removed on destroy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi
from pulumi_command import local

from ...fencing import host_password_path
from ...rendering import render_template

# Run by QEMU (guestfwd) for each fence request; see the module docstring.
HELPER = str(Path(__file__).resolve().parents[3] / "tools" / "qemu_fence_host.py")


@dataclass
class QemuFenceHostArgs:
    stack_dir: str
    password: pulumi.Input[str]


class QemuFenceHost(pulumi.ComponentResource):
    secret_file: pulumi.Output[str]

    def __init__(self, name: str, args: QemuFenceHostArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hapx:index:QemuFenceHost", name, None, opts)
        path = host_password_path(args.stack_dir)
        self.secret = local.Command(
            f"{name}-secret",
            create=render_template("qemu/fence-secret-install.sh.j2", path=path),
            delete=render_template("qemu/fence-secret-remove.sh.j2", path=path),
            stdin=pulumi.Output.secret(args.password),
            interpreter=["/bin/sh", "-c"],
            logging=local.Logging.STDERR,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["stdout", "stderr"]),
        )
        self.secret_file = self.secret.stdout.apply(lambda _: path)
        self.register_outputs({"secretFile": self.secret_file})
