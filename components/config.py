"""Stack configuration for hapx, parsed once into typed, validated objects.

Every `hapx:*` key is read here and nowhere else. The parser works on a plain
mapping of full keys ("hapx:vip") to values, so the same code serves the Pulumi
program (values come from the engine, objects as JSON strings) and the offline
renderer (`make render`, values come from Pulumi.<stack>.yaml).

Errors are raised as ConfigError, which names the key and says how to fix it;
they surface at `pulumi preview`, before any resource exists.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Mapping, Optional, TypeVar

NAMESPACE = "hapx"

# Keys whose values are secrets. They are read through pulumi.Config.get_secret
# (never through this parser) and must be stored with `--secret`.
SECRET_KEYS = ("statsPassword", "corosyncAuthkey")

_HOSTNAME = re.compile(r"^(?=.{1,63}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_IFNAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$")
_USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


class ConfigError(ValueError):
    """A stack config value is invalid. The message names the key and the fix."""

    def __init__(self, key: str, problem: str, fix: str):
        self.key = key
        self.problem = problem
        self.fix = fix
        super().__init__(f"{key}: {problem}. Fix: {fix}")


class Hypervisor(str, Enum):
    VIRTUALBOX = "virtualbox"
    QEMU = "qemu"


class HostOnlyMode(str, Enum):
    # `hostonlyif` is VirtualBox's host-only interface on Linux and Windows;
    # `hostonlynet` (VirtualBox 7) is the vmnet-based network macOS needs.
    HOSTONLYIF = "hostonlyif"
    HOSTONLYNET = "hostonlynet"


@dataclass(frozen=True)
class NodeConfig:
    name: str
    cluster_address: ipaddress.IPv4Address
    management_address: Optional[ipaddress.IPv4Address]
    node_id: int


@dataclass(frozen=True)
class BackendConfig:
    name: str
    address: str  # an IPv4 address or a DNS name resolved by haproxy
    port: int


@dataclass(frozen=True)
class HaproxyConfig:
    frontend_port: int
    stats_port: int
    stats_user: str
    nameservers: tuple[str, ...]  # "ip:port"; empty means resolve with libc only
    check_interval_ms: int
    check_fall: int
    check_rise: int


@dataclass(frozen=True)
class CorosyncConfig:
    token_ms: int
    consensus_ms: int


@dataclass(frozen=True)
class PacemakerConfig:
    stickiness: int
    migration_threshold: int
    monitor_interval_s: int
    monitor_timeout_s: int
    failure_timeout_s: int
    # haproxy runs on every node (a clone) and only the VIP moves; False:
    # one haproxy instance that moves with the VIP (the reference design).
    haproxy_on_all_nodes: bool
    # Who restarts a crashed haproxy: "systemd" (in place, about a second) or
    # "pacemaker" (at the next monitor; how the reference design behaves).
    haproxy_restart: str


@dataclass(frozen=True)
class FencingConfig:
    # STONITH on: a node that loses its peer power-cycles it before taking
    # over, so a cut link never leaves two nodes holding the VIP.
    enabled: bool
    # A node that reaches none of these (it is the one cut off) does not
    # fence its peer: checked by the QEMU agent itself, by a
    # fence_heuristics_ping level for fence_vbox. Empty: no check.
    ping_targets: tuple[str, ...]
    # VirtualBox only: the host fence_vbox reaches over SSH to run VBoxManage.
    host_address: Optional[ipaddress.IPv4Address]
    host_user: Optional[str]


@dataclass(frozen=True)
class NodeSizeConfig:
    cpus: int
    memory_mb: int


@dataclass(frozen=True)
class VirtualBoxConfig:
    vboxmanage: str
    base_vm: str
    storage_controller: str
    internal_network: str
    host_only_mode: HostOnlyMode
    host_only_name: str
    host_only_network: ipaddress.IPv4Interface  # host's address and prefix
    seed_dir: str


@dataclass(frozen=True)
class QemuConfig:
    image_dir: str  # where `make image` put base.qcow2 (booted through its firmware)
    state_dir: str  # VM disks, seeds, pid files and sockets
    accel: str  # "auto", "kvm" or "tcg"
    ssh_port_base: int  # node i listens on 127.0.0.1:(base + i) for SSH
    lab_namespace: str  # network namespace that holds the cluster segment
    lab_client_address: Optional[ipaddress.IPv4Address]  # the lab's own client address; None: last host of clusterNetwork


@dataclass(frozen=True)
class HapxConfig:
    hypervisor: Hypervisor
    cluster_name: str
    domain: str
    cluster_network: ipaddress.IPv4Network
    cluster_vlan: int  # 0: untagged
    dhcp_vlan: Optional[int]
    vip: ipaddress.IPv4Address
    nodes: tuple[NodeConfig, ...]
    backends: tuple[BackendConfig, ...]
    admin_user: str
    node_size: NodeSizeConfig
    haproxy: HaproxyConfig
    corosync: CorosyncConfig
    pacemaker: PacemakerConfig
    fencing: FencingConfig
    virtualbox: Optional[VirtualBoxConfig]
    qemu: Optional[QemuConfig]

    @property
    def vip_interface(self) -> str:
        """Name of the VLAN interface on each node that carries ring and VIP."""
        return f"{CLUSTER_NIC}.{self.cluster_vlan}" if self.cluster_vlan else CLUSTER_NIC

    @property
    def vip_prefix_length(self) -> int:
        return self.cluster_network.prefixlen

    @property
    def vip_broadcast(self) -> ipaddress.IPv4Address:
        return self.cluster_network.broadcast_address


# Guest interface names are fixed by hapx (network-config renames NICs by MAC),
# so the crm config and corosync never depend on the hypervisor's NIC naming.
CLUSTER_NIC = "dmz0"
MANAGEMENT_NIC = "mgmt0"


# --------------------------------------------------------------------------
# Parsing helpers. Each names the full key path in its error.
# --------------------------------------------------------------------------

T = TypeVar("T")


def _decode(value: Any) -> Any:
    """Pulumi hands object and list values to programs as JSON strings."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _int(key: str, value: Any, lo: int, hi: int, what: str = "an integer") -> int:
    if isinstance(value, bool):
        raise ConfigError(key, f"expected {what}, got {value!r}", f"set it to {what} from {lo} to {hi}")
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value.strip())
    if not isinstance(value, int):
        raise ConfigError(key, f"expected {what}, got {value!r}", f"set it to {what} from {lo} to {hi}")
    if not lo <= value <= hi:
        raise ConfigError(key, f"{value} is out of range", f"use a value from {lo} to {hi}")
    return value


