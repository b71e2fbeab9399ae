"""The VirtualBox driver: hapx nodes as VirtualBox VMs driven by VBoxManage (the reference design)."""

from .driver import VirtualBoxDriver

__all__ = ["VirtualBoxDriver"]
