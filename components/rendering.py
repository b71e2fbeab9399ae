"""Render every file hapx generates, from typed config to text.

Pure functions: no Pulumi resources, no I/O beyond reading templates. The
Pulumi program calls them inside `apply` once secrets are known; `make render`
calls them with placeholders instead of secrets.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import jinja2

from .config import CLUSTER_NIC, MANAGEMENT_NIC, HapxConfig, Hypervisor, NodeConfig

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
STATS_ENV_PATH = "/etc/haproxy/hapx-stats.env"
# haproxy's monitor-uri on the stats listener (see templates/node/ocf-haproxy).
HEALTH_PATH = "/hapx-health"
# Files hapx installs on every node, from templates/node/.
OCF_HAPROXY_PATH = "/usr/lib/ocf/resource.d/hapx/haproxy"

# Pacemaker ids of what hapx adds to the CIB (and removes on destroy).
VIP_ID = "hapx-vip"
HAPROXY_ID = "hapx-haproxy"
HAPROXY_CLONE_ID = "hapx-haproxy-clone"
COLOCATION_ID = "hapx-vip-with-haproxy"
ORDER_ID = "hapx-haproxy-before-vip"
FENCE_DEVICE_ID = "hapx-fence"
FENCE_HEURISTICS_ID = "hapx-fence-ping"
FENCE_ORDER_ID = "hapx-vip-before-fence"
# Constraints first: the remove script deletes in this order.
CRM_IDS = (ORDER_ID, COLOCATION_ID, VIP_ID, HAPROXY_CLONE_ID, HAPROXY_ID)
# Everything hapx may have put in the CIB; an apply removes what the current
# config no longer has (fencing turned off, say).
ALL_CRM_IDS = (FENCE_ORDER_ID,) + CRM_IDS + (FENCE_HEURISTICS_ID, FENCE_DEVICE_ID)

# Fencing files on the nodes (root only).
FENCE_SECRET_PATH = "/etc/hapx/fence-secret"
FENCE_VBOX_KEY_PATH = "/etc/hapx/fence-vbox-key"
# Where a QEMU lab node reaches the host's fence helper: an address of its
# user-mode network that QEMU forwards to the helper (guestfwd).
QEMU_FENCE_ADDRESS = "10.0.2.100"
QEMU_FENCE_PORT = 1229

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)
# Shell-quote a value in script templates.
_env.filters["q"] = lambda value: shlex.quote(str(value))


def render_template(template: str, /, **values) -> str:
    return _env.get_template(template).render(**values)


def sha256_text(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class GuestNic:
    """One guest NIC as cloud-init sees it: matched by MAC, renamed."""

    name: str
    mac: str
    addresses: tuple[str, ...] = ()  # empty means DHCP


@dataclass(frozen=True)
class NodeNetwork:
    management: GuestNic
    cluster: GuestNic


@dataclass(frozen=True)
class NodeSecrets:
    """Secret and per-stack values a node's seed needs (placeholders when rendering offline)."""

    admin_public_key: str
    host_private_key: str
    host_public_key: str
    authkey_b64: str
    stats_password: str


@dataclass(frozen=True)
class FencePlan:
    """The STONITH resources for the crm script (see templates/pacemaker.crm.j2)."""

    agent: str
    params: str  # crm `params` text, no secrets (they stay in files on the nodes)
    # The secret the agent presents: "password" (QEMU lab helper) or
    # "ssh-key" (fence_vbox to the host); installed on each node at this path.
    credential: str
    credential_path: str
    # hapx's own agent, installed on each node from templates/node/ (None:
    # the agent comes with fence-agents).
    agent_template: Optional[str]
    nodes: tuple[str, ...]
    host_map: str  # node:plug;... (the VM name the agent powers off)
    # Targets for a fence_heuristics_ping level in front of the device
    # (empty: no such level; hapx's QEMU agent checks them itself).
    ping_targets: tuple[str, ...]
    timeout_s: int
    device_id: str = FENCE_DEVICE_ID
    heuristics_id: str = FENCE_HEURISTICS_ID
    order_id: str = FENCE_ORDER_ID

    @property
    def crm_ids(self) -> tuple[str, ...]:
        return (FENCE_ORDER_ID, FENCE_DEVICE_ID) + ((FENCE_HEURISTICS_ID,) if self.ping_targets else ())