def _port(key: str, value: Any) -> int:
    return _int(key, value, 1, 65535, "a TCP port")


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(key, f"expected true or false, got {value!r}", "set it to true or false")


def _str(key: str, value: Any, pattern: Optional[re.Pattern] = None, hint: str = "") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"expected a non-empty string, got {value!r}", hint or "set a non-empty string")
    if pattern is not None and not pattern.match(value):
        raise ConfigError(key, f"{value!r} is not valid", hint or f"match {pattern.pattern}")
    return value


def _ipv4(key: str, value: Any) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        raise ConfigError(key, f"{value!r} is not an IPv4 address", "use dotted-quad form, e.g. 192.168.4.21") from None


def _enum(key: str, value: Any, enum: type[Enum]) -> Any:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(e.value for e in enum)
        raise ConfigError(key, f"{value!r} is not one of: {choices}", f"set it to one of: {choices}") from None


class _Object:
    """A config object whose keys are consumed one by one; leftovers are errors."""

    def __init__(self, key: str, value: Any, allowed: tuple[str, ...]):
        value = _decode(value)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected an object, got {value!r}", f"set it as a YAML mapping with keys: {', '.join(allowed)}")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{key}.{unknown[0]}",
                "unknown key",
                f"remove it or use one of: {', '.join(allowed)} (see docs/configuration.md)",
            )
        self.key = key
        self.value = value

    def get(self, name: str, default: Any, parse: Callable[[str, Any], T]) -> T:
        if name not in self.value or self.value[name] is None:
            return default
        return parse(f"{self.key}.{name}", self.value[name])

    def require(self, name: str, parse: Callable[[str, Any], T], hint: str) -> T:
        if name not in self.value or self.value[name] is None:
            raise ConfigError(f"{self.key}.{name}", "is required", hint)
        return parse(f"{self.key}.{name}", self.value[name])


# Top-level keys (without the namespace) and whether they are required.
TOP_LEVEL_KEYS = (
    "hypervisor",
    "clusterName",
    "domain",
    "clusterNetwork",
    "clusterVlan",
    "dhcpVlan",
    "vip",
    "nodes",
    "backends",
    "adminUser",
    "nodeSize",
    "haproxy",
    "corosync",
    "pacemaker",
    "fencing",
    "virtualbox",
    "qemu",
) + SECRET_KEYS


