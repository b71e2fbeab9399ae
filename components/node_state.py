"""NodeState: what hapx declares about a running node, read back on `pulumi refresh`.

The remote commands that push haproxy.cfg and apply the crm script run once
and read nothing back, so a hand edit on a live node (a hapx constraint
deleted, a node left in standby, haproxy.cfg edited) never showed in state.
One NodeState per node closes that loop. It is a Pulumi dynamic resource: its
provider (NodeStateProvider, below) runs in the program's own virtualenv,
started by the engine through engine/pulumi-resource-pulumi-python.

- refresh (`read`): one SSH round trip (templates/drift/read-node-state.sh.j2)
  gives haproxy.cfg's sha256, the node's own state in Pacemaker and, on the
  one node that checks the cluster-wide CIB, hapx's part of the CIB, which is
  compared with what hapx applied (`pacemakerApplied`, recorded right after
  the crm script was applied) into `pacemakerDrift`. What differs shows as a
  diff of these outputs.
- up (`diff`, `update`): observed differs from declared, so the resource is
  updated: the update reads the node again, restores only what differs
  (haproxy.cfg pushed and haproxy reloaded, the node put back online, the crm
  script re-applied on the checking node only, hand-made constraints and
  properties taken out), reads once more and fails unless the node is as
  declared. Nothing here is ever replaced, and no VM depends on it.
- delete: nothing on the node belongs to the check.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
from pulumi import dynamic
from pulumi_command import remote

from .node_observation import (
    CIB_UNAVAILABLE,
    DECLARED_NODE,
    MISSING,
    NodeObservation,
    as_applied,
    canonical_pacemaker,
    pacemaker_drift,
    pacemaker_restore,
    parse_node_report,
)
from .pacemaker_resource_set import apply_script
from .rendering import HAPROXY_CFG_PATH, STATS_ENV_PATH, render_template

# A node put back online may have to start corosync and pacemaker and rejoin first.
NODE_ONLINE_TIMEOUT_S = 300
# Bounds of one SSH command: connecting (per try), and the whole command.
SSH_CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 120
RESTORE_TIMEOUT_S = NODE_ONLINE_TIMEOUT_S + 120
# ssh's own failures (exit status 255: refused, timed out) are tried again,
# this many times, this far apart: a busy TCG guest can be slow to answer.
SSH_TRIES = 4
SSH_RETRY_PAUSE_S = 5
SSH_FAILED = 255
# What the Python SDK hands a provider for a value not known yet (a preview).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


class NodeStateError(RuntimeError):
    """The node is not as declared, or could not be read."""


class NodeUnreachable(NodeStateError):
    """ssh itself failed (refused, timed out, no route) on every try."""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- SSH ------------------------------------------------------------------------


def run_on_node(
    connection: dict, script: str, stdin: str = "", timeout_s: float = READ_TIMEOUT_S, tries: int = SSH_TRIES
) -> str:
    """Run `script` with `sh` on the node over SSH, `stdin` on its standard
    input; its standard output. The node's host key is pinned; the private key
    exists only in a private temporary directory for the command's length.
    ssh's own failures are tried `tries` times; the last raises NodeUnreachable."""
    ssh = shutil.which("ssh")
    if ssh is None:
        raise NodeStateError("hapx: the drift check needs the OpenSSH client (`ssh`) on PATH")
    host, port, user = connection["host"], int(connection["port"]), connection["user"]
    with tempfile.TemporaryDirectory(prefix="hapx-ssh-") as tmp:
        key_file = os.path.join(tmp, "key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            key = connection["privateKey"]
            f.write(key if key.endswith("\n") else key + "\n")
        known_hosts = os.path.join(tmp, "known_hosts")
        with open(known_hosts, "w") as f:
            f.write(f"hapx-node {connection['hostKey'].strip()}\n")
        command = [
            ssh, "-F", "/dev/null", "-i", key_file, "-p", str(port),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "HostKeyAlias=hapx-node",
            "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT_S}", "-o", "ServerAliveInterval=10",
            "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR",
            f"{user}@{host}", "sh -c " + shlex.quote(script),
        ]  # fmt: skip
        for attempt in range(1, tries + 1):
            try:
                proc = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise NodeStateError(f"hapx: the command on {user}@{host}:{port} did not end within {timeout_s:.0f}s") from None
            if proc.returncode == 0:
                return proc.stdout
            if proc.returncode == SSH_FAILED and attempt == tries:
                raise NodeUnreachable(f"hapx: cannot reach {user}@{host}:{port} over SSH: {proc.stderr.strip()[-2000:]}")
            if proc.returncode != SSH_FAILED:
                raise NodeStateError(
                    f"hapx: the command on {user}@{host}:{port} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
                )
            time.sleep(SSH_RETRY_PAUSE_S)
    raise AssertionError("unreachable")


def read_script(checks_cluster: bool) -> str:
    return render_template("drift/read-node-state.sh.j2", haproxy_cfg_path=HAPROXY_CFG_PATH, include_cib=checks_cluster)


def observe(props: dict) -> NodeObservation:
    """One SSH round trip: what the node is now."""
    report = run_on_node(props["connection"], read_script(bool(props.get("checksCluster"))))
    observation = parse_node_report(report, props["node"])
    if observation.hostname != props["node"]:
        raise NodeStateError(
            f"hapx: {props['connection']['host']}:{int(props['connection']['port'])} answered as "
            f"{observation.hostname!r}, not {props['node']!r}: check the node's SSH endpoint"
        )
    return observation


def observed_pacemaker(props: dict, observation: NodeObservation) -> dict[str, str]:
    if observation.cib_configuration is None:
        raise NodeStateError(f"hapx: {props['node']}: cibadmin gave no CIB (is Pacemaker running there?)")
    return canonical_pacemaker(observation.cib_configuration, props["crmIds"])


# -- Declared against observed ----------------------------------------------------

# Inputs that are compared as they are with the outputs of the same name.
_COMPARED = ("node", "connection", "instanceId", "haproxyCfgSha256", "pacemakerNode", "checksCluster", "crmIds")


def changed_keys(olds: dict, news: dict) -> list[str]:
    """Why an update is due: the properties whose observed (olds) value is not
    the declared (news) one. Never a reason to replace anything."""

    def unknown(value: Any) -> bool:
        if value == UNKNOWN:
            return True
        if isinstance(value, dict):
            return any(unknown(v) for v in value.values())
        if isinstance(value, list):
            return any(unknown(v) for v in value)
        return False

    changed = [key for key in _COMPARED if unknown(news.get(key)) or olds.get(key) != news.get(key)]
    if news.get("checksCluster"):
        script = news.get("crmScript")
        if unknown(script) or olds.get("crmSha256") != sha256_hex(script or ""):
            changed.append("crmScript")
        if olds.get("pacemakerDrift"):
            changed.append("pacemakerDrift")
    return changed


@dataclass(frozen=True)
class Restore:
    """What an update must put back on one node."""

    node_online: bool
    haproxy_cfg: bool
    pacemaker: Optional[dict]  # the drift to undo (None: nothing)

    def any(self) -> bool:
        return self.node_online or self.haproxy_cfg or bool(self.pacemaker)


def plan_restore(news: dict, observation: NodeObservation, applied: Optional[dict]) -> Restore:
    drift = None
    if news.get("checksCluster") and applied is not None:
        if observation.cib_configuration is None:
            drift = dict(CIB_UNAVAILABLE)  # re-applied once the node is back
        else:
            drift = pacemaker_drift(applied, observed_pacemaker(news, observation)) or None
    return Restore(
        node_online=observation.node != DECLARED_NODE,
        haproxy_cfg=observation.haproxy_cfg_sha256 != news["haproxyCfgSha256"],
        pacemaker=drift,
    )


def restore(news: dict, plan: Restore, applied: Optional[dict]) -> None:
    """Put back what the plan names, one SSH command each, in the order that
    lets the next one work (a node back in the cluster before the crm script)."""
    connection = news["connection"]
    if plan.node_online:
        script = render_template("drift/node-online.sh.j2", node=news["node"], timeout_s=NODE_ONLINE_TIMEOUT_S)
        run_on_node(connection, script, timeout_s=RESTORE_TIMEOUT_S)
    if plan.haproxy_cfg:
        script = render_template("node/push-haproxy-cfg.sh.j2", stats_env_path=STATS_ENV_PATH, haproxy_cfg_path=HAPROXY_CFG_PATH)
        run_on_node(connection, script, stdin=news["haproxyCfg"], timeout_s=RESTORE_TIMEOUT_S)
    if plan.pacemaker:
        assert applied is not None
        undo = pacemaker_restore(applied, plan.pacemaker)
        script = render_template(
            "drift/restore-pacemaker.sh.j2",
            apply_script=apply_script(news["crmIds"]),
            extra_constraints=undo.extra_constraints,
            properties=undo.properties,
        )
        run_on_node(connection, script, stdin=news["crmScript"], timeout_s=RESTORE_TIMEOUT_S)


def converge(news: dict, olds: Optional[dict] = None) -> dict:
    """Create and update: read the node, restore what is not as declared,
    read again, and check. The outputs: the declared inputs with what was
    observed, and on the checking node hapx's part of the CIB as applied."""
    checks_cluster = bool(news.get("checksCluster"))
    crm_sha = sha256_hex(news["crmScript"]) if checks_cluster else None
    observation = observe(news)
    applied = None
    if checks_cluster:
        # What hapx applied stays the reference while the crm script, its ids
        # and the node are the same. Otherwise the resource set has just
        # applied a script (this update depends on it): the CIB holds it now.
        same = olds is not None and (olds.get("crmSha256"), olds.get("crmIds"), olds.get("instanceId")) == (
            crm_sha,
            news["crmIds"],
            news["instanceId"],
        )
        if same and olds.get("pacemakerApplied") is not None:
            applied = olds["pacemakerApplied"]
        else:
            applied = as_applied(observed_pacemaker(news, observation), news["crmIds"])
    plan = plan_restore(news, observation, applied)
    if plan.any():
        restore(news, plan, applied)
        observation = observe(news)
    node = news["node"]
    if observation.node != DECLARED_NODE:
        raise NodeStateError(f"hapx: {node} is not in service after the restore: {observation.node}")
    if observation.haproxy_cfg_sha256 != news["haproxyCfgSha256"]:
        got = observation.haproxy_cfg_sha256
        raise NodeStateError(
            f"hapx: {node}'s {HAPROXY_CFG_PATH} is not the declared one after the restore "
            f"(sha256 {got if got == MISSING else got[:16]}, declared {news['haproxyCfgSha256'][:16]})"
        )
    outputs = {key: news[key] for key in ("node", "connection", "instanceId", "checksCluster")}
    outputs.update(haproxyCfgSha256=observation.haproxy_cfg_sha256, pacemakerNode=observation.node)
    if checks_cluster:
        left = pacemaker_drift(applied, observed_pacemaker(news, observation))
        if left:
            raise NodeStateError(
                f"hapx: hapx's part of the CIB still differs from what hapx applied after re-applying it: {left}. "
                "Delete those objects by hand (crm configure delete <id>), then run pulumi refresh and pulumi up again."
            )
        outputs.update(crmIds=news["crmIds"], crmSha256=crm_sha, pacemakerApplied=applied, pacemakerDrift={})
    return outputs


def refreshed_outputs(props: dict) -> dict:
    """Read (refresh): the state with what the node is now; restores nothing."""
    observation = observe(props)
    outputs = dict(props, haproxyCfgSha256=observation.haproxy_cfg_sha256, pacemakerNode=observation.node)
    if props.get("checksCluster") and props.get("pacemakerApplied") is not None:
        if observation.cib_configuration is None:
            outputs["pacemakerDrift"] = dict(CIB_UNAVAILABLE)
        else:
            outputs["pacemakerDrift"] = pacemaker_drift(props["pacemakerApplied"], observed_pacemaker(props, observation))
    return outputs


class NodeStateProvider(dynamic.ResourceProvider):
    """Pickled into state by reference (module and class name): the provider
    process imports this module from the project directory, so it runs the
    clone's current code."""

    def create(self, props: dict) -> dynamic.CreateResult:
        return dynamic.CreateResult(props["node"], converge(props))

    def read(self, id_: str, props: dict) -> dynamic.ReadResult:
        return dynamic.ReadResult(id_, refreshed_outputs(props))

    def diff(self, _id: str, olds: dict, news: dict) -> dynamic.DiffResult:
        return dynamic.DiffResult(changes=bool(changed_keys(olds, news)), replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict, news: dict) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(converge(news, olds))

    def delete(self, _id: str, _props: dict) -> None:
        return None


def connection_props(connection: remote.ConnectionArgs) -> dict[str, Any]:
    """A node's SSH connection as a dynamic resource's property (what run_on_node takes), the private key secret."""
    return {
        "host": connection.host,
        "port": connection.port,
        "user": connection.user,
        "privateKey": pulumi.Output.secret(connection.private_key),
        "hostKey": connection.host_key,
    }


@dataclass
class NodeStateArgs:
    # The node's name: its hostname and its name in Pacemaker.
    node: str
    # The node's own SSH connection (HapxVm.connection): host key pinned, private key secret.
    connection: remote.ConnectionArgs
    # Changes when the VM is replaced: the node is read again (an update, never a replacement).
    instance_id: pulumi.Input[str]
    # The declared haproxy.cfg (pushed again when the node's differs).
    haproxy_cfg: pulumi.Input[str]
    # On the one node that checks the cluster-wide CIB: the crm script the
    # resource set applies, and the ids it defines. None on the others.
    crm_script: Optional[pulumi.Input[str]] = None
    crm_ids: Sequence[str] = ()


class NodeState(dynamic.Resource, module="hapx", name="NodeState"):
    # What the node was when last read (outputs; the SDK names them as the props).
    haproxy_cfg_sha256: pulumi.Output[str]
    pacemaker_node: pulumi.Output[dict]

    def __init__(self, name: str, args: NodeStateArgs, opts: Optional[pulumi.ResourceOptions] = None):
        checks_cluster = args.crm_script is not None
        if checks_cluster and not args.crm_ids:
            raise ValueError("NodeStateArgs: crm_ids must name the CIB ids of crm_script")
        props: dict[str, Any] = {
            "node": args.node,
            "connection": connection_props(args.connection),
            "instanceId": args.instance_id,
            "haproxyCfg": args.haproxy_cfg,
            "haproxyCfgSha256": pulumi.Output.from_input(args.haproxy_cfg).apply(sha256_hex),
            "pacemakerNode": dict(DECLARED_NODE),
            "checksCluster": checks_cluster,
        }
        if checks_cluster:
            props.update(crmScript=args.crm_script, crmIds=list(args.crm_ids))
        # The connection holds the private key: secret as a whole in the
        # outputs, whatever the dynamic provider hands back.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["connection"]))
        super().__init__(NodeStateProvider(), name, props, opts)
        self.haproxy_cfg_sha256 = getattr(self, "haproxyCfgSha256")
        self.pacemaker_node = getattr(self, "pacemakerNode")
