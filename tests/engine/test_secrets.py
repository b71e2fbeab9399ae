"""Secrets under the real engine: generated per stack by real local
commands, encrypted in state, never in plain text in the state file, in
`pulumi stack export` or in the command output."""

from __future__ import annotations

from tests.conftest import stack_config
from tests.pulumi_cli import secret_plaintexts

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
    plaintexts = secret_plaintexts(decrypted)
    created = {r["urn"].rsplit("::", 1)[-1] for r in decrypted["deployment"]["resources"]}
    assert set(SECRET_COMMANDS) <= created
    # Keys, password and authkey: at least one secret per generator.
    assert any("PRIVATE KEY" in p for p in plaintexts)
    assert len(plaintexts) >= len(SECRET_COMMANDS)

    # The stack's own outputs, read back decrypted, are among the secrets found.
    outputs = workspace.outputs(stack, show_secrets=True)
    for key in ("statsPassword", "adminPrivateKey"):
        assert outputs.get(key) and outputs[key] in plaintexts, f"{key} is not stored as a secret"

    encrypted_export = workspace.run("stack", "export", "--stack", stack, check=True).stdout
    state_files = "".join(p.read_text() for p in (workspace.root / "state").rglob("*.json"))
    for secret in plaintexts:
        for where, text in (("stack export", encrypted_export), ("state file", state_files), ("up output", up.stdout + up.stderr)):
            assert secret not in text, f"a secret value appears in plain text in the {where}"
    # The lines of a private key must not leak one by one either.
    key_lines = [line for p in plaintexts if "PRIVATE KEY" in p for line in p.splitlines()[1:-1]]
    assert key_lines and not any(line in encrypted_export or line in state_files for line in key_lines)