def fence_plan(cfg: HapxConfig) -> Optional[FencePlan]:
    if not cfg.fencing.enabled:
        return None
    targets = cfg.fencing.ping_targets
    if cfg.hypervisor is Hypervisor.QEMU:
        agent = "fence_hapx_qemu"
        credential, credential_path, agent_template = "password", FENCE_SECRET_PATH, "node/fence_hapx_qemu"
        params = f'ip={QEMU_FENCE_ADDRESS} ipport={QEMU_FENCE_PORT} password_script="cat {FENCE_SECRET_PATH}"'
        if targets:
            # The agent checks them itself, in the same run as the reset.
            params += f' ping_targets="{",".join(targets)}"'
        level_targets: tuple[str, ...] = ()
    else:
        agent = "fence_vbox"
        credential, credential_path, agent_template = "ssh-key", FENCE_VBOX_KEY_PATH, None
        params = f"ip={cfg.fencing.host_address} username={cfg.fencing.host_user} identity_file={FENCE_VBOX_KEY_PATH}"
        level_targets = targets
    return FencePlan(
        agent=agent,
        params=params,
        credential=credential,
        credential_path=credential_path,
        agent_template=agent_template,
        nodes=tuple(n.name for n in cfg.nodes),
        # VM names are node names for both drivers (HypervisorDriver.vm_name).
        host_map=";".join(f"{n.name}:{n.name}" for n in cfg.nodes),
        ping_targets=level_targets,
        # Heuristics (1 s) plus the power-off; generous for a busy host.
        timeout_s=60,
    )


def crm_ids(cfg: HapxConfig) -> tuple[str, ...]:
    """Ids the crm script of this config puts in the CIB."""
    plan = fence_plan(cfg)
    return CRM_IDS + (plan.crm_ids if plan else ())


@dataclass(frozen=True)
class ClusterFiles:
    """Files that are the same on every node."""

    corosync_conf: str
    haproxy_cfg: str
    crm_script: str


@dataclass(frozen=True)
class NodeFiles:
    user_data: str
    meta_data: str
    network_config: str
    stats_env: str
    # Hash of what makes the node what it is (name, network, keys, cluster
    # membership). A change here replaces the VM; anything else is applied
    # to the running node over SSH.
    identity_sha: str

    def seed_payload(self) -> str:
        """The NoCloud files as JSON, the input of tools/seed_iso.py."""
        return json.dumps(
            {"user-data": self.user_data, "meta-data": self.meta_data, "network-config": self.network_config},
            sort_keys=True,
        )


def _is_dns_name(address: str) -> bool:
    try:
        ipaddress.IPv4Address(address)
        return False
    except ValueError:
        return True


def render_cluster_files(cfg: HapxConfig, stack: str) -> ClusterFiles:
    corosync_conf = render_template(
        "corosync.conf.j2",
        stack=stack,
        cluster_name=cfg.cluster_name,
        token_ms=cfg.corosync.token_ms,
        consensus_ms=cfg.corosync.consensus_ms,
        nodes=cfg.nodes,
    )
    backends = [
        {"name": b.name, "address": b.address, "port": b.port, "is_dns": _is_dns_name(b.address)} for b in cfg.backends
    ]
    haproxy_cfg = render_template(
        "haproxy.cfg.j2",
        stack=stack,
        stats_env_path=STATS_ENV_PATH,
        uses_dns=any(b["is_dns"] for b in backends),
        nameservers=cfg.haproxy.nameservers,
        frontend_name="kubernetes-apiserver-https",
        backend_name="kubernetes-master-nodes",
        frontend_port=cfg.haproxy.frontend_port,
        stats_port=cfg.haproxy.stats_port,
        health_path=HEALTH_PATH,
        check_interval_ms=cfg.haproxy.check_interval_ms,
        check_fall=cfg.haproxy.check_fall,
        check_rise=cfg.haproxy.check_rise,
        backends=backends,
    )
    pm = cfg.pacemaker
    crm_script = render_template(
        "pacemaker.crm.j2",
        stack=stack,
        cluster_name=cfg.cluster_name,
        fencing=fence_plan(cfg),
        stickiness=pm.stickiness,
        migration_threshold=pm.migration_threshold,
        failure_timeout_s=pm.failure_timeout_s,
        monitor_interval_s=pm.monitor_interval_s,
        monitor_timeout_s=pm.monitor_timeout_s,
        haproxy_check_url=f"http://127.0.0.1:{cfg.haproxy.stats_port}{HEALTH_PATH}",
        haproxy_restart=pm.haproxy_restart.value,
        vip=cfg.vip,
        prefix_length=cfg.vip_prefix_length,
        broadcast=cfg.vip_broadcast,
        vip_interface=cfg.vip_interface,
        vip_id=VIP_ID,
        haproxy_id=HAPROXY_ID,
        haproxy_clone_id=HAPROXY_CLONE_ID,
        haproxy_instances=len(cfg.nodes) if pm.haproxy_on_all_nodes else 1,
        colocation_id=COLOCATION_ID,
        order_id=ORDER_ID,
    )
    return ClusterFiles(corosync_conf=corosync_conf, haproxy_cfg=haproxy_cfg, crm_script=crm_script)


