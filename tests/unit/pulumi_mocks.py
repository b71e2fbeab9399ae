"""Pulumi mocks shared by the component tests: every registration recorded
with its inputs, parent and dependencies, so tests assert on what the
program really asked for. Importing this module installs the mocks; import
it before any module of the program.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pulumi
from pulumi.runtime import rpc

# A made-up key pair in ssh-keygen's output shape (not a real key).
FAKE_CA_KEY = "-----BEGIN PRIVATE KEY-----\nfake-ca-key\n-----END PRIVATE KEY-----\n"
FAKE_CA_CERT = "-----BEGIN CERTIFICATE-----\nfake-ca\n-----END CERTIFICATE-----\n"
FAKE_SERVER_KEY = "-----BEGIN PRIVATE KEY-----\nfake-server-key\n-----END PRIVATE KEY-----\n"
FAKE_KEYPAIR = (Path(__file__).resolve().parent.parent / "fixtures" / "fake_keypair.txt").read_text()


@dataclass
class Registration:
    type: str
    name: str
    inputs: dict
    parent: str
    depends_on: list = field(default_factory=list)
    urn: str = ""


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: dict[str, Registration] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ == "command:local:Command":
            create = args.inputs.get("create", "")
            if "ssh-keygen" in create:
                state["stdout"] = FAKE_KEYPAIR
            elif "gen_secret.py password" in create:
                state["stdout"] = "p4ssw0rdp4ssw0rdp4ssw0rdp4ssw0rd"
            elif "gen_secret.py authkey" in create:
                state["stdout"] = "a2V5a2V5a2V5"
            elif "gen_secret.py tls-ca" in create:  # made-up PEM blocks in tls-ca's output shape
                state["stdout"] = FAKE_CA_KEY + FAKE_CA_CERT
            elif "gen_secret.py tls-server" in create:
                state["stdout"] = f"-----BEGIN CERTIFICATE-----\nserver-of-{args.name}\n-----END CERTIFICATE-----\n" + FAKE_CA_CERT + FAKE_SERVER_KEY
            elif "clonevm" in create:
                state["stdout"] = f"vbox-uuid=uuid-of-{args.name}\n"
            else:
                state["stdout"] = "ok\n"
            state["stderr"] = ""
        if args.typ == "command:remote:Command":
            state["stdout"] = "vip-node=hapx-node01\n" if args.name.endswith("vip-placed") else "applied sha256=0123456789abcdef\n"
            state["stderr"] = ""
        urn = f"urn:pulumi:test::hapx::{args.typ}::{args.name}"
        self.resources[args.name] = Registration(
            type=args.typ,
            name=args.name,
            inputs=dict(args.inputs),
            parent=getattr(args, "parent", "") or "",
            urn=urn,
        )
        return [f"{args.name}-id", state]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


MOCKS = RecordingMocks()
pulumi.runtime.set_mocks(MOCKS, project="hapx", stack="test", preview=False)

# MockResourceArgs carries neither parent nor dependencies: record them from
# the requests the mock monitor receives.
_monitor = pulumi.runtime.settings.get_monitor()
_register = _monitor.RegisterResource


def _recording_register(request):
    response = _register(request)
    if request.name in MOCKS.resources:
        reg = MOCKS.resources[request.name]
        reg.parent = request.parent
        reg.depends_on = list(request.dependencies)
        reg.urn = response.urn
    return response


_monitor.RegisterResource = _recording_register


def unsecret(value):
    """Mock inputs keep secrets wrapped in Pulumi's secret sentinel."""
    if isinstance(value, dict) and "value" in value and len(value) == 2:
        return value["value"]
    return value


def is_secret_input(value) -> bool:
    """A mock input that the program marked secret (Pulumi's secret signature)."""
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def parent_name(reg: Registration) -> str:
    return reg.parent.rsplit("::", 1)[-1] if reg.parent else ""


def depends(name: str, on: str) -> bool:
    """True if `name` was registered with a dependency on `on` (directly)."""
    target = MOCKS.resources[on].urn
    return target in MOCKS.resources[name].depends_on
