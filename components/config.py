"""Stack configuration for hapx: every `hapx:*` key, parsed once into typed, validated, frozen pydantic models.
Each field carries its default and description (docs/configuration.md's tables are generated from them: `make
config-docs`); errors are ConfigErrors naming the key and the fix, and stop `pulumi preview` and `make render`."""

import contextlib
import json
import os
import re
from enum import Enum
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Annotated, Any, Collection, Mapping, NamedTuple, Optional, get_args

from annotated_types import Ge, Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationError
from pydantic import computed_field, model_validator
from pydantic.alias_generators import to_camel

NAMESPACE = "hapx"
# Guest interface names are fixed by hapx (network-config renames NICs by MAC),
# so the crm config and corosync never depend on the hypervisor's NIC naming.
CLUSTER_NIC = "dmz0"
MANAGEMENT_NIC = "mgmt0"
# Read through pulumi.Config.get_secret, never parsed here, and refused unless stored encrypted (`--secret`).
SECRET_KEYS = ("statsPassword", "corosyncAuthkey", "tlsCertificates")
_is_ipv4 = re.compile(r"[\d.]+").fullmatch  # dotted digits: past _host, always a valid IPv4 address
_HOSTNAME = r"^(?=.{1,63}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
_DNS_NAME = r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"


class ConfigError(ValueError):
    """A stack config value is invalid. The message names the key and the fix."""

    def __init__(self, key: str, problem: str, fix: str):
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"{key}: {problem}. Fix: {fix}")


# Closed choices: str Enums whose members are named after their values.
Hypervisor = Enum("Hypervisor", {"VIRTUALBOX": "virtualbox", "QEMU": "qemu"}, type=str)
HostOnlyMode = Enum("HostOnlyMode", {"HOSTONLYIF": "hostonlyif", "HOSTONLYNET": "hostonlynet"}, type=str)
HaproxyRestart = Enum("HaproxyRestart", {"SYSTEMD": "systemd", "PACEMAKER": "pacemaker"}, type=str)
VipAgent = Enum("VipAgent", {"HAPX": "hapx", "IPADDR2": "IPaddr2"}, type=str)
Accel = Enum("Accel", {"AUTO": "auto", "KVM": "kvm", "TCG": "tcg"}, type=str)
Rollout = Enum("Rollout", {"ROLLING": "rolling", "ALL_AT_ONCE": "all-at-once"}, type=str)
# Annotated metadata that pydantic ignores and errors name: what a value must be, and how to fix one that is not.
_Hint = NamedTuple("_Hint", [("what", str), ("fix", str)])


def Int(lo: int, hi: int, what: str = "an integer") -> Any:
    return Annotated[int, Ge(lo), Le(hi), _Hint(what, f"set it to {what}, from {lo} to {hi}")]


def Text(pattern: str = r"\S", fix: str = "set a non-empty string") -> Any:
    return Annotated[str, StringConstraints(pattern=pattern), _Hint("a non-empty string", fix)]


def _host(value: Any) -> str:  # an IPv4 address (normalised) or a DNS name (lowercased)
    if not isinstance(value, str) or not (_is_ipv4(value) or re.match(_DNS_NAME, value.lower())):
        raise ValueError("a DNS name is letters, digits, '-' and dots")
    return str(IPv4Address(value)) if _is_ipv4(value) else value.lower()


def _nameserver(value: Any) -> str:
    host, sep, port = str(value).partition(":")  # ip:port, or ip alone for port 53
    if sep and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{port!r} is not a TCP port")
    return f"{IPv4Address(host)}:{int(port) if sep else 53}"


Port = Int(1, 65535, "a TCP port")
Bool = Annotated[bool, _Hint("true or false", "set it to true or false")]
IPv4 = Annotated[IPv4Address, _Hint("an IPv4 address", "use dotted-quad form, e.g. 192.168.4.21")]
Host = Annotated[str, BeforeValidator(_host), _Hint("an IPv4 address or DNS name", "use one, e.g. 192.168.4.11 or kube-mast01")]
HostName = Text(_HOSTNAME, "use lowercase letters, digits and '-', at most 63 characters")
UserName = Text(r"^[a-z_][a-z0-9_-]{0,31}$", "use a Linux user name such as debian")
Netns = Text(r"^[a-z0-9][a-z0-9-]{0,14}$", "use at most 15 lowercase letters, digits and '-'")
Nameserver = Annotated[str, BeforeValidator(_nameserver), _Hint("ip:port", "use ip:port, e.g. 192.168.4.1:53")]
Network = Annotated[IPv4Network, _Hint("a valid IPv4 CIDR", "use network/prefix form with host bits zero, e.g. 192.168.4.0/27")]
Interface = Annotated[IPv4Interface, _Hint("an address/prefix", "use address/prefix form, e.g. 192.168.56.1/24")]


def F(default: Any = ..., doc: str = "", shown: str = "") -> Any:
    """A field's default and one-line description; `shown`: the default as the docs state it, where it is derived."""
    return Field(default, description=doc, json_schema_extra={"shown": shown} if shown else None)


