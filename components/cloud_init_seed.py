"""CloudInitSeed: one node's NoCloud seed ISO (label `cidata`).

The ISO lives at a stable path per stack and node and is rewritten in place
(atomically) whenever its content changes. Its content is secret (host key,
corosync authkey, stats password), so it travels to tools/seed_iso.py on
stdin, never on a command line, and the ISO file is mode 0600.

What a content change does to the VM is decided by the VM, from
`identity_sha`: see docs/architecture.md ("What a config change does").
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import local

from .rendering import NodeFiles

SEED_TOOL = ".venv/bin/python tools/seed_iso.py"


@dataclass
class CloudInitSeedArgs:
    # Rendered NoCloud files; secret because user-data holds keys.
    files: pulumi.Input[NodeFiles]
    iso_path: str


class CloudInitSeed(pulumi.ComponentResource):
    iso_path: pulumi.Output[str]
    identity_sha: pulumi.Output[str]

    def __init__(self, name: str, args: CloudInitSeedArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hapx:index:CloudInitSeed", name, None, opts)
        files = pulumi.Output.from_input(args.files)
        payload = pulumi.Output.secret(files.apply(lambda f: f.seed_payload()))
        self.iso = local.Command(
            f"{name}-iso",
            create=f"{SEED_TOOL} --out {shlex.quote(args.iso_path)}",
            delete=f"{SEED_TOOL} --delete {shlex.quote(args.iso_path)}",
            # A payload change updates the ISO in place (stdin is an input),
            # it does not replace it: the path stays attached to the VM.
            stdin=payload,
            logging=local.Logging.STDERR,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["stderr"]),
        )
        self.iso_path = self.iso.stdout.apply(lambda _: args.iso_path)
        self.identity_sha = pulumi.Output.secret(files.apply(lambda f: f.identity_sha))
        self.register_outputs(
            {"isoPath": self.iso_path, "identitySha": self.identity_sha}
        )

