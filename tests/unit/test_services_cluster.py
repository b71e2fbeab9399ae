"""The lab stack's services under Pulumi mocks: a per-stack CA and a certificate per TLS-terminating service, made
by commands that never log, handed on stdin and kept secret; pushed to each node before haproxy.cfg; the outputs
that give clients the CA, the services and the scrape URLs. A certificate from hapx:tlsCertificates replaces the
generated one."""

from __future__ import annotations

import json

import pulumi
import pytest

from tests.unit.pulumi_mocks import FAKE_CA_CERT, MOCKS, depends, is_secret_input, parent_name, unsecret

from components.config import parse_config  # noqa: E402  (after set_mocks, by design)
from components.haproxy_cluster import HaproxyCluster, HaproxyClusterArgs  # noqa: E402

NODES = ("hapx-node01", "hapx-node02")
GIVEN = "-----BEGIN CERTIFICATE-----\ngiven\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n"


@pytest.fixture(scope="module")
def clusters():
    from harness.paths import stack_config

    MOCKS.resources.clear()
    raw = stack_config("lab")
    generated = HaproxyCluster("svc", HaproxyClusterArgs(config=parse_config(raw), stack="svctest"))
    given_cfg = parse_config({**raw, "hapx:tlsCertificates": json.dumps({"web": GIVEN})}, {"hapx:tlsCertificates"})
    given = HaproxyCluster(
        "given", HaproxyClusterArgs(config=given_cfg, stack="giventest", tls_certificates=pulumi.Output.secret({"web": GIVEN}))
    )
    return generated, given


def _all_registered(*clusters) -> pulumi.Output:
    return pulumi.Output.all(*[c.pacemaker.vip_node_at_apply for c in clusters], *[vm.ready.stdout for c in clusters for vm in c.node_vms])


@pulumi.runtime.test
def test_generated_certificate_is_made_from_the_stack_ca_on_stdin(clusters):
    def check(_):
        ca, certificate = MOCKS.resources["svc-secrets-tls-ca"], MOCKS.resources["svc-secrets-web-tls-certificate"]
        assert parent_name(ca) == parent_name(certificate) == "svc-secrets"
        assert ca.inputs["create"].endswith("tools/gen_secret.py tls-ca svctest")
        # The certificate names the VIP; the CA's key reaches it on stdin, never in the command line.
        assert certificate.inputs["create"].endswith("tools/gen_secret.py tls-server web IP:192.168.4.20")
        assert is_secret_input(certificate.inputs["stdin"]) and "PRIVATE KEY" in unsecret(certificate.inputs["stdin"])
        for reg in (ca, certificate):
            assert reg.inputs.get("logging") == "none"
        # Only the terminating service gets one.
        assert not [n for n in MOCKS.resources if n.startswith("svc-secrets-tls-passthrough")]

    return _all_registered(clusters[0]).apply(check)


@pulumi.runtime.test
def test_each_node_gets_the_certificate_before_haproxy_cfg(clusters):
    def check(_):
        for node in NODES:
            push = MOCKS.resources[f"svc-{node}-web-tls"]
            assert is_secret_input(push.inputs["stdin"]) and push.inputs["logging"] == "stderr"
            assert "install -D -m 0600 -o root -g root" in push.inputs["create"] and "/etc/haproxy/certs/web.pem" in push.inputs["create"]
            assert "-----BEGIN CERTIFICATE-----\nserver-of-svc-secrets-web-tls-certificate" in unsecret(push.inputs["stdin"])
            assert depends(f"svc-{node}-haproxy-cfg", f"svc-{node}-web-tls")
            assert depends(f"svc-{node}-web-tls", f"svc-{node}-ready")
            assert "ssl crt /etc/haproxy/certs/web.pem" in MOCKS.resources[f"svc-{node}-haproxy-cfg"].inputs["stdin"]

    return _all_registered(clusters[0]).apply(check)


@pulumi.runtime.test
def test_a_given_certificate_is_used_and_nothing_is_generated(clusters):
    def check(_):
        assert not [n for n in MOCKS.resources if n.startswith("given-secrets-") and "tls" in n]
        for node in NODES:
            push = MOCKS.resources[f"given-{node}-web-tls"]
            assert is_secret_input(push.inputs["stdin"]) and unsecret(push.inputs["stdin"]) == GIVEN
        assert clusters[1].tls_ca_certificate is None

    return _all_registered(clusters[1]).apply(check)


@pulumi.runtime.test
def test_outputs_give_the_ca_services_and_scrape_urls(clusters):
    cluster = clusters[0]

    async def check(values):
        ca, services, metrics = values
        assert ca == FAKE_CA_CERT and "PRIVATE" not in ca
        assert not await cluster.tls_ca_certificate.is_secret()
        assert services == {
            "kubernetes-apiserver": {"mode": "tcp", "urls": ["tcp://192.168.4.20:6443"]},
            "web": {"mode": "http", "urls": ["https://192.168.4.20:443"]},
            "tls-passthrough": {"mode": "tcp", "urls": ["tcp://192.168.4.20:8443"]},
        }
        assert metrics["haproxy"] == "http://192.168.4.20:32700/metrics"
        assert metrics["cluster"] == "http://192.168.4.20:32700/cluster-metrics"
        assert metrics["nodes"]["hapx-node02"] == {
            "haproxy": "http://192.168.4.22:32700/metrics", "cluster": "http://192.168.4.22:32700/cluster-metrics"
        }  # fmt: skip

    return pulumi.Output.all(cluster.tls_ca_certificate, cluster.services, cluster.metrics_urls).apply(check)
