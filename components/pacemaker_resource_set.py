"""PacemakerResourceSet: the VIP and haproxy as Pacemaker resources, applied over SSH.

Three steps on the first node, each a remote command: wait until every node
is online with a DC elected; load the crm script (on stdin) with
`crm configure load update` and check the live CIB; wait until the VIP and
haproxy run together on one node. A change to the crm script, or a replaced
node, updates in place (the script is re-loaded); nothing is torn down to
apply it.

Nothing here has a delete command. One that took hapx's resources out of
the CIB ran, in a roll stopped and re-run, as the delete of the replaced
`apply` after its replacement had loaded the script: the VIP stopped on a
serving cluster. The CIB goes with the VMs on a destroy, and what a config
no longer has is removed by the apply script itself (`stale_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
from pulumi_command import remote

from .fencing import FENCE_HEURISTICS_ID
from .rendering import ALL_CRM_IDS, HAPROXY_CLONE_ID, SETTLED_ATTRIBUTE, VIP_ID, render_template

CLUSTER_FORM_TIMEOUT_S = 600
VIP_PLACE_TIMEOUT_S = 180


def apply_script(ids: Sequence[str], offline: bool = False) -> str:
    """The apply script for a crm script that defines `ids`.

    `offline` is for tests against a CIB file: no cluster to ask about
    quorum, and crmsh must not look up agents this host lacks."""
    return render_template(
        "pacemaker/apply.sh.j2",
        ids=ids,
        stale_ids=[i for i in ALL_CRM_IDS if i not in ids],
        keep_fencing_levels=FENCE_HEURISTICS_ID in ids,
        offline=offline,
    )


def render_wait_vip(vip_handover_after_s: Optional[int]) -> str:
    """The check that the VIP is placed (and, with the VIP's rule against the DC, handed over to a settled node)."""
    avoids_dc = vip_handover_after_s is not None
    return render_template(
        "pacemaker/wait-vip.sh.j2",
        vip_id=VIP_ID,
        haproxy_id=HAPROXY_CLONE_ID,
        settled_attribute=SETTLED_ATTRIBUTE if avoids_dc else "",
        handover_after_s=vip_handover_after_s,
        # The settle count starts when a node joins, at the latest when this wait begins.
        timeout_s=VIP_PLACE_TIMEOUT_S + (vip_handover_after_s or 0),
    )


@dataclass
class PacemakerResourceSetArgs:
    # Where crm runs: a node's own connection (any node sees the whole CIB).
    connection: remote.ConnectionArgs
    node_count: int
    crm_script: pulumi.Input[str]
    # The CIB ids the crm script defines (rendering.crm_ids of the fence plan).
    crm_ids: Sequence[str]
    # Change when any node VM is replaced, so the set is applied and checked again.
    node_instance_ids: Sequence[pulumi.Input[str]] = field(default_factory=list)
    # Per-node steps that must be done before the cluster is configured
    # (nodes ready, haproxy.cfg and stats credentials in place).
    nodes_configured: Sequence[pulumi.Resource] = field(default_factory=list)
    # hapx:pacemaker.vipHandoverAfterS when the VIP's rule against the DC is on (else None): the wait for the VIP
    # then also waits for the nodes to be settled and the handover done.
    vip_handover_after_s: Optional[int] = None


class PacemakerResourceSet(pulumi.ComponentResource):
    crm_sha: pulumi.Output[str]
    vip_node_at_apply: pulumi.Output[str]

    def __init__(self, name: str, args: PacemakerResourceSetArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hapx:index:PacemakerResourceSet", name, None, opts)
        self.cluster_formed = remote.Command(
            f"{name}-cluster-formed",
            connection=args.connection,
            create=render_template(
                "pacemaker/wait-cluster.sh.j2", node_count=args.node_count, timeout_s=CLUSTER_FORM_TIMEOUT_S
            ),
            triggers=list(args.node_instance_ids),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.nodes_configured)),
        )
        self.apply = remote.Command(
            f"{name}-apply",
            connection=args.connection,
            create=apply_script(args.crm_ids),
            update=apply_script(args.crm_ids),
            # Config goes on stdin, not in the command string; a change to it
            # updates in place and re-runs the load. So does a replaced node
            # (its instance id is a comment line): a replacement of this
            # command would run the old one's delete, which takes hapx's
            # resources out of the live cluster.
            stdin=pulumi.Output.all(args.crm_script, *args.node_instance_ids).apply(
                lambda parts: parts[0] + "".join(f"\n# node instance {i}" for i in parts[1:]) + "\n"
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.cluster_formed],
                # Stacks made before the instance ids moved to stdin still
                # have them as triggers: a change there must not replace this.
                # (Not `deleted_with` a VM either: Pulumi replaces whatever is
                # deleted with a VM it replaces.)
                ignore_changes=["triggers"],
            ),
        )
        wait_vip = render_wait_vip(args.vip_handover_after_s)
        self.vip_placed = remote.Command(
            f"{name}-vip-placed",
            connection=args.connection,
            create=wait_vip,
            update=wait_vip,
            # The applied script's hash, on stdin (the script ignores it): a
            # new apply re-runs this check as an update, not a replacement.
            stdin=self.apply.stdout,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.apply]),
        )
        self.crm_sha = self.apply.stdout.apply(lambda out: out.rsplit("sha256=", 1)[-1].strip())
        # Where the VIP ran when hapx last applied the set; it moves on failover.
        self.vip_node_at_apply = self.vip_placed.stdout.apply(lambda out: out.strip().split("=", 1)[-1])
        self.register_outputs({"crmSha": self.crm_sha, "vipNodeAtApply": self.vip_node_at_apply})