def _key(name: str) -> str:
    return f"{NAMESPACE}:{name}"


def parse_config(raw: Mapping[str, Any]) -> HapxConfig:
    """Parse and validate every hapx:* key. Raises ConfigError on the first problem."""
    ours = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith(f"{NAMESPACE}:")}
    unknown = sorted(set(ours) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            _key(unknown[0]),
            "unknown key",
            f"remove it (`pulumi config rm {_key(unknown[0])}`) or use one of: "
            + ", ".join(_key(k) for k in TOP_LEVEL_KEYS),
        )

    def top(name: str, default: Any, parse: Callable[[str, Any], T]) -> T:
        value = ours.get(name)
        if value is None:
            return default
        return parse(_key(name), _decode(value))

    hypervisor = top("hypervisor", Hypervisor.VIRTUALBOX, lambda k, v: _enum(k, v, Hypervisor))
    cluster_name = top("clusterName", "haproxy-cluster", lambda k, v: _str(k, v, _HOSTNAME, "use lowercase letters, digits and '-', at most 63 characters"))
    domain = top("domain", "kube.demo", lambda k, v: _str(k, v, _DNS_NAME, "use a DNS domain such as kube.demo"))
    cluster_network = top("clusterNetwork", None, _parse_network)
    if cluster_network is None:
        raise ConfigError(_key("clusterNetwork"), "is required", "set the cluster/VIP subnet, e.g. `pulumi config set hapx:clusterNetwork 192.168.4.0/27`")
    # 0: the cluster segment is untagged (for hosts without 802.1Q, like the CI lab's kernel).
    cluster_vlan = top("clusterVlan", 41, lambda k, v: _int(k, v, 0, 4094, "a VLAN id, or 0 for untagged"))
    dhcp_vlan = top("dhcpVlan", None, lambda k, v: _int(k, v, 1, 4094, "a VLAN id"))
    if dhcp_vlan == cluster_vlan:
        raise ConfigError(_key("dhcpVlan"), f"equals hapx:clusterVlan ({cluster_vlan})", "use a different VLAN id or remove hapx:dhcpVlan")
    vip = top("vip", None, _ipv4)
    if vip is None:
        raise ConfigError(_key("vip"), "is required", "set the floating IP, e.g. `pulumi config set hapx:vip 192.168.4.20`")
    _check_host_in(_key("vip"), vip, cluster_network, "hapx:clusterNetwork")

    nodes = _parse_nodes(_decode(ours.get("nodes")), cluster_network, hypervisor)
    backends = _parse_backends(_decode(ours.get("backends")))
    for node in nodes:
        if node.cluster_address == vip:
            raise ConfigError(_key("vip"), f"{vip} is also the clusterAddress of node {node.name}", "pick a VIP that no node or backend uses")
    for backend in backends:
        if backend.address == str(vip):
            raise ConfigError(_key("vip"), f"{vip} is also the address of backend {backend.name}", "pick a VIP that no node or backend uses")

    admin_user = top("adminUser", "debian", lambda k, v: _str(k, v, _USERNAME, "use a Linux user name such as debian"))
    if admin_user == "root":
        raise ConfigError(_key("adminUser"), "root is not allowed", "use an unprivileged user with sudo, such as debian")

    size = _Object(_key("nodeSize"), ours.get("nodeSize"), ("cpus", "memoryMb"))
    node_size = NodeSizeConfig(
        cpus=size.get("cpus", 1, lambda k, v: _int(k, v, 1, 64)),
        memory_mb=size.get("memoryMb", 512, lambda k, v: _int(k, v, 256, 1048576, "a size in MiB")),
    )

    haproxy = _parse_haproxy(ours.get("haproxy"))
    if haproxy.frontend_port == haproxy.stats_port:
        raise ConfigError(_key("haproxy.statsPort"), f"equals haproxy.frontendPort ({haproxy.frontend_port})", "use two different ports")

    coro = _Object(_key("corosync"), ours.get("corosync"), ("tokenMs", "consensusMs"))
    # 1 s, not corosync's 3 s: detection plus consensus (1.2 x token) is most
    # of a failover (docs/benchmarks.md); 1 s still rides out a busy host.
    token = coro.get("tokenMs", 1000, lambda k, v: _int(k, v, 200, 60000, "milliseconds"))
    consensus = coro.get("consensusMs", int(token * 1.2), lambda k, v: _int(k, v, 240, 72000, "milliseconds"))
    if consensus < int(token * 1.2):
        # corosync.conf(5): consensus must be at least 1.2 x token or membership flaps.
        raise ConfigError(_key("corosync.consensusMs"), f"{consensus} is less than 1.2 x tokenMs ({int(token * 1.2)})", "raise it or leave it unset (default 1.2 x tokenMs)")
    corosync = CorosyncConfig(token_ms=token, consensus_ms=consensus)

    pm = _Object(
        _key("pacemaker"),
        ours.get("pacemaker"),
        ("stickiness", "migrationThreshold", "monitorIntervalS", "monitorTimeoutS", "failureTimeoutS", "haproxyOnAllNodes", "haproxyRestart"),
    )
    pacemaker = PacemakerConfig(
        stickiness=pm.get("stickiness", 100, lambda k, v: _int(k, v, 0, 1000000)),
        migration_threshold=pm.get("migrationThreshold", 2, lambda k, v: _int(k, v, 1, 1000000)),
        # A dead haproxy is noticed within one interval (the reference: 20 s).
        monitor_interval_s=pm.get("monitorIntervalS", 5, lambda k, v: _int(k, v, 1, 3600, "seconds")),
        monitor_timeout_s=pm.get("monitorTimeoutS", 60, lambda k, v: _int(k, v, 1, 3600, "seconds")),
        failure_timeout_s=pm.get("failureTimeoutS", 60, lambda k, v: _int(k, v, 0, 86400, "seconds")),
        haproxy_on_all_nodes=pm.get("haproxyOnAllNodes", True, _bool),
        # Measured: a crash costs ~1.5 s restarted by systemd, 12-26 s waiting
        # for a monitor and a Pacemaker recovery (docs/benchmarks.md).
        haproxy_restart=pm.get(
            "haproxyRestart",
            "systemd",
            lambda k, v: _str(k, v, re.compile(r"^(systemd|pacemaker)$"), "set it to systemd (restart in place at once) or pacemaker (at the next monitor)"),
        ),
    )

    virtualbox = _parse_virtualbox(ours.get("virtualbox")) if hypervisor is Hypervisor.VIRTUALBOX else None
    if ours.get("virtualbox") is not None and hypervisor is not Hypervisor.VIRTUALBOX:
        raise ConfigError(_key("virtualbox"), f"is set but hapx:hypervisor is {hypervisor.value}", "remove hapx:virtualbox or set hapx:hypervisor virtualbox")
    qemu = _parse_qemu(ours.get("qemu")) if hypervisor is Hypervisor.QEMU else None
    if ours.get("qemu") is not None and hypervisor is not Hypervisor.QEMU:
        raise ConfigError(_key("qemu"), f"is set but hapx:hypervisor is {hypervisor.value}", "remove hapx:qemu or set hapx:hypervisor qemu")

    if qemu is not None:
        qemu = _check_lab_addresses(qemu, cluster_network, vip, nodes, backends)

    fencing = _parse_fencing(ours.get("fencing"), hypervisor, backends, virtualbox)

    if virtualbox is not None:
        mgmt_net = virtualbox.host_only_network.network
        seen: dict[ipaddress.IPv4Address, str] = {virtualbox.host_only_network.ip: "the host"}
        for i, node in enumerate(nodes):
            key = _key(f"nodes[{i}].managementAddress")
            if node.management_address is None:
                raise ConfigError(key, "is required with hapx:hypervisor virtualbox", f"give each node an address in {mgmt_net}")
            _check_host_in(key, node.management_address, mgmt_net, "hapx:virtualbox.hostOnlyNetwork")
            if node.management_address in seen:
                raise ConfigError(key, f"{node.management_address} is already used by {seen[node.management_address]}", "give every node its own management address")
            seen[node.management_address] = node.name
        if mgmt_net.overlaps(cluster_network):
            raise ConfigError(_key("virtualbox.hostOnlyNetwork"), f"{mgmt_net} overlaps hapx:clusterNetwork {cluster_network}", "use a separate subnet for host access")

    return HapxConfig(
        hypervisor=hypervisor,
        cluster_name=cluster_name,
        domain=domain,
        cluster_network=cluster_network,
        cluster_vlan=cluster_vlan,
        dhcp_vlan=dhcp_vlan,
        vip=vip,
        nodes=nodes,
        backends=backends,
        admin_user=admin_user,
        node_size=node_size,
        haproxy=haproxy,
        corosync=corosync,
        pacemaker=pacemaker,
        fencing=fencing,
        virtualbox=virtualbox,
        qemu=qemu,
    )


