"""NodeDrain: takes a node out of service before its VM is replaced.

A replaced VM used to vanish under the cluster: the surviving node saw a lost
node, fenced it, and when both nodes were replaced at once the VIP went dark.
One NodeDrain per node sits before the node's VM in the graph (the VM depends
on it) and carries the same replacement key as the VM's triggers. When the
key changes, the VM is about to be replaced, so the drain's update runs first
on the old VM (templates/roll/drain.sh.j2): standby, the VIP handed over,
nothing left running, the cluster stack stopped. The node's rejoin step
(templates/roll/rejoin.sh.j2, in HaproxyCluster) brings the new VM into
service. With `hapx:rollout: rolling` the next node's drain depends on this
node's rejoin, so `pulumi up` replaces one node at a time and
`pulumi preview` shows that order.

It is a Pulumi dynamic resource (same provider host as NodeState) because
the work is tied to a *change* of the key, which only an update sees:
- create: records the key and touches nothing (a first build has no node
  yet; a stack made before this resource existed keeps its running nodes);
- update with a new key: drains the node; a node that does not answer SSH
  (gone already, or never built) has nothing to drain, which the outputs say;
- update with the same key (the rollout mode or connection changed): records;
- read and delete: nothing on the node.
An interrupted `up` re-runs cleanly: a drain that failed left the old key in
state and runs again; one that finished is not repeated, and the drain script
is idempotent anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
from pulumi import dynamic
from pulumi_command import remote

from .node_state import UNKNOWN, NodeUnreachable, connection_props, run_on_node
from .rendering import VIP_ID, render_template

DRAIN_TIMEOUT_S = 300
# A node that is not there refuses at once (QEMU's forwarded port) or has no
# route within seconds (VirtualBox): two tries are enough to tell.
DRAIN_SSH_TRIES = 2
NOT_DRAINED = "not drained: no node answered"


def drain_script(node: str, require_peer: bool) -> str:
    return render_template(
        "roll/drain.sh.j2", node=node, require_peer=require_peer, vip_id=VIP_ID, timeout_s=DRAIN_TIMEOUT_S
    )


def key_changed(olds: dict, news: dict) -> bool:
    return news.get("replaceKey") == UNKNOWN or olds.get("replaceKey") != news.get("replaceKey")


def drain(props: dict) -> str:
    """Drain the node; what happened, in one line."""
    script = drain_script(props["node"], bool(props["requirePeer"]))
    try:
        out = run_on_node(props["connection"], script, timeout_s=DRAIN_TIMEOUT_S + 60, tries=DRAIN_SSH_TRIES)
    except NodeUnreachable:
        return NOT_DRAINED
    return out.strip().splitlines()[-1] if out.strip() else "drained"


class NodeDrainProvider(dynamic.ResourceProvider):
    def create(self, props: dict) -> dynamic.CreateResult:
        return dynamic.CreateResult(props["node"], dict(props, lastDrain="none: created"))

    def diff(self, _id: str, olds: dict, news: dict) -> dynamic.DiffResult:
        changes = key_changed(olds, news) or any(olds.get(k) != news.get(k) for k in ("node", "connection", "requirePeer"))
        return dynamic.DiffResult(changes=changes, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict, news: dict) -> dynamic.UpdateResult:
        last = drain(news) if key_changed(olds, news) else olds.get("lastDrain", "none")
        return dynamic.UpdateResult(dict(news, lastDrain=last))

    def read(self, id_: str, props: dict) -> dynamic.ReadResult:
        return dynamic.ReadResult(id_, props)

    def delete(self, _id: str, _props: dict) -> None:
        return None


@dataclass
class NodeDrainArgs:
    # The node's name: its hostname and its name in Pacemaker.
    node: str
    # The node's own SSH connection (host key pinned, private key secret).
    connection: remote.ConnectionArgs
    # What replaces the VM when it changes: the VM's own triggers.
    replace_key: pulumi.Input[str]
    # Refuse to drain unless another node is in service (rolling); with
    # all-at-once every node drains at once and the service stops meanwhile.
    require_peer: bool


class NodeDrain(dynamic.Resource, module="hapx", name="NodeDrain"):
    # The key the node was last drained for (or created with): the rejoin
    # step re-runs when it changes, so a drained node always comes back.
    replace_key: pulumi.Output[str]
    last_drain: pulumi.Output[str]

    def __init__(self, name: str, args: NodeDrainArgs, opts: Optional[pulumi.ResourceOptions] = None):
        props: dict[str, Any] = {
            "node": args.node,
            "connection": connection_props(args.connection),
            "replaceKey": pulumi.Output.secret(args.replace_key),
            "requirePeer": args.require_peer,
            "lastDrain": None,  # an output: what the last drain did
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["connection", "replaceKey"])
        )
        super().__init__(NodeDrainProvider(), name, props, opts)
        self.replace_key = getattr(self, "replaceKey")
        self.last_drain = getattr(self, "lastDrain")
