"""Render every file hapx would deploy for a stack, without creating anything.

    python -m tools.render --stack dev --out out/dev

Like `helm template`: reads Pulumi.<stack>.yaml, validates it with the same
parser the program uses, and writes per node user-data, meta-data,
network-config and the hypervisor scripts, plus the cluster-wide
haproxy.cfg, corosync.conf and pacemaker.crm. Secrets (keys, authkey,
stats password, TLS certificates and keys) are never read: placeholders stand in for them, so the
output can be shared and reviewed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from components.config import ConfigError, parse_config  # noqa: E402
from components.drivers import driver_for  # noqa: E402
from components.rendering import NodeSecrets, render_cluster_files, render_node_files  # noqa: E402

PLACEHOLDER_KEY = "<secret: SSH host private key, generated per stack, kept in Pulumi state>"


def placeholder_secrets(node: str, tls_services: tuple[str, ...] = ()) -> NodeSecrets:
    return NodeSecrets(
        admin_public_key="ssh-ed25519 <public: generated per stack> hapx-admin",
        host_private_key=PLACEHOLDER_KEY,
        host_public_key=f"ssh-ed25519 <public: generated per stack> {node}-host",
        authkey_b64="<secret: hapx:corosyncAuthkey or generated per stack>",
        stats_password="<secret: hapx:statsPassword or generated per stack>",
        tls_pems=tuple(
            (name, f"<secret: {name}'s certificate and private key, from hapx:tlsCertificates or generated per stack>")
            for name in tls_services
        ),
    )


def load_stack_config(stack: str, root: Path = REPO) -> tuple[dict, set[str]]:
    """Pulumi.<stack>.yaml's config without its encrypted values, and the keys stored encrypted."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise SystemExit(f"render: no {path.name}; stacks here: {', '.join(p.stem.split('.', 1)[1] for p in root.glob('Pulumi.*.yaml'))}")
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    # Encrypted values are never decrypted here; placeholders replace them. Their
    # keys go to the parser, which refuses a secret key stored in plain text.
    encrypted = {k for k, v in config.items() if isinstance(v, dict) and set(v) == {"secure"}}
    return {k: v for k, v in config.items() if k not in encrypted}, encrypted


def render(stack: str, out: Path, root: Path = REPO) -> list[Path]:
    """Write the stack's files under out; root holds Pulumi.<stack>.yaml (tests use their own)."""
    cfg = parse_config(*load_stack_config(stack, root))
    driver = driver_for(cfg, stack)
    cluster = render_cluster_files(cfg, stack, driver.fence_plan())
    written = []

    def write(rel: str, text: str) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)

    write("haproxy.cfg", cluster.haproxy_cfg)
    write("corosync.conf", cluster.corosync_conf)
    write("pacemaker.crm", cluster.crm_script)
    for index, node in enumerate(cfg.nodes):
        spec = driver.vm_spec(node, index)
        secrets = placeholder_secrets(node.name, tuple(s.name for s in cfg.all_services if s.terminate_tls))
        files = render_node_files(cfg, stack, node, spec.network, secrets, cluster)
        write(f"{node.name}/user-data", files.user_data)
        write(f"{node.name}/meta-data", files.meta_data)
        write(f"{node.name}/network-config", files.network_config)
        scripts = driver.vm_scripts(spec, driver.seed_path(node))
        write(f"{node.name}/{driver.kind}-vm-create.sh", scripts.create)
        write(f"{node.name}/{driver.kind}-vm-delete.sh", scripts.delete)
        write(f"{node.name}/{driver.kind}-vm-update.sh", scripts.update)
        if scripts.settled:
            write(f"{node.name}/{driver.kind}-vm-settled.sh", scripts.settled)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the files hapx deploys, without creating anything.")
    parser.add_argument("--stack", required=True, help="stack name (reads Pulumi.<stack>.yaml)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    args = parser.parse_args(argv)
    try:
        written = render(args.stack, args.out)
    except ConfigError as error:
        print(f"render: invalid stack config: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