def _parse_network(key: str, value: Any) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(str(value).strip(), strict=True)
    except ValueError as exc:
        raise ConfigError(key, f"{value!r} is not a valid IPv4 CIDR ({exc})", "use network/prefix form with host bits zero, e.g. 192.168.4.0/27") from None
    if net.prefixlen > 29:
        raise ConfigError(key, f"/{net.prefixlen} leaves too few host addresses", "use a prefix of /29 or shorter")
    return net


def _parse_interface(key: str, value: Any) -> ipaddress.IPv4Interface:
    try:
        iface = ipaddress.IPv4Interface(str(value).strip())
    except ValueError as exc:
        raise ConfigError(key, f"{value!r} is not an address/prefix ({exc})", "use address/prefix form, e.g. 192.168.56.1/24") from None
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise ConfigError(key, f"{iface.ip} is the network or broadcast address", "use a host address inside the subnet")
    return iface


def _check_lab_addresses(
    qemu: QemuConfig,
    cluster_network: ipaddress.IPv4Network,
    vip: ipaddress.IPv4Address,
    nodes: tuple[NodeConfig, ...],
    backends: tuple[BackendConfig, ...],
) -> QemuConfig:
    """The lab's client address must be free on the cluster segment."""
    key = _key("qemu.labClientAddress")
    client = qemu.lab_client_address or list(cluster_network.hosts())[-1]
    _check_host_in(key, client, cluster_network, "hapx:clusterNetwork")
    taken = {vip: "hapx:vip", **{n.cluster_address: n.name for n in nodes}}
    taken.update({ipaddress.IPv4Address(b.address): b.name for b in backends if _is_ipv4(b.address)})
    if client in taken:
        raise ConfigError(key, f"{client} is already used by {taken[client]}", f"set hapx:qemu.labClientAddress to a free address in {cluster_network}")
    return dataclasses.replace(qemu, lab_client_address=client)


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _check_host_in(key: str, addr: ipaddress.IPv4Address, net: ipaddress.IPv4Network, net_key: str) -> None:
    if addr not in net:
        raise ConfigError(key, f"{addr} is outside {net_key} {net}", f"use an address inside {net}")
    if addr in (net.network_address, net.broadcast_address):
        raise ConfigError(key, f"{addr} is the network or broadcast address of {net}", f"use a host address inside {net}")