@dataclass(frozen=True)
class NodeAgentFile:
    path: str
    content: str


def node_agent_files(cfg: HapxConfig) -> tuple[NodeAgentFile, ...]:
    """The resource and fence agents hapx installs on every node."""
    files = [NodeAgentFile(OCF_HAPROXY_PATH, (TEMPLATE_DIR / "node" / "ocf-haproxy").read_text())]
    plan = fence_plan(cfg)
    if plan is not None and plan.agent_template is not None:
        files.append(NodeAgentFile(f"/usr/sbin/{plan.agent}", (TEMPLATE_DIR / plan.agent_template).read_text()))
    return tuple(files)


def render_stats_env(user: str, password: str) -> str:
    # systemd EnvironmentFile syntax; the password is generated from a safe
    # alphabet (or validated) so it needs no quoting.
    return f"HAPX_STATS_USER={user}\nHAPX_STATS_PASSWORD={password}\n"


def render_node_files(
    cfg: HapxConfig,
    stack: str,
    node: NodeConfig,
    network: NodeNetwork,
    secrets: NodeSecrets,
    cluster: Optional[ClusterFiles] = None,
) -> NodeFiles:
    cluster = cluster or render_cluster_files(cfg, stack)
    prefix = cfg.cluster_network.prefixlen
    network_config = render_template(
        "network-config.yaml.j2",
        management=network.management,
        cluster=network.cluster,
        cluster_vlan=cfg.cluster_vlan,
        dhcp_vlan=cfg.dhcp_vlan,
        cluster_address=f"{node.cluster_address}/{prefix}",
    )
    identity_sha = sha256_text(
        stack,
        node.name,
        cfg.domain,
        cfg.admin_user,
        network_config,
        secrets.admin_public_key,
        secrets.host_public_key,
        secrets.host_private_key,
        secrets.authkey_b64,
        cluster.corosync_conf,
    )
    meta_data = render_template(
        "meta-data.yaml.j2",
        instance_id=f"{node.name}-{identity_sha[:16]}",
        hostname=node.name,
    )
    stats_env = render_stats_env(cfg.haproxy.stats_user, secrets.stats_password)
    user_data = render_template(
        "user-data.yaml.j2",
        stack=stack,
        hostname=node.name,
        domain=cfg.domain,
        admin_user=cfg.admin_user,
        admin_public_key=secrets.admin_public_key.strip(),
        host_private_key=secrets.host_private_key.strip(),
        host_public_key=secrets.host_public_key.strip(),
        authkey_b64=secrets.authkey_b64,
        corosync_conf=cluster.corosync_conf,
        haproxy_cfg=cluster.haproxy_cfg,
        stats_env=stats_env,
        stats_env_path=STATS_ENV_PATH,
    )
    return NodeFiles(
        user_data=user_data,
        meta_data=meta_data,
        network_config=network_config,
        stats_env=stats_env,
        identity_sha=identity_sha,
    )


__all__ = [
    "CLUSTER_NIC",
    "MANAGEMENT_NIC",
    "ClusterFiles",
    "GuestNic",
    "NodeFiles",
    "NodeNetwork",
    "NodeSecrets",
    "render_cluster_files",
    "render_node_files",
    "render_stats_env",
    "sha256_text",
]
