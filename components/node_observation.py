"""What the drift check reads on a node, and how it compares it with what hapx declared.

Pure functions, no Pulumi and no I/O: the node's report (the output of
templates/drift/read-node-state.sh.j2, one SSH round trip) is parsed here, the
CIB's configuration is reduced to the part hapx owns in a canonical form, and
the differences are named. components/node_state.py runs the script and acts
on the result.
"""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional
from xml.sax.saxutils import quoteattr

REPORT_HEADER = "hapx-node-state 1"
REPORT_END = "end"
# A haproxy.cfg the node does not have.
MISSING = "missing"
# An object hapx applied that the live CIB no longer has.
ABSENT = "absent"
# The drift when the checking node's CIB cannot be read (Pacemaker not running there).
CIB_UNAVAILABLE = {"cib": "unavailable"}

# The node as hapx declares it: in the cluster, running resources.
DECLARED_NODE = {"online": True, "standby": False, "maintenance": False}

# Cluster properties hapx's crm script sets: compared with what hapx applied.
APPLIED_PROPERTIES = ("cluster-name", "stonith-enabled", "stonith-timeout", "no-quorum-policy", "transition-delay")
# Properties that take every resource out of service. hapx never sets them:
# set to true, they are drift whatever hapx applied.
OUT_OF_SERVICE_PROPERTIES = ("maintenance-mode", "stop-all-resources")
TRACKED_PROPERTIES = APPLIED_PROPERTIES + OUT_OF_SERVICE_PROPERTIES
# How Pacemaker spells true.
_TRUE = ("true", "on", "yes", "y", "1")
PROPERTY_PREFIX = "property:"
FENCING_LEVEL_PREFIX = "fencing-level:"
RSC_DEFAULTS_KEY = "rsc_defaults:rsc-options"
# Attributes through which a constraint names a resource.
_CONSTRAINT_REFS = ("rsc", "with-rsc", "first", "then")


class NodeReportError(ValueError):
    """The node's report is not what the read script prints (cut short, or another program answered)."""


@dataclass(frozen=True)
class NodeObservation:
    hostname: str
    # sha256 of /etc/haproxy/haproxy.cfg, or MISSING.
    haproxy_cfg_sha256: str
    # DECLARED_NODE's keys, as this node's Pacemaker sees itself.
    node: dict
    # `cibadmin --query --scope configuration`; None when not asked for or unavailable.
    cib_configuration: Optional[str]
    # Whether the read script asked for the CIB (the node that checks the cluster).
    cib_asked: bool