def _parse_nodes(value: Any, cluster_network: ipaddress.IPv4Network, hypervisor: Hypervisor) -> tuple[NodeConfig, ...]:
    key = _key("nodes")
    fix = "list at least two nodes, each with name and clusterAddress (see Pulumi.dev.yaml)"
    if value is None:
        raise ConfigError(key, "is required", fix)
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list, got {value!r}", fix)
    if len(value) < 2:
        raise ConfigError(key, f"has {len(value)} node(s); an HA pair needs at least two", fix)
    if len(value) > 16:
        raise ConfigError(key, f"has {len(value)} nodes", "use at most 16 nodes")
    nodes = []
    names: dict[str, int] = {}
    addresses: dict[ipaddress.IPv4Address, str] = {}
    for i, item in enumerate(value):
        obj = _Object(f"{key}[{i}]", item, ("name", "clusterAddress", "managementAddress"))
        name = obj.require("name", lambda k, v: _str(k, v, _HOSTNAME, "use a lowercase host name such as hapx-node01"), "give the node a host name")
        if name in names:
            raise ConfigError(f"{key}[{i}].name", f"{name!r} duplicates {key}[{names[name]}].name", "give every node a unique name")
        names[name] = i
        address = obj.require("clusterAddress", _ipv4, f"give the node an address in {cluster_network}")
        _check_host_in(f"{key}[{i}].clusterAddress", address, cluster_network, "hapx:clusterNetwork")
        if address in addresses:
            raise ConfigError(f"{key}[{i}].clusterAddress", f"{address} is already used by node {addresses[address]}", "give every node its own address")
        addresses[address] = name
        mgmt = obj.get("managementAddress", None, _ipv4)
        nodes.append(NodeConfig(name=name, cluster_address=address, management_address=mgmt, node_id=i + 1))
    return tuple(nodes)


