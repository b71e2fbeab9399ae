"""Render every file hapx generates, from typed config to text.

Pure functions: no Pulumi resources, no I/O beyond reading templates. The
Pulumi program calls them inside `apply` once secrets are known; `make render`
calls them with placeholders instead of secrets.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import jinja2

from .config import CLUSTER_NIC, MANAGEMENT_NIC, HapxConfig, NodeConfig, VipAgent
from .fencing import FENCE_DEVICE_ID, FENCE_HEURISTICS_ID, FENCE_ORDER_ID, FencePlan

from .config import CLUSTER_EXPORTER_PORT, Persistence, ServiceConfig  # noqa: E402  (apart: services)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
STATS_ENV_PATH = "/etc/haproxy/hapx-stats.env"
HAPROXY_CFG_PATH = "/etc/haproxy/haproxy.cfg"
# haproxy's monitor-uri on the stats listener (see templates/node/ocf-haproxy).
HEALTH_PATH = "/hapx-health"
# Prometheus metrics on the stats listener (same credentials as the stats page):
# HAProxy's own exporter, and the cluster's, relayed from loopback.
METRICS_PATH = "/metrics"
CLUSTER_METRICS_PATH = "/cluster-metrics"
STATS_USERLIST = "hapx-stats"
# The cluster exporter's arguments (its Debian unit reads ARGS from here): loopback only, haproxy relays it.
CLUSTER_EXPORTER_ENV_PATH = "/etc/sysconfig/prometheus-ha_cluster_exporter"
# The peers section that shares stick tables between the nodes.
PEERS_SECTION = "hapx"
# A TLS-terminating service's certificate chain and private key, one PEM per service (root only).
CERT_DIR = "/etc/haproxy/certs"
# Files hapx installs on every node, from templates/node/.
OCF_HAPROXY_PATH = "/usr/lib/ocf/resource.d/hapx/haproxy"
OCF_VIP_PATH = "/usr/lib/ocf/resource.d/hapx/vip"
# The VIP's resource agent in the CIB, per hapx:pacemaker.vipAgent.
VIP_AGENTS = {VipAgent.HAPX: "ocf:hapx:vip", VipAgent.IPADDR2: "ocf:heartbeat:IPaddr2"}

# Pacemaker ids of what hapx adds to the CIB (and removes on destroy).
VIP_ID = "hapx-vip"
HAPROXY_ID = "hapx-haproxy"
HAPROXY_CLONE_ID = "hapx-haproxy-clone"
COLOCATION_ID = "hapx-vip-with-haproxy"
ORDER_ID = "hapx-haproxy-before-vip"
# With hapx:pacemaker.vipAvoidsDc: the VIP's rule against the DC.
VIP_AVOIDS_DC_ID = "hapx-vip-avoids-dc"
# The transient node attribute a node gets once it has been a cluster member
# for hapx:pacemaker.vipHandoverAfterS (templates/node/hapx-mark-settled); the
# rule's bonus goes only to nodes that have it.
SETTLED_ATTRIBUTE = "hapx-settled"
# Constraints first: the remove script deletes in this order.
CRM_IDS = (ORDER_ID, COLOCATION_ID, VIP_ID, HAPROXY_CLONE_ID, HAPROXY_ID)
# Everything hapx may have put in the CIB; an apply removes what the current
# config no longer has (fencing turned off, say).
ALL_CRM_IDS = (FENCE_ORDER_ID, VIP_AVOIDS_DC_ID) + CRM_IDS + (FENCE_HEURISTICS_ID, FENCE_DEVICE_ID)

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
    # TLS-terminating services' PEM (certificate chain, then private key), by service name.
    tls_pems: tuple[tuple[str, str], ...] = ()


def crm_ids(fencing: Optional[FencePlan], vip_avoids_dc: bool) -> tuple[str, ...]:
    """Ids the crm script puts in the CIB, with this fence plan (None: fencing off)
    and hapx:pacemaker.vipAvoidsDc."""
    return ((VIP_AVOIDS_DC_ID,) if vip_avoids_dc else ()) + CRM_IDS + (fencing.crm_ids if fencing else ())


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
    # Hash of what makes the node what it is (name, network, keys, the
    # cluster it can join: name, authkey, its corosync node id). A change
    # here replaces the VM; anything else is applied to the running node over
    # SSH. Not corosync.conf's nodelist or timers: a node added or removed, or
    # a new token, is pushed to the running nodes and reloaded
    # (components/cluster_membership.py), so scaling replaces nothing.
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


def cert_path(service: str) -> str:
    return f"{CERT_DIR}/{service}.pem"


def tls_services(cfg: HapxConfig) -> tuple[ServiceConfig, ...]:
    """The services that terminate TLS (each needs a certificate on every node)."""
    return tuple(s for s in cfg.all_services if s.terminate_tls)


def _service_values(service: ServiceConfig) -> dict:
    return dict(
        frontend_name=service.frontend_name,
        backend_name=service.backend_name,
        ports=service.ports,
        mode=service.mode.value,
        balance=service.balance.value,
        terminate_tls=service.terminate_tls,
        cert_path=cert_path(service.name),
        backend_tls=service.backend_tls,
        check=dict(service.check.model_dump(), type=service.check.type.value),
        # A TLS check on a plain server; a server with `ssl` checks over TLS already.
        check_tls=service.check.tls and not service.backend_tls,
        persistence=service.persistence is Persistence.SOURCE,
        persistence_expire_s=service.persistence_expire_s,
        backends=[
            dict(b.model_dump(include={"name", "address", "port", "weight", "backup"}), is_dns=_is_dns_name(b.address))
            for b in service.backends
        ],
    )


def render_haproxy_cfg(cfg: HapxConfig, stack: str) -> str:
    services = [_service_values(s) for s in cfg.all_services]
    shares_tables = any(s["persistence"] for s in services)
    return render_template(
        "haproxy.cfg.j2",
        stack=stack,
        stats_env_path=STATS_ENV_PATH,
        uses_dns=any(b["is_dns"] for s in services for b in s["backends"]),
        nameservers=cfg.haproxy.nameservers,
        any_tls=any(s["terminate_tls"] for s in services),
        cert_dir=CERT_DIR,
        peers=[{"name": n.name, "address": n.cluster_address} for n in cfg.nodes] if shares_tables else [],
        peers_section=PEERS_SECTION,
        peers_port=cfg.haproxy.peers_port,
        services=services,
        stats_port=cfg.haproxy.stats_port,
        stats_userlist=STATS_USERLIST,
        health_path=HEALTH_PATH,
        metrics_path=METRICS_PATH,
        cluster_metrics_path=CLUSTER_METRICS_PATH,
        cluster_exporter_port=CLUSTER_EXPORTER_PORT,
        check_interval_ms=cfg.haproxy.check_interval_ms,
        check_fall=cfg.haproxy.check_fall,
        check_rise=cfg.haproxy.check_rise,
    )


def render_cluster_files(cfg: HapxConfig, stack: str, fencing: Optional[FencePlan]) -> ClusterFiles:
    """The files every node shares; `fencing` is the driver's fence plan (None: off)."""
    corosync_conf = render_template(
        "corosync.conf.j2",
        stack=stack,
        cluster_name=cfg.cluster_name,
        token_ms=cfg.corosync.token_ms,
        consensus_ms=cfg.corosync.consensus_ms,
        nodes=cfg.nodes,
    )
    haproxy_cfg = render_haproxy_cfg(cfg, stack)
    pm = cfg.pacemaker
    crm_script = render_template(
        "pacemaker.crm.j2",
        stack=stack,
        cluster_name=cfg.cluster_name,
        fencing=fencing,
        stickiness=pm.stickiness,
        migration_threshold=pm.migration_threshold,
        failure_timeout_s=pm.failure_timeout_s,
        transition_delay_ms=pm.transition_delay_ms,
        monitor_interval_s=pm.monitor_interval_s,
        monitor_timeout_s=pm.monitor_timeout_s,
        haproxy_check_url=f"http://127.0.0.1:{cfg.haproxy.stats_port}{HEALTH_PATH}",
        haproxy_restart=pm.haproxy_restart.value,
        vip=cfg.vip,
        vip_agent=VIP_AGENTS[pm.vip_agent],
        prefix_length=cfg.vip_prefix_length,
        broadcast=cfg.vip_broadcast,
        vip_interface=cfg.vip_interface,
        vip_id=VIP_ID,
        haproxy_id=HAPROXY_ID,
        haproxy_clone_id=HAPROXY_CLONE_ID,
        haproxy_on_all_nodes=pm.haproxy_on_all_nodes,
        # hapx's agent can hand the address over (migrate_to/migrate_from);
        # IPaddr2 cannot, and a lone haproxy must start before the VIP anyway.
        vip_migrates=pm.vip_agent is VipAgent.HAPX and pm.haproxy_on_all_nodes,
        colocation_id=COLOCATION_ID,
        order_id=ORDER_ID,
        vip_avoids_dc=pm.vip_avoids_dc,
        vip_avoids_dc_id=VIP_AVOIDS_DC_ID,
        # One more than stickiness: a node that comes back wins the VIP from the DC it runs on.
        vip_avoids_dc_score=pm.stickiness + 1,
        settled_attribute=SETTLED_ATTRIBUTE,
        vip_handover_after_s=pm.vip_handover_after_s,
    )
    return ClusterFiles(corosync_conf=corosync_conf, haproxy_cfg=haproxy_cfg, crm_script=crm_script)


