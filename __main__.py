"""hapx: a highly available HAProxy pair behind one floating IP.

Reads and validates the stack config, builds the cluster, exports what an
operator needs. Everything else lives in components/.
"""

import pulumi

from components.config import ConfigError, config_from_pulumi
from components.haproxy_cluster import HaproxyCluster, HaproxyClusterArgs

try:
    config = config_from_pulumi()
except ConfigError as error:
    # RunError prints the message alone, without a Python traceback.
    raise pulumi.RunError(f"invalid stack config: {error}") from None

stack_config = pulumi.Config("hapx")
cluster = HaproxyCluster(
    "hapx",
    HaproxyClusterArgs(
        config=config,
        stack=pulumi.get_stack(),
        stats_password=stack_config.get_secret("statsPassword"),
        corosync_authkey=stack_config.get_secret("corosyncAuthkey"),
        tls_certificates=stack_config.get_secret_object("tlsCertificates"),
    ),
)

pulumi.export("vip", cluster.vip)
pulumi.export("frontendPort", cluster.frontend_port)
pulumi.export("services", cluster.services)
pulumi.export("metricsUrls", cluster.metrics_urls)
if cluster.tls_ca_certificate is not None:
    pulumi.export("tlsCaCertificate", cluster.tls_ca_certificate)
if cluster.lab_namespace is not None:
    pulumi.export("labNamespace", cluster.lab_namespace)
pulumi.export("statsUrl", cluster.stats_url)
pulumi.export("statsUser", cluster.stats_user)
pulumi.export("statsPassword", cluster.stats_password)
pulumi.export("nodes", cluster.nodes)
pulumi.export("sshCommands", cluster.ssh_commands)
pulumi.export("knownHosts", cluster.known_hosts)
pulumi.export("adminPrivateKey", cluster.admin_private_key)
if cluster.fence_host_public_key is not None:
    pulumi.export("fenceHostPublicKey", cluster.fence_host_public_key)