def _decode(value: str, what: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise NodeReportError(f"the node's {what} is not valid base64 text: {exc}") from exc


def parse_node_report(text: str, node: str) -> NodeObservation:
    """The read script's output for `node`: one `key value` per line between its header and `end`."""
    lines = text.strip().splitlines()
    if not lines or lines[0].strip() != REPORT_HEADER:
        raise NodeReportError(f"the node's report does not start with {REPORT_HEADER!r}: {text[:200]!r}")
    if lines[-1].strip() != REPORT_END:
        raise NodeReportError("the node's report is cut short (no end line)")
    fields: dict[str, str] = {}
    for line in lines[1:-1]:
        key, _, value = line.partition(" ")
        fields[key] = value.strip()
    for key in ("hostname", "haproxy-cfg-sha256", "crm-mon"):
        if key not in fields:
            raise NodeReportError(f"the node's report has no {key!r} line")
    crm_mon = fields["crm-mon"]
    node_state = node_state_from_crm_mon(_decode(crm_mon, "crm_mon output") if crm_mon != "unavailable" else None, node)
    cib = fields.get("cib")
    return NodeObservation(
        hostname=fields["hostname"],
        haproxy_cfg_sha256=fields["haproxy-cfg-sha256"],
        node=node_state,
        cib_configuration=_decode(cib, "CIB") if cib and cib != "unavailable" else None,
        cib_asked=cib is not None,
    )


def node_state_from_crm_mon(xml_text: Optional[str], node: str) -> dict:
    """The node's own entry of `crm_mon --output-as=xml`: online, standby, in maintenance.

    No answer from Pacemaker (not running on the node) or no entry for the
    node reads as offline."""
    offline = {"online": False, "standby": False, "maintenance": False}
    if not xml_text:
        return offline
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise NodeReportError(f"crm_mon's XML does not parse: {exc}") from exc
    for entry in root.iter("node"):
        # <nodes><node name=... online=...>; node_history has <node name=...> without state.
        if entry.get("name") == node and entry.get("online") is not None:
            return {key: entry.get(key) == "true" for key in ("online", "standby", "maintenance")}
    return offline


def _canonical(element: ET.Element) -> str:
    """One element as text that does not depend on attribute or child order, nor on whitespace."""
    attributes = "".join(f" {name}={quoteattr(value)}" for name, value in sorted(element.attrib.items()))
    children = "".join(sorted(_canonical(child) for child in element))
    return f"<{element.tag}{attributes}>{children}</{element.tag}>"


def canonical_pacemaker(configuration_xml: str, hapx_ids: Iterable[str]) -> dict[str, str]:
    """The part of the CIB's configuration hapx owns, keyed so a change names what changed.

    - every resource and constraint whose id is one of hapx's, by its id;
    - any other constraint on a hapx resource (a `crm resource move` leaves
      one that pins the VIP), by its id;
    - fencing levels that use a hapx fence device, as `fencing-level:<target>:<index>`;
    - the resource defaults hapx sets, as `rsc_defaults:rsc-options`;
    - APPLIED_PROPERTIES that are set, and OUT_OF_SERVICE_PROPERTIES that are
      true, as `property:<name>` (their value).
    Values are canonical XML (attributes and children sorted)."""
    ids = set(hapx_ids)
    try:
        root = ET.fromstring(configuration_xml)
    except ET.ParseError as exc:
        raise NodeReportError(f"the CIB's configuration does not parse: {exc}") from exc
    configuration = root if root.tag == "configuration" else root.find("configuration")
    if configuration is None:
        raise NodeReportError("the CIB has no configuration section")
    found: dict[str, str] = {}
    for resource in configuration.findall("resources/*"):
        if resource.get("id") in ids:
            found[resource.get("id")] = _canonical(resource)
    for constraint in configuration.findall("constraints/*"):
        refs = {constraint.get(attr) for attr in _CONSTRAINT_REFS} | {
            ref.get("id") for ref in constraint.iter("resource_ref")
        }
        if constraint.get("id") in ids or refs & ids:
            found[constraint.get("id")] = _canonical(constraint)
    for level in configuration.findall("fencing-topology/fencing-level"):
        if set((level.get("devices") or "").split(",")) & ids:
            found[f"{FENCING_LEVEL_PREFIX}{level.get('target')}:{level.get('index')}"] = _canonical(level)
    for defaults in configuration.findall("rsc_defaults/meta_attributes"):
        if defaults.get("id") == "rsc-options":
            found[RSC_DEFAULTS_KEY] = _canonical(defaults)
    for nvpair in configuration.findall("crm_config/cluster_property_set/nvpair"):
        name, value = nvpair.get("name"), nvpair.get("value") or ""
        if name in APPLIED_PROPERTIES or (name in OUT_OF_SERVICE_PROPERTIES and value.lower() in _TRUE):
            found[f"{PROPERTY_PREFIX}{name}"] = value
    return found


def as_applied(live: Mapping[str, str], hapx_ids: Iterable[str]) -> dict[str, str]:
    """What hapx applied, taken from the live CIB right after the resource set
    applied its crm script: without what hapx never makes (constraints of
    other ids on its resources, out-of-service properties), so that such a
    leftover is drift from the start."""
    ids = set(hapx_ids)
    out_of_service = {f"{PROPERTY_PREFIX}{name}" for name in OUT_OF_SERVICE_PROPERTIES}

    def hapx_made(key: str) -> bool:
        if key.startswith(PROPERTY_PREFIX):
            return key not in out_of_service
        return key in ids or key.startswith(FENCING_LEVEL_PREFIX) or key == RSC_DEFAULTS_KEY

    return {key: value for key, value in live.items() if hapx_made(key)}


def pacemaker_drift(applied: Mapping[str, str], observed: Mapping[str, str]) -> dict[str, str]:
    """What differs from what hapx applied: each key's live value, or ABSENT when it is gone."""
    return {
        key: observed.get(key, ABSENT)
        for key in sorted(set(applied) | set(observed))
        if applied.get(key) != observed.get(key)
    }


@dataclass(frozen=True)
class PacemakerRestore:
    """What a restore does beyond re-applying hapx's crm script, which puts
    back hapx's own objects and properties but adds only."""

    # Constraints on hapx resources that hapx did not apply (delete them).
    extra_constraints: tuple[str, ...]
    # Tracked properties to set back: name -> value, None to delete it.
    properties: tuple[tuple[str, Optional[str]], ...]


def pacemaker_restore(applied: Mapping[str, str], drift: Mapping[str, str]) -> PacemakerRestore:
    extra = tuple(
        key
        for key in drift
        if key not in applied
        and key not in CIB_UNAVAILABLE
        and not key.startswith((PROPERTY_PREFIX, FENCING_LEVEL_PREFIX))
        and key != RSC_DEFAULTS_KEY
    )
    properties = tuple(
        (key[len(PROPERTY_PREFIX) :], applied.get(key)) for key in drift if key.startswith(PROPERTY_PREFIX)
    )
    return PacemakerRestore(extra_constraints=extra, properties=properties)