def _parse_backends(value: Any) -> tuple[BackendConfig, ...]:
    key = _key("backends")
    fix = "list the servers HAProxy balances, each with name, address and port (see Pulumi.dev.yaml)"
    if value is None or value == []:
        raise ConfigError(key, "has no backends", fix)
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list, got {value!r}", fix)
    backends = []
    seen: dict[str, int] = {}
    endpoints: dict[tuple[str, int], str] = {}
    for i, item in enumerate(value):
        obj = _Object(f"{key}[{i}]", item, ("name", "address", "port"))
        name = obj.require("name", lambda k, v: _str(k, v, _HOSTNAME, "use letters, digits and '-'"), "name the backend server")
        if name in seen:
            raise ConfigError(f"{key}[{i}].name", f"{name!r} duplicates {key}[{seen[name]}].name", "give every backend a unique name")
        seen[name] = i
        address = obj.require("address", _backend_address, "give the backend's IPv4 address or DNS name")
        port = obj.get("port", 6443, _port)
        if (address, port) in endpoints:
            raise ConfigError(f"{key}[{i}]", f"{address}:{port} is already backend {endpoints[(address, port)]}", "list each server once")
        endpoints[(address, port)] = name
        backends.append(BackendConfig(name=name, address=address, port=port))
    return tuple(backends)


def _backend_address(key: str, value: Any) -> str:
    text = _str(key, value, hint="give an IPv4 address or a DNS name")
    if re.fullmatch(r"[\d.]+", text):
        return str(_ipv4(key, text))
    return _str(key, text.lower(), _DNS_NAME, "give an IPv4 address or a DNS name such as kube-mast01")


def _nameserver(key: str, value: Any) -> str:
    text = _str(key, value, hint="use ip:port, e.g. 192.168.4.1:53")
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "53"
    return f"{_ipv4(key, host)}:{_port(key, port)}"


def _parse_haproxy(value: Any) -> HaproxyConfig:
    obj = _Object(
        _key("haproxy"),
        value,
        ("frontendPort", "statsPort", "statsUser", "nameservers", "checkIntervalMs", "checkFall", "checkRise"),
    )
    nameservers = obj.get("nameservers", [], lambda k, v: v)
    if not isinstance(nameservers, list):
        raise ConfigError(_key("haproxy.nameservers"), f"expected a list, got {nameservers!r}", "list nameservers as ip:port strings")
    return HaproxyConfig(
        frontend_port=obj.get("frontendPort", 6443, _port),
        stats_port=obj.get("statsPort", 32700, _port),
        stats_user=obj.get("statsUser", "admin", lambda k, v: _str(k, v, re.compile(r"^[A-Za-z0-9_.-]{1,32}$"), "use letters, digits, '_', '.', '-'")),
        nameservers=tuple(_nameserver(f"{_key('haproxy.nameservers')}[{i}]", ns) for i, ns in enumerate(nameservers)),
        check_interval_ms=obj.get("checkIntervalMs", 2000, lambda k, v: _int(k, v, 100, 600000, "milliseconds")),
        check_fall=obj.get("checkFall", 3, lambda k, v: _int(k, v, 1, 100)),
        check_rise=obj.get("checkRise", 2, lambda k, v: _int(k, v, 1, 100)),
    )


def _parse_fencing(
    value: Any, hypervisor: Hypervisor, backends: tuple[BackendConfig, ...], virtualbox: Optional[VirtualBoxConfig]
) -> FencingConfig:
    obj = _Object(_key("fencing"), value, ("enabled", "pingTargets", "hostAddress", "hostUser"))
    # On by default where hapx controls the whole path (the QEMU lab); on
    # VirtualBox it needs SSH access to the host, which only the operator can give.
    enabled = obj.get("enabled", hypervisor is Hypervisor.QEMU, _bool)
    # Default targets: the backends given as addresses. A node that can reach
    # none of the servers it balances to has nothing to serve anyway.
    default_targets = tuple(b.address for b in backends if _is_ipv4(b.address))
    targets = obj.get("pingTargets", default_targets, _ping_targets)
    host_address = obj.get("hostAddress", None, _ipv4)
    host_user = obj.get("hostUser", None, lambda k, v: _str(k, v, _USERNAME, "use the user on the VirtualBox host that may run VBoxManage"))
    if hypervisor is not Hypervisor.VIRTUALBOX:
        for name, given in (("hostAddress", host_address), ("hostUser", host_user)):
            if given is not None:
                raise ConfigError(_key(f"fencing.{name}"), f"is for VirtualBox, but hapx:hypervisor is {hypervisor.value}", f"remove hapx:fencing.{name}")
    elif enabled:
        if host_user is None:
            raise ConfigError(
                _key("fencing.hostUser"),
                "is required when fencing is on with VirtualBox (fence_vbox runs VBoxManage on the host over SSH)",
                "set the host user whose authorized_keys will hold the stack's fenceHostPublicKey output, or set hapx:fencing.enabled false",
            )
        if host_address is None and virtualbox is not None:
            # The host's own address on the host-only network, which every node reaches.
            host_address = virtualbox.host_only_network.ip
    return FencingConfig(enabled=enabled, ping_targets=targets, host_address=host_address, host_user=host_user)


