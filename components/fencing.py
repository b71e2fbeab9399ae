"""Fencing (STONITH) in one place: what each hypervisor's fence path is, as data.

A `FencePlan` says which agent fences a node, with which parameters, which
credential it presents and where that credential lives. The drivers pick
their plan (`HypervisorDriver.fence_plan`); the crm template renders it; the
cluster component installs the credential. Every fence secret's path is
defined here and nowhere else:

- QEMU lab: a generated password. Nodes: `NODE_PASSWORD_PATH` (read by
  `fence_hapx_qemu` through `password_script`, never in the CIB). Lab host:
  `host_password_path(stack_dir)`, read by tools/qemu_fence_host.py.
- VirtualBox: a generated SSH key for `fence_vbox`. Nodes:
  `NODE_VBOX_KEY_PATH`; its public half is the stack's `fenceHostPublicKey`
  output, for the VirtualBox host user's authorized_keys.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import Enum
from typing import Optional

from .config import HapxConfig

# Pacemaker ids of the fence resources (removed again on destroy).
FENCE_DEVICE_ID = "hapx-fence"
FENCE_HEURISTICS_ID = "hapx-fence-ping"
FENCE_ORDER_ID = "hapx-vip-before-fence"

# Fence credentials on the nodes (root only, written from stdin).
NODE_PASSWORD_PATH = "/etc/hapx/fence-secret"
NODE_VBOX_KEY_PATH = "/etc/hapx/fence-vbox-key"

# Where a QEMU lab node reaches the host's fence helper: an address of its
# user-mode network that QEMU forwards to the helper (guestfwd).
QEMU_FENCE_ADDRESS = "10.0.2.100"
QEMU_FENCE_PORT = 1229
QEMU_AGENT = "fence_hapx_qemu"

# Heuristics (1 s) plus the power-off; generous for a busy host.
FENCE_TIMEOUT_S = 60


def host_password_path(stack_dir: str) -> str:
    """The QEMU lab host's copy of the fence password (tools/qemu_fence_host.py reads it)."""
    return os.path.join(stack_dir, "fence-secret")


class FenceCredential(str, Enum):
    """What a node's fence agent presents, generated per stack (components/stack_secrets.py)."""

    PASSWORD = "password"  # to the QEMU lab's host helper
    SSH_KEY = "ssh-key"  # to the VirtualBox host's sshd (fence_vbox)


# A crm `params` value needs quotes when it holds anything but these.
_CRM_BARE_VALUE = re.compile(r"^[A-Za-z0-9_./:@-]+$")


@dataclass(frozen=True)
class FencePlan:
    """The STONITH resources for the crm script (see templates/pacemaker.crm.j2)."""

    agent: str
    # crm `params` of the device, in order; no secrets (they stay in files on the nodes).
    params: tuple[tuple[str, str], ...]
    credential: FenceCredential
    credential_path: str  # where the credential is installed on each node
    # hapx's own agent, installed on each node from templates/node/ (None:
    # the agent comes with fence-agents).
    agent_template: Optional[str]
    nodes: tuple[str, ...]
    host_map: str  # node:plug;... (the VM name the agent powers off)
    # Targets for a fence_heuristics_ping level in front of the device
    # (empty: no such level; hapx's QEMU agent checks them itself).
    ping_targets: tuple[str, ...]
    timeout_s: int = FENCE_TIMEOUT_S
    device_id: str = FENCE_DEVICE_ID
    heuristics_id: str = FENCE_HEURISTICS_ID
    order_id: str = FENCE_ORDER_ID

    @property
    def params_text(self) -> str:
        """The params as crm writes them: key=value, quoted where needed."""
        return " ".join(
            f"{key}={value}" if _CRM_BARE_VALUE.match(value) else f'{key}="{value}"' for key, value in self.params
        )

    @property
    def crm_ids(self) -> tuple[str, ...]:
        return (self.order_id, self.device_id) + ((self.heuristics_id,) if self.ping_targets else ())


def _host_map(cfg: HapxConfig) -> str:
    # VM names are node names for both drivers (HypervisorDriver.vm_name).
    return ";".join(f"{n.name}:{n.name}" for n in cfg.nodes)


def qemu_lab_plan(cfg: HapxConfig) -> FencePlan:
    """hapx's agent asks the lab host's helper (through guestfwd) to reset the peer's QEMU."""
    params = [
        ("ip", QEMU_FENCE_ADDRESS),
        ("ipport", str(QEMU_FENCE_PORT)),
        ("password_script", f"cat {NODE_PASSWORD_PATH}"),
    ]
    if cfg.fencing.ping_targets:
        # The agent checks them itself, in the same run as the reset.
        params.append(("ping_targets", ",".join(cfg.fencing.ping_targets)))
    return FencePlan(
        agent=QEMU_AGENT,
        params=tuple(params),
        credential=FenceCredential.PASSWORD,
        credential_path=NODE_PASSWORD_PATH,
        agent_template=f"node/{QEMU_AGENT}",
        nodes=tuple(n.name for n in cfg.nodes),
        host_map=_host_map(cfg),
        ping_targets=(),
    )


def fence_vbox_plan(cfg: HapxConfig) -> FencePlan:
    """fence-agents' fence_vbox runs VBoxManage on the VirtualBox host over SSH."""
    params = (
        ("ip", str(cfg.fencing.host_address)),
        ("username", str(cfg.fencing.host_user)),
        ("identity_file", NODE_VBOX_KEY_PATH),
    )
    return FencePlan(
        agent="fence_vbox",
        params=params,
        credential=FenceCredential.SSH_KEY,
        credential_path=NODE_VBOX_KEY_PATH,
        agent_template=None,
        nodes=tuple(n.name for n in cfg.nodes),
        host_map=_host_map(cfg),
        # A level in front of the device: a node cut off from these does not fence.
        ping_targets=cfg.fencing.ping_targets,
    )