@dataclass(frozen=True)
class NodeAgentFile:
    path: str
    content: str
    mode: str = "0755"
    # A systemd unit the install enables and starts (restarts when it changed).
    starts_unit: bool = False

    @property
    def unit(self) -> Optional[str]:
        return self.path.rsplit("/", 1)[-1] if self.starts_unit else None


# systemd drop-ins that give haproxy the node's CPU before anything else (templates/node/systemd/).
HAPROXY_CPU_DROP_IN = "/etc/systemd/system/haproxy.service.d/hapx-cpu.conf"
USER_SLICE_CPU_DROP_IN = "/etc/systemd/system/user.slice.d/hapx-cpu.conf"
# Address-space randomisation off, only where the node runs under pure emulation (the unit's comment says why).
# A unit hapx ships, not the admin's: under /usr/local, so `systemctl mask` in /etc can override it.
EMULATED_NO_ASLR_UNIT = "/usr/local/lib/systemd/system/hapx-emulated-no-aslr.service"
# Marks a node settled (SETTLED_ATTRIBUTE) once it has been a member for hapx:pacemaker.vipHandoverAfterS.
MARK_SETTLED_PATH = "/usr/local/sbin/hapx-mark-settled"
SETTLED_UNIT = "/usr/local/lib/systemd/system/hapx-settled.service"


