"""Secrets under the real engine: generated per stack by real local
commands, encrypted in state, never in plain text in the state file, in
`pulumi stack export` or in the command output."""

from __future__ import annotations

from harness.paths import stack_config
from harness.workspace import generated_secrets

SECRET_COMMANDS = [
    "hapx-secrets-admin-ssh-key",
    "hapx-secrets-stats-password",
    "hapx-secrets-corosync-authkey",
    "hapx-secrets-hapx-node01-ssh-host-key",
    "hapx-secrets-hapx-node02-ssh-host-key",
]


def test_generated_secrets_never_appear_in_plain_text(workspace):
    stack = "secrets"
    workspace.init_stack(stack, stack_config("dev"))
    # Only the secret generators: the rest of the dev stack needs VirtualBox.
    urn_prefix = f"urn:pulumi:{stack}::hapx::hapx:index:HaproxyCluster$hapx:index:StackSecrets$command:local:Command::"
    components = [
        f"urn:pulumi:{stack}::hapx::hapx:index:HaproxyCluster::hapx",
        f"urn:pulumi:{stack}::hapx::hapx:index:HaproxyCluster$hapx:index:StackSecrets::hapx-secrets",
    ]
    urns = components + [urn_prefix + name for name in SECRET_COMMANDS]
    targets = [arg for urn in urns for arg in ("--target", urn)]
    up = workspace.run("up", "--yes", "--skip-preview", *targets, stack=stack, check=True)

    decrypted = workspace.export(stack, show_secrets=True)
    plaintexts = generated_secrets(decrypted)
    created = {r["urn"].rsplit("::", 1)[-1] for r in decrypted["deployment"]["resources"]}
    assert set(SECRET_COMMANDS) <= created
    # Three private keys (with their lines), the password and the authkey.
    assert sum("PRIVATE KEY" in p for p in plaintexts) == 3
    assert len(plaintexts) > len(SECRET_COMMANDS)

    # The stack's own outputs, read back decrypted, are the secrets found.
    outputs = workspace.outputs(stack, show_secrets=True)
    assert outputs["statsPassword"] in plaintexts
    assert outputs["adminPrivateKey"].strip() in plaintexts

    encrypted_export = workspace.run("stack", "export", "--stack", stack, check=True).stdout
    state_files = "".join(p.read_text() for p in (workspace.root / "state").rglob("*.json"))
    for secret in plaintexts:
        for where, text in (("stack export", encrypted_export), ("state file", state_files), ("up output", up.stdout + up.stderr)):
            assert secret not in text, f"a secret value appears in plain text in the {where}"
