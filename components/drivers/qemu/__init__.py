"""The QEMU driver: hapx nodes as local QEMU processes (the lab and CI)."""

from .driver import QemuDriver

__all__ = ["QemuDriver"]