class _Model(BaseModel):
    # Keys are camelCase in the stack config; unknown keys are errors; parsed objects are immutable.
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True, regex_engine="python-re")


class NodeConfig(_Model):
    name: HostName = F(..., "Host name, unique. Changing it replaces the VM.")
    cluster_address: IPv4 = F(..., "Address in `clusterNetwork` (corosync ring), unique.")
    management_address: Optional[IPv4] = F(None, "VirtualBox: address in `hostOnlyNetwork`, unique; Pulumi's way to the node.")
    _node_id: int = PrivateAttr(0)

    @computed_field
    @property
    def node_id(self) -> int:  # corosync's node id: the node's place in hapx:nodes, from 1
        return self._node_id


class BackendConfig(_Model):
    name: HostName = F(..., "Server name in haproxy.cfg, unique.")
    address: Host = F(..., "IPv4 address or DNS name.")
    port: Port = F(6443, "TCP port.")


# Services' closed choices.
ServiceMode = Enum("ServiceMode", {"TCP": "tcp", "HTTP": "http"}, type=str)
Balance = Enum(
    "Balance",
    {"ROUNDROBIN": "roundrobin", "STATIC_RR": "static-rr", "LEASTCONN": "leastconn", "FIRST": "first", "SOURCE": "source", "RANDOM": "random"},
    type=str,
)
CheckType = Enum("CheckType", {"TCP": "tcp", "HTTP": "http"}, type=str)
Persistence = Enum("Persistence", {"NONE": "none", "SOURCE": "source"}, type=str)


class ServiceBackendConfig(_Model):
    name: HostName = F(..., "Server name in haproxy.cfg, unique in its service.")
    address: Host = F(..., "IPv4 address or DNS name.")
    port: Port = F(..., "TCP port.")
    weight: Int(0, 256, "a weight") = F(1, "Share of new connections relative to the others; `0`: none (drain).")
    backup: Bool = F(False, "Used only while every non-backup backend of the service is down.")


class HealthCheckConfig(_Model):
    type: CheckType = F(CheckType.TCP, "`tcp`: a connect (with `tls`, a handshake); `http`: a request (mode `http` only).")
    method: Text(r"^[A-Z]{1,16}$", "use an HTTP method in capitals, e.g. GET") = F("GET", "HTTP check: the method.")
    path: Text(r"^/[!-~]*$", "use an absolute path without spaces, e.g. /healthz") = F("/", "HTTP check: the path asked.")
    expect_status: Int(100, 599, "an HTTP status") = F(200, "HTTP check: the status a healthy backend answers.")
    tls: Bool = F(False, "Check over TLS (the certificate is not verified); with `backendTls` it always is.")


class ServiceConfig(_Model):
    name: Text(r"^[a-z][a-z0-9-]{0,31}$", "use lowercase letters, digits and '-', starting with a letter") = F(
        ..., "Unique; names the service's haproxy.cfg sections and its certificate file."
    )
    mode: ServiceMode = F(ServiceMode.TCP, "`tcp`: bytes relayed (TLS passes through untouched); `http`: requests.")
    ports: tuple[Port, ...] = F(..., "Ports clients reach at the VIP, one or more, unique across services.")
    balance: Balance = F(Balance.ROUNDROBIN, "HAProxy's balance algorithm.")
    backends: tuple[ServiceBackendConfig, ...] = F(..., "The servers, one or more (see the backend keys below).")
    check: HealthCheckConfig = F(HealthCheckConfig(), "Health check of every backend (see the check keys below).")
    terminate_tls: Bool = F(False, "Mode `http`: serve TLS on `ports` with the service's certificate (see below).")
    tls_names: tuple[Text(_DNS_NAME, "use DNS names such as www.example.org"), ...] = F(
        (), "DNS names in a generated certificate, besides the VIP."
    )
    backend_tls: Bool = F(False, "Mode `http`: TLS to the backends too (their certificates are not verified).")
    persistence: Persistence = F(Persistence.NONE, "`source`: a client IP keeps its backend, shared by the nodes.")
    persistence_expire_s: Int(1, 604800, "seconds") = F(1800, "With `persistence`: idle seconds before an entry expires.")
    # haproxy.cfg section names; the service from hapx:backends keeps the reference's.
    _sections: tuple[str, str] = PrivateAttr(("", ""))

    frontend_name = property(lambda self: self._sections[0] or self.name)
    backend_name = property(lambda self: self._sections[1] or self.name)


# The service hapx:backends and hapx:haproxy.frontendPort describe: the reference's kube-apiserver pool, TCP.
DEFAULT_SERVICE = "kubernetes-apiserver"
DEFAULT_SECTIONS = ("kubernetes-apiserver-https", "kubernetes-master-nodes")
# What a node serves on loopback, so no service may bind it: the cluster exporter (rendering.py relays it).
CLUSTER_EXPORTER_PORT = 9664
RESERVED_PORTS = {CLUSTER_EXPORTER_PORT: "the cluster metrics exporter's port (prometheus-hacluster-exporter, on loopback)"}