def node_agent_files(fencing: Optional[FencePlan], vip_handover_after_s: int) -> tuple[NodeAgentFile, ...]:
    """The resource and fence agents hapx installs on every node, its systemd drop-ins and units. The unit that
    marks a node settled is installed whether the VIP's DC rule uses the mark or not: it costs nothing once the
    mark is set, and turning the rule on needs no new unit."""
    files = [
        NodeAgentFile(OCF_HAPROXY_PATH, (TEMPLATE_DIR / "node" / "ocf-haproxy").read_text()),
        NodeAgentFile(OCF_VIP_PATH, (TEMPLATE_DIR / "node" / "ocf-vip").read_text()),
        NodeAgentFile(HAPROXY_CPU_DROP_IN, (TEMPLATE_DIR / "node" / "systemd" / "haproxy-cpu.conf").read_text(), "0644"),
        NodeAgentFile(USER_SLICE_CPU_DROP_IN, (TEMPLATE_DIR / "node" / "systemd" / "user-slice-cpu.conf").read_text(), "0644"),
        NodeAgentFile(
            EMULATED_NO_ASLR_UNIT,
            (TEMPLATE_DIR / "node" / "systemd" / "hapx-emulated-no-aslr.service").read_text(),
            "0644",
            starts_unit=True,
        ),
        NodeAgentFile(MARK_SETTLED_PATH, (TEMPLATE_DIR / "node" / "hapx-mark-settled").read_text()),
        NodeAgentFile(
            SETTLED_UNIT,
            render_template("node/systemd/hapx-settled.service.j2", settle_s=vip_handover_after_s),
            "0644",
            starts_unit=True,
        ),
    ]
    if fencing is not None and fencing.agent_template is not None:
        files.append(NodeAgentFile(f"/usr/sbin/{fencing.agent}", (TEMPLATE_DIR / fencing.agent_template).read_text()))
    return tuple(files)


def render_agents_install(files: tuple[NodeAgentFile, ...]) -> str:
    """The node script that installs `files` (templates/node/install-agents.sh.j2)."""
    return render_template(
        "node/install-agents.sh.j2",
        files=[
            {"path": f.path, "mode": f.mode, "unit": f.unit, "content_b64": base64.b64encode(f.content.encode()).decode()}
            for f in files
        ],
    )


def render_cluster_exporter_env() -> str:
    # Loopback only: the metrics leave the node through haproxy's stats listener, behind its credentials.
    return f"ARGS=--web.listen-address=127.0.0.1:{CLUSTER_EXPORTER_PORT}\n"


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
    cluster: ClusterFiles,
) -> NodeFiles:
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
        cfg.cluster_name,
        str(node.node_id),
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
        tls_files=[{"path": cert_path(name), "pem": pem} for name, pem in secrets.tls_pems],
        cluster_exporter_env_path=CLUSTER_EXPORTER_ENV_PATH,
        cluster_exporter_env=render_cluster_exporter_env(),
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
    "render_haproxy_cfg",
    "render_node_files",
    "render_stats_env",
    "sha256_text",
]