def _ping_targets(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list, got {value!r}", "list IPv4 addresses or DNS names the nodes should reach, or [] for none")
    targets = tuple(_backend_address(f"{key}[{i}]", v) for i, v in enumerate(value))
    if len(set(targets)) != len(targets):
        raise ConfigError(key, "lists a target twice", "list each target once")
    return targets


def _parse_virtualbox(value: Any) -> VirtualBoxConfig:
    obj = _Object(
        _key("virtualbox"),
        value,
        ("vboxmanage", "baseVm", "storageController", "internalNetwork", "hostOnlyMode", "hostOnlyName", "hostOnlyNetwork", "seedDir"),
    )
    return VirtualBoxConfig(
        vboxmanage=obj.get("vboxmanage", "VBoxManage", _str),
        base_vm=obj.get("baseVm", "debian-base-image", _str),
        storage_controller=obj.get("storageController", "SATA", _str),
        internal_network=obj.get("internalNetwork", "dmz", lambda k, v: _str(k, v, re.compile(r"^[A-Za-z0-9_.-]{1,64}$"), "use letters, digits, '_', '.', '-'")),
        host_only_mode=obj.get("hostOnlyMode", HostOnlyMode.HOSTONLYIF, lambda k, v: _enum(k, v, HostOnlyMode)),
        host_only_name=obj.get("hostOnlyName", "vboxnet0", lambda k, v: _str(k, v, _IFNAME, "use an interface name such as vboxnet0")),
        host_only_network=obj.get("hostOnlyNetwork", ipaddress.IPv4Interface("192.168.56.1/24"), _parse_interface),
        seed_dir=obj.get("seedDir", "~/.cache/hapx/seeds", _str),
    )


def _parse_qemu(value: Any) -> QemuConfig:
    obj = _Object(_key("qemu"), value, ("imageDir", "stateDir", "accel", "sshPortBase", "labNamespace", "labClientAddress"))
    accel = obj.get("accel", "auto", _str)
    if accel not in ("auto", "kvm", "tcg"):
        raise ConfigError(_key("qemu.accel"), f"{accel!r} is not one of: auto, kvm, tcg", "set it to auto (detect), kvm or tcg")
    return QemuConfig(
        image_dir=obj.get("imageDir", "~/.cache/hapx/images/current", _str),
        state_dir=obj.get("stateDir", "~/.cache/hapx/lab", _str),
        accel=accel,
        ssh_port_base=obj.get("sshPortBase", 2220, lambda k, v: _int(k, v, 1024, 65000, "a TCP port")),
        lab_namespace=obj.get("labNamespace", "hapx-lab", lambda k, v: _str(k, v, re.compile(r"^[a-z0-9][a-z0-9-]{0,14}$"), "use lowercase letters, digits and '-', at most 15 characters")),
        lab_client_address=obj.get("labClientAddress", None, _ipv4),
    )


def config_from_pulumi() -> HapxConfig:
    """Read the running stack's hapx:* config (inside a Pulumi program)."""
    from pulumi.runtime import config as runtime_config

    # The language host passes config either through the SDK's context or the
    # PULUMI_CONFIG environment; merge both so neither path is missed.
    everything = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    raw = {k: v for k, v in everything.items() if k.startswith(f"{NAMESPACE}:")}
    for name in SECRET_KEYS:
        full = _key(name)
        if full in raw and full not in secret_keys:
            raise ConfigError(full, "is stored in plain text", f"store it encrypted: `pulumi config set --secret {full} <value>` (or `pulumi config rm {full}` to have one generated)")
    return parse_config(raw)