class NodeSizeConfig(_Model):
    cpus: Int(1, 64) = F(1, "vCPUs per node. Changing it replaces the VMs.")
    memory_mb: Int(256, 1048576, "a size in MiB") = F(512, "Memory per node (MiB). Changing it replaces the VMs.")


class HaproxyConfig(_Model):
    frontend_port: Port = F(6443, "The port of the `hapx:backends` service at the VIP.")
    stats_port: Port = F(32700, "The stats page and metrics (HTTP, basic auth). Must differ from every service port.")
    peers_port: Port = F(32701, "Where the nodes share stick tables (`persistence`), on `clusterNetwork`.")
    stats_user: Text(r"^[A-Za-z0-9_.-]{1,32}$", "use letters, digits, '_', '.', '-'") = F("admin", "Stats page user name.")
    nameservers: tuple[Nameserver, ...] = F((), "DNS servers for backends given by name. Empty: libc resolves them at start.")
    check_interval_ms: Int(100, 600000, "milliseconds") = F(2000, "Health-check interval per backend.")
    check_fall: Int(1, 100) = F(3, "Failed checks before a backend goes down.")
    check_rise: Int(1, 100) = F(2, "Passed checks before a backend goes up.")


class CorosyncConfig(_Model):
    # 1000 ms: a dead node is declared lost 1.5 s after its last token (with the
    # two-node consensus of half that). 500 ms was the default for a stop and
    # won the lab's power-off benchmark, but a node that boots under emulation
    # stalls its peer's token for up to a second: at 500 ms fenced nodes were
    # lost and fenced again as they rebooted, five times in one benchmark, up
    # to three in a row; at 1000 ms it happened once in a benchmark too
    # (docs/benchmarks.md).
    token_ms: Int(200, 60000, "milliseconds") = F(1000, "How long a silent node has before it is declared lost.")
    consensus_ms: Optional[Int(100, 72000, "milliseconds")] = F(
        None, "Time to agree on a new membership.", "two nodes: ½ × `tokenMs`; three or more: 1.2 × `tokenMs`"
    )


class PacemakerConfig(_Model):
    stickiness: Int(0, 1000000) = F(100, "`resource-stickiness`: resources stay where they run when a node comes back.")
    migration_threshold: Int(1, 1000000) = F(2, "Failures on a node before its resources move away.")
    monitor_interval_s: Int(1, 3600, "seconds") = F(5, "Interval of the VIP's and haproxy's monitor operation.")
    monitor_timeout_s: Int(1, 3600, "seconds") = F(60, "Timeout of the monitor operation.")
    failure_timeout_s: Int(0, 86400, "seconds") = F(60, "Seconds after which a failure count expires.")
    # Pacemaker 2.1's controller sleeps a whole second when the CIB copy it
    # asked for comes back while its own CIB writes are still in flight, as
    # after a lost node they often are; waiting this long first lets them
    # land. On the lab they landed 0.10-0.21 s after the wait began; 300 ms
    # leaves room for a machine 1.4 times as slow, and a slower one pays the
    # controller's second once per failover, no more (docs/architecture.md).
    transition_delay_ms: Int(0, 10000, "milliseconds") = F(
        300, "`transition-delay`: how long the cluster waits before it computes a transition; `0`: at once."
    )
    haproxy_on_all_nodes: Bool = F(True, "haproxy runs on every node (a clone); `false`: one haproxy moves with the VIP.")
    haproxy_restart: HaproxyRestart = F(HaproxyRestart.SYSTEMD, "Who restarts a crashed haproxy.")
    vip_agent: VipAgent = F(VipAgent.HAPX, "Resource agent of the VIP: `hapx` (lean, starts at once) or `IPaddr2`.")
    # When the VIP holder dies and it was also the DC, the survivor first
    # elects itself, reads the cluster's configuration and rejoins itself
    # before it computes the failover: 1.2-2.4 s more under TCG (measured,
    # docs/benchmarks.md). With the rule, the holder is another node, so the
    # survivor is the DC already. The price: a node that comes back takes the
    # VIP over (a planned handover, a migrate) once it has stayed a member for
    # vipHandoverAfterS, so a node that keeps crashing sooner never takes it.
    vip_avoids_dc: Optional[Bool] = F(
        None,
        "The VIP prefers a node that is not Pacemaker's DC, so a dead holder costs no DC election; a node that comes"
        " back takes the VIP over (a planned handover) once it has been a member for `vipHandoverAfterS`."
        " Needs `vipAgent: hapx` and `haproxyOnAllNodes`.",
        "`true` when `vipAgent` is `hapx` and `haproxyOnAllNodes` is `true`",
    )
    vip_handover_after_s: Int(0, 86400, "seconds") = F(
        60,
        "With `vipAvoidsDc`: how long a node must have been a cluster member before the VIP is handed to it;"
        " a node that leaves sooner never takes the VIP over.",
    )


