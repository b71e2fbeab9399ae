"""Names of the QEMU lab's host-side network pieces, shared by the driver,
the lab network component and the lab harness (which must find them again)."""

from __future__ import annotations

import hashlib

LAB_BRIDGE = "hapx-br"


def lab_device(vlan: int) -> str:
    """Where the lab's own addresses live: on the bridge, or a VLAN on it."""
    return f"{LAB_BRIDGE}.{vlan}" if vlan else LAB_BRIDGE


def tap_name(stack: str, node: str) -> str:
    """The host side of a node's cluster NIC. Interface names are at most 15
    characters and unique on the host, so the name is a hash of stack and node."""
    return "hxt" + hashlib.sha256(f"{stack}/{node}".encode()).hexdigest()[:10]
