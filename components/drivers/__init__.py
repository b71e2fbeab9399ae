"""Hypervisor drivers: the interface (base.py) and one subpackage per hypervisor.

Only this package knows which hypervisors exist. The rest of the program asks
`driver_for` for the stack's driver and talks to it through
`base.HypervisorDriver`. Adding a hypervisor: a subpackage whose driver
implements that interface, and a line in DRIVERS.
"""

from __future__ import annotations

from ..config import HapxConfig, Hypervisor
from .base import HypervisorDriver
from .qemu import QemuDriver
from .virtualbox import VirtualBoxDriver

DRIVERS: dict[Hypervisor, type[HypervisorDriver]] = {
    Hypervisor.VIRTUALBOX: VirtualBoxDriver,
    Hypervisor.QEMU: QemuDriver,
}


def driver_for(cfg: HapxConfig, stack: str) -> HypervisorDriver:
    """The driver for the stack's hapx:hypervisor."""
    # Every Hypervisor value has an entry (tests/unit/test_drivers.py checks it).
    return DRIVERS[cfg.hypervisor](cfg, stack)


__all__ = ["DRIVERS", "HypervisorDriver", "driver_for"]