class FencingConfig(_Model):
    enabled: Optional[Bool] = F(None, "Fencing (STONITH) on or off.", "`true` on QEMU, `false` on VirtualBox")
    ping_targets: Optional[tuple[Host, ...]] = F(None, "A node fences its peer only if it reaches one of these.", "IPv4 backends")
    host_address: Optional[IPv4] = F(None, "VirtualBox: where `fence_vbox` reaches the host.", "the host's `hostOnlyNetwork` IP")
    host_user: Optional[UserName] = F(None, "VirtualBox: the host user `fence_vbox` runs `VBoxManage` as.")


class VirtualBoxConfig(_Model):
    vboxmanage: Text() = F("VBoxManage", "The VBoxManage executable.")
    base_vm: Text() = F("debian-base-image", "The VM cloned for each node; with `baseImage`, hapx creates it under this name.")
    base_image: Optional[Text(r"\.vdi$", "give a .vdi, e.g. base.vdi from `make image`")] = F(None, "A VDI hapx makes `baseVm` from.")
    storage_controller: Text() = F("SATA", "The base VM's storage controller; the seed ISO goes on its port 1.")
    internal_network: Text(r"^[A-Za-z0-9_.-]{1,64}$", "use letters, digits, '_', '.', '-'") = F("dmz", "NIC 1's network.")
    host_only_mode: HostOnlyMode = F(HostOnlyMode.HOSTONLYIF, "`hostonlynet` for VirtualBox 7 on macOS.")
    host_only_name: Text(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$", "use a name such as vboxnet0") = F("vboxnet0", "NIC 2's network.")
    host_only_network: Interface = F(IPv4Interface("192.168.56.1/24"), "The host's address and prefix on NIC 2's network.")
    seed_dir: Text() = F("~/.cache/hapx/seeds", "Where seed ISOs are written (mode 0600).")


class QemuConfig(_Model):
    image_dir: Text() = F("~/.cache/hapx/images/current", "Where `make image` put the base image.")
    state_dir: Text() = F("~/.cache/hapx/lab", "VM disks, seeds, pid files and sockets, per stack.")
    accel: Accel = F(Accel.AUTO, "`auto`: KVM if the base image boots under it within 20 s, TCG otherwise.")
    ssh_port_base: Int(1024, 65000, "a TCP port") = F(2220, "Node *i* listens on `127.0.0.1:(sshPortBase + i)` for SSH.")
    lab_namespace: Netns = F("hapx-lab", "Network namespace of the cluster segment, the stand-in backends and the lab's clients.")
    lab_client_address: Optional[IPv4] = F(None, "The lab's own address on the cluster segment.", "last host of `clusterNetwork`")
    # Under TCG the guest stalls for a few hundred ms whenever QEMU's
    # translation cache fills and is flushed; an idle lab node fills 256 MiB
    # in about a minute (docs/troubleshooting.md).
    translation_cache_mb: Int(64, 16384, "a size in MiB") = F(
        2048, "TCG's translation cache per VM, in MiB of host memory (used as it fills); unused under KVM."
    )


class HapxConfig(_Model):
    hypervisor: Hypervisor = F(Hypervisor.VIRTUALBOX, "Which driver creates the VMs and networks.")
    cluster_name: HostName = F("haproxy-cluster", "corosync's and Pacemaker's cluster name. Changing it replaces the VMs.")
    domain: Text(_DNS_NAME, "use a DNS domain such as kube.demo") = F("kube.demo", "Nodes' FQDN is `<node>.<domain>`.")
    cluster_network: Network = F(..., "Subnet of the corosync ring and the VIP, /29 or shorter.")
    cluster_vlan: Int(0, 4094, "a VLAN id (0: untagged)") = F(41, "VLAN id of the cluster segment; `0`: untagged.")
    dhcp_vlan: Optional[Int(1, 4094, "a VLAN id")] = F(None, "An extra VLAN on the cluster NIC, configured by DHCP.")
    vip: IPv4 = F(..., "The floating IP: a host address in `clusterNetwork`, not a node's or backend's.")
    nodes: tuple[NodeConfig, ...] = F(
        ...,
        "The nodes, two or more; their order gives corosync node ids. Adding or removing nodes at the end of the list"
        " replaces no running node.",
    )
    backends: tuple[BackendConfig, ...] = F(
        (), "The reference's TCP service (`kubernetes-apiserver` on `haproxy.frontendPort`): its servers.", "required¹"
    )
    services: tuple[ServiceConfig, ...] = F((), "Services behind the VIP (see below), after the `backends` one.", "required¹")
    admin_user: UserName = F("debian", "The sudo user Pulumi connects as; `root` is refused.")
    node_size: NodeSizeConfig = F(NodeSizeConfig(), "VM size.")
    rollout: Rollout = F(
        Rollout.ROLLING,
        "How `up` replaces VMs: `rolling`, one node at a time (drained first; the VIP stays served), or `all-at-once`"
        " (faster first builds; an outage when running nodes are replaced).",
    )
    haproxy: HaproxyConfig = F(HaproxyConfig(), "HAProxy.")
    corosync: CorosyncConfig = F(CorosyncConfig(), "Corosync.")
    pacemaker: PacemakerConfig = F(PacemakerConfig(), "Pacemaker.")
    fencing: FencingConfig = F(FencingConfig(), "Fencing.")
    virtualbox: Optional[VirtualBoxConfig] = F(None, "VirtualBox driver (with `hypervisor: virtualbox`).")
    qemu: Optional[QemuConfig] = F(None, "QEMU lab driver (with `hypervisor: qemu`).")

    # Where the VIP agent puts the VIP: the VLAN interface on each node that carries the ring, its prefix and broadcast.
    vip_interface = property(lambda self: f"{CLUSTER_NIC}.{self.cluster_vlan}" if self.cluster_vlan else CLUSTER_NIC)
    vip_prefix_length = property(lambda self: self.cluster_network.prefixlen)
    vip_broadcast = property(lambda self: self.cluster_network.broadcast_address)

    @model_validator(mode="after")
    def _cross_check(self) -> "HapxConfig":
        """Rules between keys, then the defaults that follow from other keys (so build a HapxConfig with parse_config)."""
        net, vip, nodes, kind = self.cluster_network, self.vip, self.nodes, self.hypervisor
        self._services = _check_services(self)
        backends = [b for service in self._services for b in service.backends]
        _require(net.prefixlen <= 29, "clusterNetwork", f"/{net.prefixlen} leaves too few host addresses", "use /29 or shorter")
        _require(self.dhcp_vlan != self.cluster_vlan, "dhcpVlan", f"equals hapx:clusterVlan ({self.cluster_vlan})", "use another id")
        _in_subnet("vip", vip, net)
        problem = f"has {len(nodes)} node(s); hapx needs at least two (an HA pair) and at most 16"
        _require(1 < len(nodes) < 17, "nodes", problem, "list 2 to 16 nodes")
        for i, node in enumerate(nodes):
            node._node_id = i + 1
            _in_subnet(f"nodes[{i}].clusterAddress", node.cluster_address, net)
        _unique("nodes[{}].name", [n.name for n in nodes])
        _unique("nodes[{}].clusterAddress", [n.cluster_address for n in nodes], [f"node {n.name}" for n in nodes])
        taken = {n.cluster_address: f"clusterAddress of node {n.name}" for n in nodes}  # on the cluster segment
        taken.update({IPv4Address(b.address): f"address of backend {b.name}" for b in reversed(backends) if _is_ipv4(b.address)})
        _require(vip not in taken, "vip", f"{vip} is also the {taken.get(vip)}", "pick a VIP that no node or backend uses")
        _require(self.admin_user != "root", "adminUser", "root is not allowed", "use an unprivileged user with sudo, like debian")
        ports = self.haproxy.frontend_port, self.haproxy.stats_port
        _require(len(set(ports)) == 2, "haproxy.statsPort", f"equals haproxy.frontendPort ({ports[0]})", "use different ports")
        # corosync.conf(5): consensus is at least 1.2 x token, but with two nodes anything between the join timeout
        # (50 ms) and the token is safe. A dead peer costs token + consensus, so two nodes default to half the token.
        token, least, two = self.corosync.token_ms, int(self.corosync.token_ms * 1.2), len(nodes) == 2
        consensus = self.corosync.consensus_ms or (token // 2 if two else least)
        problem = f"{consensus} is less than 1.2 x tokenMs ({least})" + (f" and not below tokenMs ({token})" if two else "")
        fix = ("set it below tokenMs or " if two else "") + "raise it to 1.2 x tokenMs, or leave it unset"
        _require(consensus >= least or (two and consensus < token), "corosync.consensusMs", problem, fix)
        for name, section in (("virtualbox", self.virtualbox), ("qemu", self.qemu)):
            fix = f"remove hapx:{name} or set hapx:hypervisor {name}"
            _require(section is None or kind.value == name, name, f"is set but hapx:hypervisor is {kind.value}", fix)
        vbox = (self.virtualbox or VirtualBoxConfig()) if kind is Hypervisor.VIRTUALBOX else None
        qemu = (self.qemu or QemuConfig()) if kind is Hypervisor.QEMU else None
        if qemu:  # the lab's own client address must be free on the cluster segment
            client = qemu.lab_client_address or net.broadcast_address - 1
            _in_subnet("qemu.labClientAddress", client, net)
            used = {vip: "VIP", **taken}.get(client)
            _require(not used, "qemu.labClientAddress", f"{client} is already the {used}", f"use a free address in {net}")
            qemu = qemu.model_copy(update={"lab_client_address": client})
        if vbox:
            host, subnet, key = vbox.host_only_network.ip, vbox.host_only_network.network, "virtualbox.hostOnlyNetwork"
            _require(host not in (subnet[0], subnet[-1]), key, f"{host} is the network or broadcast address", "use a host IP")
            for i, node in enumerate(nodes):
                path = f"nodes[{i}].managementAddress"
                _require(node.management_address, path, "is required with hapx:hypervisor virtualbox", f"add one in {subnet}")
                _in_subnet(path, node.management_address, subnet, "hapx:virtualbox.hostOnlyNetwork")
                _require(node.management_address != host, path, f"{host} is already used by the host", "give each node its own")
            _unique("nodes[{}].managementAddress", [n.management_address for n in nodes], [n.name for n in nodes])
            _require(not subnet.overlaps(net), key, f"{subnet} overlaps hapx:clusterNetwork {net}", "use a separate subnet")
            image, fix = vbox.base_image, "build it with `make image` (it writes base.vdi) or give an existing .vdi"
            _require(not image or os.path.isfile(os.path.expanduser(image)), "virtualbox.baseImage", f"{image} does not exist", fix)
        fencing = self.fencing
        for name, given in (("hostAddress", fencing.host_address), ("hostUser", fencing.host_user)):
            _require(given is None or vbox, f"fencing.{name}", f"is for VirtualBox, but hapx:hypervisor is {kind.value}", "remove it")
        # Fencing is on by default where hapx controls the whole path (the QEMU lab); VirtualBox needs the operator's host.
        enabled = kind is Hypervisor.QEMU if fencing.enabled is None else fencing.enabled
        problem = "is required when fencing is on with VirtualBox (fence_vbox runs VBoxManage on the host over SSH)"
        fix = "name the host user that will trust the fenceHostPublicKey output, or set hapx:fencing.enabled false"
        _require(not (enabled and vbox) or fencing.host_user, "fencing.hostUser", problem, fix)
        # Default ping targets: the backends given as addresses (a node that reaches none of them has nothing to serve).
        targets = fencing.ping_targets
        targets = tuple(dict.fromkeys(b.address for b in backends if _is_ipv4(b.address))) if targets is None else targets
        _require(len(set(targets)) == len(targets), "fencing.pingTargets", "lists a target twice", "list each target once")
        host = fencing.host_address or (vbox.host_only_network.ip if enabled and vbox else None)  # the host, as nodes see it
        fencing = fencing.model_copy(update={"enabled": enabled, "ping_targets": targets, "host_address": host})
        corosync = self.corosync.model_copy(update={"consensus_ms": consensus})
        pm = self.pacemaker
        # Moving the VIP to a node that comes back is a handover only with hapx's agent and haproxy already running
        # there; otherwise it would be a stop and a start, an outage the operator did not ask for.
        hands_over = pm.vip_agent is VipAgent.HAPX and pm.haproxy_on_all_nodes
        problem = "is true, but the VIP cannot be handed over to a node that comes back (it would be stopped and started)"
        _require(pm.vip_avoids_dc is not True or hands_over, "pacemaker.vipAvoidsDc", problem, "set vipAgent hapx and haproxyOnAllNodes true, or set it false")
        # The rule's bonus outweighs stickiness by one, which INFINITY cannot.
        problem = f"{pm.stickiness} leaves no room for the VIP's DC rule (stickiness + 1 must stay below 1000000)"
        fix = "lower it, or set pacemaker.vipAvoidsDc false"
        _require(pm.vip_avoids_dc is not True or pm.stickiness < 999999, "pacemaker.stickiness", problem, fix)
        # Unset: on wherever a handover is possible and the rule fits.
        avoids_dc = hands_over and pm.stickiness < 999999 if pm.vip_avoids_dc is None else pm.vip_avoids_dc
        pm = pm.model_copy(update={"vip_avoids_dc": avoids_dc})
        return self.model_copy(update=dict(virtualbox=vbox, qemu=qemu, corosync=corosync, fencing=fencing, pacemaker=pm))


    _services: tuple[ServiceConfig, ...] = PrivateAttr(())
    # Services whose certificate hapx:tlsCertificates gives (the others that terminate TLS get a generated one).
    _given_certificates: frozenset[str] = PrivateAttr(frozenset())
    given_certificates = property(lambda self: self._given_certificates)

    @property
    def all_services(self) -> tuple[ServiceConfig, ...]:
        """Every service behind the VIP: the one hapx:backends describes (if any), then hapx:services."""
        return self._services


def _check_services(cfg: HapxConfig) -> tuple[ServiceConfig, ...]:
    """The services, the one from hapx:backends first; the rules between their keys and the other ports."""
    haproxy, services = cfg.haproxy, list(cfg.services)
    if cfg.backends:
        _unique("backends[{}].name", [b.name for b in cfg.backends])
        _unique("backends[{}]", [f"{b.address}:{b.port}" for b in cfg.backends], [f"backend {b.name}" for b in cfg.backends])
        reference = ServiceConfig(
            name=DEFAULT_SERVICE,
            ports=(haproxy.frontend_port,),
            backends=tuple(ServiceBackendConfig(name=b.name, address=b.address, port=b.port) for b in cfg.backends),
        )
        reference._sections = DEFAULT_SECTIONS
        services.insert(0, reference)
    else:
        fix = "list the servers HAProxy balances, each with name, address and port, or define hapx:services"
        _require(services, "backends", "has no backends and hapx:services is empty", fix)
        fix = "remove it: give each service's ports in hapx:services[].ports"
        _require("frontend_port" not in haproxy.model_fields_set, "haproxy.frontendPort", "is set without hapx:backends", fix)
        problem = f"is {haproxy.frontend_port}, the default hapx:haproxy.frontendPort (kept free for hapx:backends)"
        _require(haproxy.stats_port != haproxy.frontend_port, "haproxy.statsPort", problem, "use another port")
    offset = 1 if cfg.backends else 0  # services[i] of the config is services[i + offset] here
    key = lambda i: "haproxy.frontendPort" if i < offset else f"services[{i - offset}]"  # noqa: E731
    _unique("services[{}].name", [s.name for s in cfg.services])
    for i, service in enumerate(cfg.services):
        _require(service.name != DEFAULT_SERVICE or not cfg.backends, f"services[{i}].name", f"{DEFAULT_SERVICE!r} is the "
                 "service of hapx:backends", "use another name, or move hapx:backends into this service and remove it")
        path, http = f"services[{i}]", service.mode is ServiceMode.HTTP
        _require(service.ports, f"{path}.ports", "is empty", "list at least one port")
        _require(service.backends, f"{path}.backends", "is empty", "list the servers, each with name, address and port")
        _unique(f"{path}.backends[{{}}].name", [b.name for b in service.backends])
        owners = [f"backend {b.name}" for b in service.backends]
        _unique(f"{path}.backends[{{}}]", [f"{b.address}:{b.port}" for b in service.backends], owners)
        _require(any(not b.backup for b in service.backends), f"{path}.backends", "has only backup backends",
                 "set backup: false on at least one")
        fix = "set mode: http, or remove it"
        for name, given in (("terminateTls", service.terminate_tls), ("backendTls", service.backend_tls)):
            _require(http or not given, f"{path}.{name}", "is for mode http (a tcp service passes TLS through)", fix)
        _require(http or service.check.type is CheckType.TCP, f"{path}.check.type", "http needs mode http", fix)
        _require(service.terminate_tls or not service.tls_names, f"{path}.tlsNames", "is set without terminateTls",
                 "set terminateTls: true, or remove it")
        asked = service.check.model_fields_set & {"method", "path", "expect_status"}
        _require(service.check.type is CheckType.HTTP or not asked, f"{path}.check.{to_camel(min(asked or {'x'}))}",
                 "is for an http check", "set check.type: http, or remove it")
    ports = [(port, key(i) if i < offset else f"{key(i)}.ports[{j}]") for i, s in enumerate(services) for j, port in enumerate(s.ports)]
    taken = {haproxy.stats_port: "hapx:haproxy.statsPort", **{p: f"reserved: {what}" for p, what in RESERVED_PORTS.items()}}
    if any(s.persistence is Persistence.SOURCE for s in services):
        _require(haproxy.peers_port != haproxy.stats_port, "haproxy.peersPort", f"equals hapx:haproxy.statsPort "
                 f"({haproxy.stats_port})", "use different ports")
        taken.setdefault(haproxy.peers_port, "hapx:haproxy.peersPort")
    for port, path in ports:
        if path == "haproxy.frontendPort" and taken.get(port) == "hapx:haproxy.statsPort":
            _require(False, "haproxy.statsPort", f"equals haproxy.frontendPort ({port})", "use different ports")
        _require(port not in taken, path, f"{port} is {taken.get(port)}", "use another port")
        taken[port] = f"already used by hapx:{path}"
    return tuple(services)


def _require(ok: Any, path: str, problem: str, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{NAMESPACE}:{path}", problem, fix)


def _in_subnet(path: str, address: IPv4Address, net: IPv4Network, net_key: str = "hapx:clusterNetwork") -> None:
    _require(address in net, path, f"{address} is outside {net_key} {net}", f"use an address inside {net}")
    _require(address not in (net[0], net[-1]), path, f"{address} is the network or broadcast address of {net}", "use a host IP")


def _unique(path: str, values: list, owners: Optional[list] = None) -> None:  # values[i] is at path.format(i)
    for i, value in enumerate(values):
        j = values.index(value)
        problem = f"{value} is already used by {owners[j]}" if owners else f"{value!r} duplicates {NAMESPACE}:{path.format(j)}"
        _require(j == i, path.format(i), problem, "use a value that no other entry has")


# pydantic's error types in hapx's words, from the error, the field's _Hint, its description (doc) and keys allowed.
_WORDS = {
    "missing": ("is required", "set it: {doc}"),
    "extra_forbidden": ("unknown key", "remove it or use one of: {keys} (see docs/configuration.md)"),
    "model_type": ("expected an object, got {value!r}", "set it as a YAML mapping with keys: {keys}"),
    "tuple_type": ("expected a list, got {value!r}", "set it as a YAML list"),
    "enum": ("{value!r} is not valid (not one of: {expected})", "set it to one of: {expected}"),
    "string_pattern_mismatch": ("{value!r} is not valid", "{fix}"),
    "value_error": ("{value!r} is not {what} ({error})", "{fix}"),
    "greater_than_equal": ("{value} is out of range", "{fix}"),
    "less_than_equal": ("{value} is out of range", "{fix}"),
}


def _config_error(exc: ValidationError) -> ConfigError:
    """pydantic's first error as a ConfigError that names the full key path, e.g. hapx:nodes[1].name."""
    error = exc.errors()[0]
    loc, ctx = error["loc"], error.get("ctx", {})
    key = f"{NAMESPACE}:" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)[1:]
    if isinstance(ctx.get("error"), ConfigError):  # a rule between keys
        return ctx["error"]
    model, field = HapxConfig, Field()  # the object and the field the error is in
    for part in loc:
        field = next((f for f in model.model_fields.values() if f.alias == part), field)
        kinds = (field.annotation, *get_args(field.annotation))
        model = next((kind for kind in kinds if isinstance(kind, type) and issubclass(kind, BaseModel)), model)
    found, kinds = list(field.metadata), [field.annotation]
    while kinds:  # metadata of the field's type and of the types inside it: Optional[...], tuple[...]
        found, kinds = found + list(getattr(kinds[-1], "__metadata__", ())), kinds[:-1] + list(get_args(kinds[-1]))
    what, fix = next((m for m in found if isinstance(m, _Hint)), ("valid", "see docs/configuration.md"))
    keys = [f.alias for f in model.model_fields.values()] + list(SECRET_KEYS if model is HapxConfig else ())
    words = dict(ctx, value=error.get("input"), doc=field.description, keys=", ".join(keys), what=what, fix=fix)
    words["expected"] = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
    problem, fix = _WORDS.get(error["type"], ("expected {what}, got {value!r}", "{fix}"))
    return ConfigError(key, problem.format(**words), fix.format(**words))


def parse_config(raw: Mapping[str, Any], secret_keys: Collection[str] = ()) -> HapxConfig:
    """Parse and validate every hapx:* key; raise ConfigError on the first problem. `secret_keys`: the keys the stack
    stores encrypted; a secret given in plain text is refused, so `make render` and `pulumi preview` refuse alike."""
    ours = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith(f"{NAMESPACE}:") and v is not None}
    certificates = ours.get("tlsCertificates")  # decrypted in a Pulumi program; absent offline (make render)
    for name in [name for name in SECRET_KEYS if name in ours]:
        how = f"`pulumi config set --secret {NAMESPACE}:{name} <value>` (or `pulumi config rm` it to have one generated)"
        _require(f"{NAMESPACE}:{name}" in secret_keys, name, "is stored in plain text", f"store it encrypted: {how}")
        del ours[name]
    wanted = {field.alias: field.annotation for field in HapxConfig.model_fields.values()}
    for name, value in ours.items():  # the engine hands every top-level value as text: numbers, booleans, objects in JSON
        with contextlib.suppress(TypeError, ValueError):  # left as they are: strings, and values YAML already typed
            ours[name] = value if wanted.get(name) is str else json.loads(value)
    try:  # strict, in JSON mode: no true for a number, no "yes" for a boolean; a list is fine for a tuple
        cfg = HapxConfig.model_validate_json(json.dumps(ours, default=str), strict=True)
    except ValidationError as exc:
        raise _config_error(exc) from None
    if certificates is not None:
        cfg._given_certificates = _given_certificates(cfg, certificates)
    return cfg


def _given_certificates(cfg: HapxConfig, value: Any) -> frozenset[str]:
    """The services hapx:tlsCertificates names, each with a PEM certificate and key. Errors never quote the value."""
    with contextlib.suppress(TypeError, ValueError):
        value = json.loads(value) if isinstance(value, str) else value
    fix = "set it with `pulumi config set --secret --path 'hapx:tlsCertificates.<service>' \"$(cat cert.pem key.pem)\"`"
    _require(isinstance(value, dict), "tlsCertificates", "is not an object of service name to PEM", fix)
    terminating = [s.name for s in cfg.all_services if s.terminate_tls]
    for name, pem in value.items():
        key = f"tlsCertificates.{name}"
        problem = f"names no service with terminateTls (those are: {', '.join(terminating) or 'none'})"
        _require(name in terminating, key, problem, "use a service's name, or set terminateTls: true on it")
        ok = isinstance(pem, str) and "-----BEGIN CERTIFICATE-----" in pem and re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", pem)
        _require(ok, key, "is not a PEM certificate (chain) with its private key", "give the certificate, then the key, as PEM")
    return frozenset(value)


def config_from_pulumi() -> HapxConfig:
    """Read the running stack's hapx:* config inside a Pulumi program: from the SDK's context and PULUMI_CONFIG."""
    from pulumi.runtime import config as engine
    secret_keys = set(engine.get_config_secret_keys_env()) | set(engine._SECRET_KEYS.get())
    return parse_config({**engine.get_config_env(), **engine.CONFIG.get()}, secret_keys)
