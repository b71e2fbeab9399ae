"""StackSecrets: the per-stack keys and passwords, generated once and kept secret.

Each value is made by a local command whose stdout is a Pulumi secret and
whose output is never logged, so it exists only encrypted in state. A value
set in stack config (`pulumi config set --secret`) is used instead of a
generated one. Rotating a generated value: `pulumi up --replace <urn>`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Optional

import pulumi
from pulumi_command import local

from .fencing import FenceCredential

# ssh-keygen is on every Linux and macOS host; the key never touches a file
# outside a private temp dir that is removed at once.
SSH_KEYGEN = (
    'set -eu; d=$(mktemp -d); trap \'rm -rf "$d"\' EXIT; '
    'ssh-keygen -q -t ed25519 -N "" -C {comment} -f "$d/key"; cat "$d/key" "$d/key.pub"'
)
GEN_SECRET = ".venv/bin/python tools/gen_secret.py {kind}"


def split_keypair(stdout: str) -> tuple[str, str]:
    """ssh-keygen output as printed above: the private key, then the public key line."""
    private, marker, rest = stdout.partition("-----END OPENSSH PRIVATE KEY-----")
    if not marker or not rest.strip().startswith("ssh-ed25519 "):
        raise ValueError("expected an OpenSSH private key followed by its ssh-ed25519 public key")
    return private + marker + "\n", rest.strip()


@dataclass
class StackSecretsArgs:
    node_names: list[str]
    # Values from stack config; None means generate one.
    stats_password: Optional[pulumi.Input[str]] = None
    corosync_authkey: Optional[pulumi.Input[str]] = None
    # Which fence credential the stack needs (the driver's fence plan says);
    # None: fencing is off.
    fence_credential: Optional[FenceCredential] = None
    # TLS-terminating services that get a generated certificate, with its
    # subject alternative names (IP:..., DNS:...); any makes a per-stack CA.
    generated_certificates: dict[str, list[str]] = field(default_factory=dict)
    stack: str = "stack"


def split_ca(stdout: str) -> str:
    """The CA certificate from tls-ca's output (its private key, then its certificate)."""
    begin = stdout.find("-----BEGIN CERTIFICATE-----")
    if begin < 0:
        raise ValueError("expected the CA's private key followed by its certificate")
    return stdout[begin:].strip() + "\n"


class SshKeyPair:
    """A generated ed25519 key pair: private key secret, public key plain."""

    def __init__(self, command: local.Command):
        pair = command.stdout.apply(split_keypair)
        self.private_key: pulumi.Output[str] = pulumi.Output.secret(pair.apply(lambda p: p[0]))
        # A public key is not a secret; unsecret it so it can be exported and
        # shown in diffs.
        self.public_key: pulumi.Output[str] = pulumi.Output.unsecret(pair.apply(lambda p: p[1]))


class StackSecrets(pulumi.ComponentResource):
    admin_key: SshKeyPair
    host_keys: dict[str, SshKeyPair]
    stats_password: pulumi.Output[str]
    corosync_authkey: pulumi.Output[str]
    # The secret the nodes' fence agent presents (a password, or an SSH
    # private key); None when fencing is off.
    fence_secret: Optional[pulumi.Output[str]]
    # fence_vbox's public key, for the VirtualBox host's authorized_keys.
    fence_public_key: Optional[pulumi.Output[str]]
    # The per-stack CA's certificate (public), for clients; None if nothing is generated.
    tls_ca_certificate: Optional[pulumi.Output[str]]
    # Generated haproxy PEM files (certificate, CA, private key) by service name.
    tls_pems: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: StackSecretsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hapx:index:StackSecrets", name, None, opts)
        self.admin_key = SshKeyPair(self._generate(f"{name}-admin-ssh-key", SSH_KEYGEN.format(comment="hapx-admin")))
        self.host_keys = {
            node: SshKeyPair(self._generate(f"{name}-{node}-ssh-host-key", SSH_KEYGEN.format(comment=f"{node}-host")))
            for node in args.node_names
        }
        if args.stats_password is not None:
            self.stats_password = pulumi.Output.secret(args.stats_password)
        else:
            self.stats_password = pulumi.Output.secret(
                self._generate(f"{name}-stats-password", GEN_SECRET.format(kind="password")).stdout
            )
        if args.corosync_authkey is not None:
            self.corosync_authkey = pulumi.Output.secret(args.corosync_authkey)
        else:
            self.corosync_authkey = pulumi.Output.secret(
                self._generate(f"{name}-corosync-authkey", GEN_SECRET.format(kind="authkey")).stdout
            )
        self.fence_secret = None
        self.fence_public_key = None
        if args.fence_credential is FenceCredential.PASSWORD:
            self.fence_secret = pulumi.Output.secret(
                self._generate(f"{name}-fence-password", GEN_SECRET.format(kind="password")).stdout
            )
        elif args.fence_credential is FenceCredential.SSH_KEY:
            fence_key = SshKeyPair(self._generate(f"{name}-fence-ssh-key", SSH_KEYGEN.format(comment="hapx-fence")))
            self.fence_secret = fence_key.private_key
            self.fence_public_key = fence_key.public_key
        self.tls_ca_certificate, self.tls_pems = None, {}
        if args.generated_certificates:
            ca = self._generate(f"{name}-tls-ca", GEN_SECRET.format(kind=f"tls-ca {shlex.quote(args.stack)}"))
            self.tls_ca_certificate = pulumi.Output.unsecret(ca.stdout.apply(split_ca))
            for service, sans in args.generated_certificates.items():
                kind = " ".join(shlex.quote(part) for part in ("tls-server", service, *sans))
                # The CA's key reaches the command on stdin only; its output is the secret PEM.
                command = self._generate(f"{name}-{service}-tls-certificate", GEN_SECRET.format(kind=kind), stdin=pulumi.Output.secret(ca.stdout))
                self.tls_pems[service] = pulumi.Output.secret(command.stdout)
        self.register_outputs(
            {
                "adminPublicKey": self.admin_key.public_key,
                "adminPrivateKey": self.admin_key.private_key,
                "hostPublicKeys": {n: k.public_key for n, k in self.host_keys.items()},
                "statsPassword": self.stats_password,
                "corosyncAuthkey": self.corosync_authkey,
                "fenceSecret": self.fence_secret,
                "fencePublicKey": self.fence_public_key,
                "tlsCaCertificate": self.tls_ca_certificate,
                "tlsPems": self.tls_pems,
            }
        )

    def _generate(self, name: str, create: str, stdin: Optional[pulumi.Input[str]] = None) -> local.Command:
        return local.Command(
            name,
            create=create,
            stdin=stdin,
            logging=local.Logging.NONE,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["stdout", "stderr"]),
        )
