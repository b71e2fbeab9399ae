"""HaproxyCluster: the whole HA pair, composed from the other components.

Order (each arrow a dependency Pulumi enforces):
  membership (corosync.conf on the running nodes: nodes added, removed) -> every node's drain
  network -> seed -> drain -> VM -> ready -> haproxy.cfg + stats credentials -> rejoin
  rolling: node i's rejoin -> node i+1's drain (one node at a time)
  all nodes rejoined -> cluster formed -> crm applied -> VIP placed
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import remote

from .cloud_init_seed import CloudInitSeed, CloudInitSeedArgs
from .cluster_membership import ClusterMember, ClusterMembership, ClusterMembershipArgs
from .config import HapxConfig, NodeConfig, Rollout
from .hapx_vm import HapxVm, HapxVmArgs, node_connection, replace_key
from .node_drain import NodeDrain, NodeDrainArgs
from .node_state import NodeState, NodeStateArgs
from .drivers import driver_for
from .drivers.base import HypervisorDriver
from .fencing import FencePlan
from .pacemaker_resource_set import PacemakerResourceSet, PacemakerResourceSetArgs
from .rendering import (
    CLUSTER_METRICS_PATH,
    HAPROXY_CLONE_ID,
    METRICS_PATH,
    SETTLED_ATTRIBUTE,
    HAPROXY_CFG_PATH,
    STATS_ENV_PATH,
    VIP_AVOIDS_DC_ID,
    VIP_ID,
    cert_path,
    tls_services,
    ClusterFiles,
    NodeSecrets,
    crm_ids,
    node_agent_files,
    render_agents_install,
    render_cluster_files,
    render_node_files,
    render_stats_env,
    render_template,
)
from .stack_secrets import StackSecrets, StackSecretsArgs

# A rebuilt node boots, joins the cluster and starts haproxy within this.
REJOIN_TIMEOUT_S = 600


@dataclass
class HaproxyClusterArgs:
    config: HapxConfig
    stack: str
    # From stack config when set; generated per stack otherwise.
    stats_password: Optional[pulumi.Input[str]] = None
    corosync_authkey: Optional[pulumi.Input[str]] = None
    # hapx:tlsCertificates: service name -> PEM (certificate chain, private key),
    # for the services config.given_certificates names.
    tls_certificates: Optional[pulumi.Input[dict]] = None


class HaproxyCluster(pulumi.ComponentResource):
    vip: pulumi.Output[str]
    frontend_port: pulumi.Output[int]
    lab_namespace: Optional[pulumi.Output[str]]
    stats_url: pulumi.Output[str]
    stats_user: pulumi.Output[str]
    stats_password: pulumi.Output[str]
    nodes: pulumi.Output[dict]
    ssh_commands: pulumi.Output[dict]
    known_hosts: pulumi.Output[str]
    admin_private_key: pulumi.Output[str]
    fence_host_public_key: Optional[pulumi.Output[str]]
    services: pulumi.Output[dict]
    metrics_urls: pulumi.Output[dict]
    tls_ca_certificate: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: HaproxyClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hapx:index:HaproxyCluster", name, None, opts)
        self._name = name
        self._cfg = args.config
        self._stack = args.stack
        self._driver: HypervisorDriver = driver_for(args.config, args.stack)
        fencing = self._driver.fence_plan()
        cluster_files = render_cluster_files(self._cfg, self._stack, fencing)

        self.secrets = self._stack_secrets(args, fencing)
        self.tls_pems = self._tls_pems(args)
        network = self._driver.network(f"{name}-network", pulumi.ResourceOptions(parent=self))
        base_vm = self._driver.base_vm(f"{name}-base-vm", pulumi.ResourceOptions(parent=self))
        self.membership = self._membership(cluster_files)
        self.node_vms: list[HapxVm] = []
        self.node_drains: list[NodeDrain] = []
        nodes_configured: list[pulumi.Resource] = []
        rolling = self._cfg.rollout is Rollout.ROLLING
        previous_rejoin: Optional[pulumi.Resource] = None
        for index, node in enumerate(self._cfg.nodes):
            # Rolling: a node is drained only once the node before it is back in service.
            vm = self._node_vm(node, index, cluster_files, network, base_vm, previous_rejoin if rolling else None)
            self.node_vms.append(vm)
            steps = self._node_config_steps(node, vm, cluster_files, fencing)
            previous_rejoin = steps[-1]
            nodes_configured += steps
        if self.secrets.fence_secret is not None:
            fence_host = self._driver.fence_host(
                f"{name}-fence-host", self.secrets.fence_secret, pulumi.ResourceOptions(parent=self)
            )
            if fence_host is not None:
                nodes_configured.append(fence_host)
        self.pacemaker = PacemakerResourceSet(
            f"{name}-pacemaker",
            PacemakerResourceSetArgs(
                connection=self.node_vms[0].connection,
                node_count=len(self._cfg.nodes),
                crm_script=cluster_files.crm_script,
                crm_ids=crm_ids(fencing, self._cfg.pacemaker.vip_avoids_dc),
                node_instance_ids=[vm.instance_id for vm in self.node_vms],
                nodes_configured=nodes_configured,
                vip_handover_after_s=(
                    self._cfg.pacemaker.vip_handover_after_s if self._cfg.pacemaker.vip_avoids_dc else None
                ),
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.node_states = self._node_states(cluster_files, fencing)
        self._set_outputs(network)
        self.register_outputs(
            {
                "vip": self.vip,
                "frontendPort": self.frontend_port,
                "labNamespace": self.lab_namespace,
                "statsUrl": self.stats_url,
                "statsUser": self.stats_user,
                "statsPassword": self.stats_password,
                "nodes": self.nodes,
                "sshCommands": self.ssh_commands,
                "knownHosts": self.known_hosts,
                "adminPrivateKey": self.admin_private_key,
                "fenceHostPublicKey": self.fence_host_public_key,
                "services": self.services,
                "metricsUrls": self.metrics_urls,
                "tlsCaCertificate": self.tls_ca_certificate,
                "vipNodeAtApply": self.pacemaker.vip_node_at_apply,
            }
        )

    def _stack_secrets(self, args: HaproxyClusterArgs, fencing: Optional[FencePlan]) -> StackSecrets:
        return StackSecrets(
            f"{self._name}-secrets",
            StackSecretsArgs(
                node_names=[n.name for n in self._cfg.nodes],
                stats_password=args.stats_password,
                corosync_authkey=args.corosync_authkey,
                fence_credential=fencing.credential if fencing else None,
                # A generated certificate names the VIP, and the service's tlsNames.
                generated_certificates={
                    s.name: [f"IP:{self._cfg.vip}", *(f"DNS:{n}" for n in s.tls_names)]
                    for s in tls_services(self._cfg)
                    if s.name not in self._cfg.given_certificates
                },
                stack=self._stack,
            ),
            pulumi.ResourceOptions(parent=self),
        )

    def _membership(self, cluster_files: ClusterFiles) -> ClusterMembership:
        """corosync.conf carried to the running nodes (components/cluster_membership.py), before any node's drain."""
        cfg, secrets = self._cfg, self.secrets
        members = [
            ClusterMember(
                node=node.name,
                connection=node_connection(
                    self._driver.ssh_endpoint(node, index),
                    cfg.admin_user,
                    secrets.admin_key.private_key,
                    secrets.host_keys[node.name].public_key,
                ),
            )
            for index, node in enumerate(cfg.nodes)
        ]
        return ClusterMembership(
            f"{self._name}-membership",
            ClusterMembershipArgs(members=members, corosync_conf=cluster_files.corosync_conf),
            pulumi.ResourceOptions(parent=self),
        )

    def _tls_pems(self, args: HaproxyClusterArgs) -> dict[str, pulumi.Output[str]]:
        """Each TLS-terminating service's PEM file: from hapx:tlsCertificates, or generated."""
        given = pulumi.Output.secret(args.tls_certificates or {})
        return {
            s.name: given.apply(lambda pems, n=s.name: pems[n]) if s.name in self._cfg.given_certificates else self.secrets.tls_pems[s.name]
            for s in tls_services(self._cfg)
        }

    def _node_vm(
        self,
        node: NodeConfig,
        index: int,
        cluster_files: ClusterFiles,
        network: Optional[pulumi.Resource],
        base_vm: Optional[pulumi.Resource],
        after: Optional[pulumi.Resource],
    ) -> HapxVm:
        """The node's seed, its drain and its VM, up to `ready`."""
        cfg, secrets, driver = self._cfg, self.secrets, self._driver
        spec = driver.vm_spec(node, index)
        host_key = secrets.host_keys[node.name]
        files = pulumi.Output.secret(
            pulumi.Output.all(
                secrets.admin_key.public_key,
                host_key.private_key,
                host_key.public_key,
                secrets.corosync_authkey,
                secrets.stats_password,
                pulumi.Output.all(*[pulumi.Output.all(name, pem) for name, pem in self.tls_pems.items()]),
            ).apply(
                lambda v: render_node_files(
                    cfg,
                    self._stack,
                    node,
                    spec.network,
                    NodeSecrets(
                        admin_public_key=v[0],
                        host_private_key=v[1],
                        host_public_key=v[2],
                        authkey_b64=v[3],
                        stats_password=v[4],
                        tls_pems=tuple(tuple(pair) for pair in v[5]),
                    ),
                    cluster_files,
                )
            )
        )
        iso_path = driver.seed_path(node)
        seed = CloudInitSeed(
            f"{self._name}-{node.name}-seed",
            CloudInitSeedArgs(files=files, iso_path=iso_path),
            pulumi.ResourceOptions(parent=self),
        )
        ssh = driver.ssh_endpoint(node, index)
        drain = NodeDrain(
            f"{self._name}-{node.name}-drain",
            NodeDrainArgs(
                node=node.name,
                connection=node_connection(ssh, cfg.admin_user, secrets.admin_key.private_key, host_key.public_key),
                replace_key=replace_key(seed, spec),
                require_peer=cfg.rollout is Rollout.ROLLING,
            ),
            # After the membership move: a node being added boots once the others know it.
            pulumi.ResourceOptions(parent=self, depends_on=[self.membership, *([after] if after is not None else [])]),
        )
        self.node_drains.append(drain)
        return HapxVm(
            f"{self._name}-{node.name}",
            HapxVmArgs(
                spec=spec,
                scripts=driver.vm_scripts(spec, iso_path),
                seed=seed,
                ssh=ssh,
                admin_user=cfg.admin_user,
                admin_private_key=secrets.admin_key.private_key,
                host_public_key=host_key.public_key,
                network=network,
                base_vm=base_vm,
                drain=drain,
            ),
            pulumi.ResourceOptions(parent=self),
        )

    def _node_config_steps(
        self, node: NodeConfig, vm: HapxVm, cluster_files: ClusterFiles, fencing: Optional[FencePlan]
    ) -> list[pulumi.Resource]:
        """Day-2 config: the seed carries it for the first boot, these steps
        keep running nodes in step without replacing them. The last step is
        the node's rejoin: it runs after all the others."""
        prefix = f"{self._name}-{node.name}"
        stats_env = pulumi.Output.secret(
            self.secrets.stats_password.apply(lambda pw: render_stats_env(self._cfg.haproxy.stats_user, pw))
        )
        agents_script = render_agents_install(node_agent_files(fencing, self._cfg.pacemaker.vip_handover_after_s))
        # haproxy -c (before haproxy.cfg is installed) reads the certificates: they go first.
        certificates = [
            self._node_step(
                f"{prefix}-{service}-tls",
                vm,
                render_template(
                    "node/push-tls-certificate.sh.j2",
                    path=cert_path(service),
                    service=service,
                    stats_env_path=STATS_ENV_PATH,
                    haproxy_cfg_path=HAPROXY_CFG_PATH,
                ),
                stdin=pem,
                secret=True,
            )
            for service, pem in self.tls_pems.items()
        ]
        steps: list[pulumi.Resource] = [
            vm.ready,
            *([vm.settled] if vm.settled is not None else []),
            *certificates,
            self._node_step(
                f"{prefix}-haproxy-cfg",
                vm,
                render_template("node/push-haproxy-cfg.sh.j2", stats_env_path=STATS_ENV_PATH, haproxy_cfg_path=HAPROXY_CFG_PATH),
                stdin=cluster_files.haproxy_cfg,
                after=certificates,
            ),
            self._node_step(
                f"{prefix}-stats-credentials",
                vm,
                render_template("node/push-stats-env.sh.j2", stats_env_path=STATS_ENV_PATH),
                stdin=stats_env,
                secret=True,
            ),
            self._node_step(f"{prefix}-agents", vm, agents_script, rerun_on_change=True),
        ]
        if fencing is not None and self.secrets.fence_secret is not None:
            steps.append(
                self._node_step(
                    f"{prefix}-fence-credential",
                    vm,
                    render_template("node/push-fence-credential.sh.j2", path=fencing.credential_path),
                    stdin=self.secrets.fence_secret,
                    secret=True,
                )
            )
        drain = self.node_drains[-1]
        rejoin = self._node_step(
            f"{prefix}-rejoin",
            vm,
            render_template(
                "roll/rejoin.sh.j2",
                node=node.name,
                haproxy_clone_id=HAPROXY_CLONE_ID,
                vip_id=VIP_ID,
                vip_avoids_dc_id=VIP_AVOIDS_DC_ID,
                settled_attribute=SETTLED_ATTRIBUTE,
                timeout_s=REJOIN_TIMEOUT_S,
            ),
            after=steps[1:],
            # Also after every drain, even one the VM did not follow (a
            # reverted change): a drained node always comes back.
            extra_triggers=[drain.replace_key],
        )
        return [*steps, rejoin]

    def _node_states(self, cluster_files: ClusterFiles, fencing: Optional[FencePlan]) -> list[NodeState]:
        """Per node, what hapx declares, read back by `pulumi refresh` and put
        back by the next `pulumi up` (components/node_state.py). The node the
        resource set applies the crm script on also checks the CIB, which is
        the whole cluster's."""
        return [
            NodeState(
                f"{self._name}-{node.name}-state",
                NodeStateArgs(
                    node=node.name,
                    connection=vm.connection,
                    instance_id=vm.instance_id,
                    haproxy_cfg=cluster_files.haproxy_cfg,
                    crm_script=cluster_files.crm_script if vm is self.node_vms[0] else None,
                    crm_ids=crm_ids(fencing, self._cfg.pacemaker.vip_avoids_dc) if vm is self.node_vms[0] else (),
                ),
                pulumi.ResourceOptions(parent=self, depends_on=[self.pacemaker], deleted_with=vm.vm),
            )
            for node, vm in zip(self._cfg.nodes, self.node_vms)
        ]

    def _set_outputs(self, network: Optional[pulumi.Resource]) -> None:
        cfg, secrets = self._cfg, self.secrets
        self.vip = pulumi.Output.from_input(str(cfg.vip))
        self.frontend_port = pulumi.Output.from_input(cfg.all_services[0].ports[0])  # the first service's first port
        # Where the VIP can be reached from when the hypervisor keeps the
        # cluster segment in a namespace (the QEMU lab); None otherwise.
        self.lab_namespace = getattr(network, "namespace", None)
        self.stats_url = pulumi.Output.from_input(f"http://{cfg.vip}:{cfg.haproxy.stats_port}/")
        # Prometheus: through the VIP (the holder's view), and per node (scrape both for every haproxy).
        stats = f":{cfg.haproxy.stats_port}"
        self.metrics_urls = pulumi.Output.from_input(
            {
                "haproxy": f"http://{cfg.vip}{stats}{METRICS_PATH}",
                "cluster": f"http://{cfg.vip}{stats}{CLUSTER_METRICS_PATH}",
                "nodes": {
                    n.name: {
                        "haproxy": f"http://{n.cluster_address}{stats}{METRICS_PATH}",
                        "cluster": f"http://{n.cluster_address}{stats}{CLUSTER_METRICS_PATH}",
                    }
                    for n in cfg.nodes
                },
            }
        )
        self.services = pulumi.Output.from_input(
            {
                s.name: {
                    "mode": s.mode.value,
                    "urls": [f"{'https' if s.terminate_tls else s.mode.value}://{cfg.vip}:{p}" for p in s.ports],
                }
                for s in cfg.all_services
            }
        )
        # The per-stack CA that signed generated certificates: clients trust it. None if none is generated.
        self.tls_ca_certificate = secrets.tls_ca_certificate
        self.stats_user = pulumi.Output.from_input(cfg.haproxy.stats_user)
        self.stats_password = secrets.stats_password
        self.admin_private_key = secrets.admin_key.private_key
        # fence_vbox's key: the operator adds it to the VirtualBox host user's
        # authorized_keys (docs/virtualbox.md). None unless that is in use.
        self.fence_host_public_key = secrets.fence_public_key
        self.nodes = pulumi.Output.all(
            *[pulumi.Output.all(vm.vm_name, vm.ssh_host, vm.ssh_port) for vm in self.node_vms]
        ).apply(
            lambda rows: {
                node.name: {"vm": row[0], "sshHost": row[1], "sshPort": row[2], "clusterAddress": str(node.cluster_address)}
                for node, row in zip(cfg.nodes, rows)
            }
        )
        key_file = f"~/.ssh/hapx-{self._stack}"
        endpoints = [self._driver.ssh_endpoint(node, i) for i, node in enumerate(cfg.nodes)]
        # The nodes' host keys are generated by hapx, so operators can pin
        # them too: `make ssh-key` writes this next to the key file.
        self.known_hosts = pulumi.Output.all(*[secrets.host_keys[n.name].public_key for n in cfg.nodes]).apply(
            lambda keys: "".join(
                f"{ep.host if ep.port == 22 else f'[{ep.host}]:{ep.port}'} {key.strip()}\n"
                for ep, key in zip(endpoints, keys)
            )
        )
        self.ssh_commands = pulumi.Output.from_input(
            {
                node.name: f"ssh -i {key_file} -o UserKnownHostsFile={key_file}.known_hosts -p {ep.port} "
                f"{cfg.admin_user}@{ep.host}"
                for node, ep in zip(cfg.nodes, endpoints)
            }
        )

    def _node_step(
        self,
        name: str,
        vm: HapxVm,
        script: str,
        stdin: Optional[pulumi.Input[str]] = None,
        secret: bool = False,
        rerun_on_change: bool = False,
        after: Optional[list[pulumi.Resource]] = None,
        extra_triggers: Optional[list[pulumi.Input[str]]] = None,
    ) -> remote.Command:
        """A command on one running node, after it is ready, gone with its VM.

        Runs again when the VM is replaced and when `stdin` changes (or, with
        `rerun_on_change`, the script itself). A secret step logs stderr only
        and keeps its output secret."""
        return remote.Command(
            name,
            connection=vm.connection,
            create=script,
            update=script if rerun_on_change else None,
            stdin=stdin,
            triggers=[vm.instance_id, *(extra_triggers or [])],
            logging=remote.Logging.STDERR if secret else None,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[vm.ready, *(after or [])],
                deleted_with=vm.vm,
                additional_secret_outputs=["stdout", "stderr"] if secret else None,
            ),
        )

