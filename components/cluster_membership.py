"""ClusterMembership: moves the running cluster from one corosync.conf to the next (nodes added or removed, timers).

corosync.conf used to be part of every node's identity, so adding a third
node, or any corosync setting, replaced every VM. Now each node's seed still
carries the file for its first boot, and this resource carries the change to
the nodes that already run, with no VM replaced (corosync 3 reloads the
nodelist, `two_node` and the totem timers at runtime). One per cluster, before
every node's drain and VM in the graph, so:

- a node being added boots after the others know it (its seed has the new
  file; they have reloaded theirs);
- a node being removed is drained first (standby, the VIP handed over,
  its cluster stack stopped: a clean leave, not a node to fence), then the
  others reload the nodelist without it and Pacemaker forgets it; Pulumi
  deletes its VM at the end of the same `up`.

A Pulumi dynamic resource (the same provider host as NodeDrain) because the
work depends on the *old* membership, which only an update sees:
- create: records the file and touches nothing (a first build: the seeds
  carry it);
- update: drains the nodes that leave (templates/roll/drain.sh.j2, refusing
  to break the service or quorum), installs the new file on every node that
  stays, then reloads it and forgets the nodes that left, from one of them
  (templates/cluster/); a node that does not answer SSH is skipped and said
  so in `lastChange` (it reads the file from its seed when it is rebuilt);
- read and delete: nothing on the nodes (the cluster goes with its VMs).
Each step is idempotent: a re-run after an interrupted `up` finishes the move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
from pulumi import dynamic
from pulumi_command import remote

from .node_drain import DRAIN_SSH_TRIES, DRAIN_TIMEOUT_S, drain_script
from .node_state import UNKNOWN, NodeUnreachable, connection_props, run_on_node, sha256_hex
from .rendering import render_template

COROSYNC_CONF_PATH = "/etc/corosync/corosync.conf"
RELOAD_TIMEOUT_S = 120
# How long a node that left must stay out of Pacemaker's node list before the
# reload counts it forgotten (templates/cluster/reload-membership.sh.j2).
FORGOTTEN_SETTLE_S = 5
PUSH_TIMEOUT_S = 60


def push_script(path: str = COROSYNC_CONF_PATH) -> str:
    return render_template("cluster/push-corosync-conf.sh.j2", path=path)


def reload_script(
    leaving: Sequence[str], node_count: int, timeout_s: int = RELOAD_TIMEOUT_S, settle_s: int = FORGOTTEN_SETTLE_S
) -> str:
    return render_template(
        "cluster/reload-membership.sh.j2",
        leaving=list(leaving),
        node_count=node_count,
        timeout_s=timeout_s,
        settle_s=settle_s,
    )


def names(members: Sequence[dict]) -> list[str]:
    return [m["node"] for m in members]


def plan(olds: dict, news: dict) -> tuple[list[dict], list[dict]]:
    """The members that leave (with their old connections) and those that stay (with their new ones)."""
    old_names, new_names = set(names(olds.get("members", []))), set(names(news["members"]))
    leaving = [m for m in olds.get("members", []) if m["node"] not in new_names]
    staying = [m for m in news["members"] if m["node"] in old_names]
    return leaving, staying


def move(olds: dict, news: dict) -> str:
    """Take the running cluster from the old membership and file to the new ones; what happened, in one line."""
    leaving, staying = plan(olds, news)
    said: list[str] = []
    for member in leaving:
        script = drain_script(member["node"], require_peer=True)
        try:
            run_on_node(member["connection"], script, timeout_s=DRAIN_TIMEOUT_S + 60, tries=DRAIN_SSH_TRIES)
            said.append(f"{member['node']} drained")
        except NodeUnreachable:
            said.append(f"{member['node']} gone already")
    reachable: list[dict] = []
    for member in staying:
        try:
            out = run_on_node(member["connection"], push_script(), stdin=news["corosyncConf"], timeout_s=PUSH_TIMEOUT_S, tries=DRAIN_SSH_TRIES)
        except NodeUnreachable:
            said.append(f"{member['node']} not updated (no answer)")
            continue
        reachable.append(member)
        said.append(f"{member['node']}: {out.strip().splitlines()[-1] if out.strip() else 'pushed'}")
    if reachable:
        script = reload_script([m["node"] for m in leaving], len(news["members"]))
        out = run_on_node(reachable[0]["connection"], script, timeout_s=RELOAD_TIMEOUT_S + 60)
        said.append(out.strip().splitlines()[-1] if out.strip() else "reloaded")
    return "; ".join(said) or "nothing to do"


def changed(olds: dict, news: dict) -> bool:
    if news.get("corosyncConfSha256") == UNKNOWN or olds.get("corosyncConfSha256") != news.get("corosyncConfSha256"):
        return True
    return names(olds.get("members", [])) != names(news["members"])


class ClusterMembershipProvider(dynamic.ResourceProvider):
    def create(self, props: dict) -> dynamic.CreateResult:
        return dynamic.CreateResult("membership", dict(props, lastChange="none: created"))

    def diff(self, _id: str, olds: dict, news: dict) -> dynamic.DiffResult:
        # A new connection alone (other keys, ports) is recorded, not acted on.
        changes = changed(olds, news) or olds.get("members") != news.get("members")
        return dynamic.DiffResult(changes=changes, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict, news: dict) -> dynamic.UpdateResult:
        last = move(olds, news) if changed(olds, news) else olds.get("lastChange", "none")
        return dynamic.UpdateResult(dict(news, lastChange=last))

    def read(self, id_: str, props: dict) -> dynamic.ReadResult:
        return dynamic.ReadResult(id_, props)

    def delete(self, _id: str, _props: dict) -> None:
        return None


@dataclass
class ClusterMember:
    # The node's name: its hostname, its corosync and Pacemaker name.
    node: str
    # Its own SSH connection (host key pinned, private key secret), known from config: no VM output.
    connection: remote.ConnectionArgs


@dataclass
class ClusterMembershipArgs:
    members: Sequence[ClusterMember]
    # The rendered corosync.conf every member gets (no secrets in it: the authkey is a file of its own).
    corosync_conf: str


class ClusterMembership(dynamic.Resource, module="hapx", name="ClusterMembership"):
    last_change: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterMembershipArgs, opts: Optional[pulumi.ResourceOptions] = None):
        props: dict[str, Any] = {
            "members": [{"node": m.node, "connection": connection_props(m.connection)} for m in args.members],
            "corosyncConf": args.corosync_conf,
            "corosyncConfSha256": sha256_hex(args.corosync_conf),
            "lastChange": None,  # an output: what the last update did
        }
        # The connections hold the private key: secret as a whole.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["members"]))
        super().__init__(ClusterMembershipProvider(), name, props, opts)
        self.last_change = getattr(self, "lastChange")
