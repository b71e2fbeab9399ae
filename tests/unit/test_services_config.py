"""hapx:services: the lab's three services parse; the reference's keys still make its one service; every invalid
service config names its key and the fix (and never quotes a certificate)."""

from __future__ import annotations

import copy
import json

import pytest

from components.config import DEFAULT_SERVICE, ConfigError, Persistence, ServiceMode, parse_config
from tests.conftest import as_engine_config

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nSECRETKEY\n-----END PRIVATE KEY-----\n"


def test_lab_has_three_services_the_reference_first(lab_raw):
    cfg = parse_config(lab_raw)
    assert [(s.name, s.mode, s.ports) for s in cfg.all_services] == [
        (DEFAULT_SERVICE, ServiceMode.TCP, (6443,)),
        ("web", ServiceMode.HTTP, (443,)),
        ("tls-passthrough", ServiceMode.TCP, (8443,)),
    ]
    reference, web, passthrough = cfg.all_services
    # The reference's section names stay; the others are named after their service.
    assert (reference.frontend_name, reference.backend_name) == ("kubernetes-apiserver-https", "kubernetes-master-nodes")
    assert (web.frontend_name, web.backend_name) == ("web", "web")
    assert web.terminate_tls and web.persistence is Persistence.SOURCE and web.check.path == "/healthz"
    assert [(b.name, b.weight, b.backup) for b in web.backends] == [("web-a", 1, False), ("web-b", 1, False), ("web-c", 1, True)]
    assert passthrough.check.tls and passthrough.backends[0].weight == 2
    # Backends of several services on one address: one ping target each.
    assert cfg.fencing.ping_targets == ("192.168.4.11", "192.168.4.12", "192.168.4.13")
    assert parse_config(as_engine_config(lab_raw)) == cfg


def test_services_without_the_reference_keys(lab_raw):
    del lab_raw["hapx:backends"]
    lab_raw["hapx:haproxy"].pop("frontendPort")
    cfg = parse_config(lab_raw)
    assert [s.name for s in cfg.all_services] == ["web", "tls-passthrough"]


def _service(**extra):
    return {"name": "web", "mode": "http", "ports": [443], "backends": [{"name": "w1", "address": "192.168.4.11", "port": 80}], **extra}


def _with(raw, *services, **top):
    raw = copy.deepcopy(raw)
    raw["hapx:services"] = list(services)
    raw.update({f"hapx:{k}": v for k, v in top.items()})
    return raw


# (description, services, extra top-level keys, key named, words in the message)
INVALID = [
    ("two services, one name", [_service(), _service(ports=[444])], {}, "hapx:services[1].name", "duplicates hapx:services[0].name"),
    ("the reference's name", [_service(name=DEFAULT_SERVICE)], {}, "hapx:services[0].name", "service of hapx:backends"),
    ("a port twice", [_service(), _service(name="api", ports=[443])], {}, "hapx:services[1].ports[0]", "already used by hapx:services[0].ports[0]"),
    ("the reference's port", [_service(ports=[6443])], {}, "hapx:services[0].ports[0]", "already used by hapx:haproxy.frontendPort"),
    ("the stats port", [_service(ports=[32700])], {}, "hapx:services[0].ports[0]", "is hapx:haproxy.statsPort"),
    ("the peers port", [_service(ports=[32701], persistence="source")], {}, "hapx:services[0].ports[0]", "is hapx:haproxy.peersPort"),
    ("the exporter's port", [_service(ports=[9664])], {}, "hapx:services[0].ports[0]", "prometheus-hacluster-exporter"),
    ("no ports", [_service(ports=[])], {}, "hapx:services[0].ports", "is empty"),
    ("no backends", [_service(backends=[])], {}, "hapx:services[0].backends", "is empty"),
    ("weight out of range", [_service(backends=[{"name": "w1", "address": "192.168.4.11", "port": 80, "weight": 300}])], {},
     "hapx:services[0].backends[0].weight", "out of range"),
    ("only backups", [_service(backends=[{"name": "w1", "address": "192.168.4.11", "port": 80, "backup": True}])], {},
     "hapx:services[0].backends", "only backup"),
    ("a backend twice", [_service(backends=[{"name": "w1", "address": "192.168.4.11", "port": 80}] * 2)], {},
     "hapx:services[0].backends[1].name", "duplicates"),
    ("an http check on tcp", [_service(mode="tcp", check={"type": "http"})], {}, "hapx:services[0].check.type", "needs mode http"),
    ("a path on a tcp check", [_service(check={"path": "/healthz"})], {}, "hapx:services[0].check.path", "is for an http check"),
    ("tls termination on tcp", [_service(mode="tcp", terminateTls=True)], {}, "hapx:services[0].terminateTls", "passes TLS through"),
    ("backend tls on tcp", [_service(mode="tcp", backendTls=True)], {}, "hapx:services[0].backendTls", "is for mode http"),
    ("names without tls", [_service(tlsNames=["www.example.org"])], {}, "hapx:services[0].tlsNames", "without terminateTls"),
    ("an unknown mode", [_service(mode="udp")], {}, "hapx:services[0].mode", "not one of: tcp, http"),
    ("an unknown balance", [_service(balance="fastest")], {}, "hapx:services[0].balance", "not valid"),
    ("a bad name", [_service(name="Web_1")], {}, "hapx:services[0].name", "not valid"),
    ("an unknown key", [_service(sticky=True)], {}, "hapx:services[0].sticky", "unknown key"),
    ("peers on the stats port", [_service(persistence="source")], {"haproxy": {"statsPort": 32700, "peersPort": 32700}},
     "hapx:haproxy.peersPort", "equals hapx:haproxy.statsPort"),
]


@pytest.mark.parametrize("services, top, key, words", [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_services_name_the_key(dev_raw, services, top, key, words):
    with pytest.raises(ConfigError) as error:
        parse_config(_with(dev_raw, *services, **top))
    assert error.value.key == key, str(error.value)
    assert words in str(error.value) and "Fix: " in str(error.value)


def test_reference_keys_alone_still_work_and_frontend_port_needs_them(dev_raw):
    assert [s.name for s in parse_config(dev_raw).all_services] == [DEFAULT_SERVICE]
    raw = _with(dev_raw, _service())
    del raw["hapx:backends"]
    with pytest.raises(ConfigError, match=r"^hapx:haproxy.frontendPort: is set without hapx:backends\. Fix: remove it"):
        parse_config(raw)
    raw["hapx:haproxy"] = {"statsPort": 6443}
    with pytest.raises(ConfigError, match=r"^hapx:haproxy.statsPort: is 6443, the default hapx:haproxy.frontendPort"):
        parse_config(raw)
    del raw["hapx:services"]
    raw["hapx:haproxy"] = {}
    with pytest.raises(ConfigError, match=r"^hapx:backends: has no backends and hapx:services is empty"):
        parse_config(raw)


def test_tls_certificates_name_terminating_services_and_are_never_quoted(dev_raw):
    raw = _with(dev_raw, _service(terminateTls=True), _service(name="plain", ports=[80]))
    secret = {"hapx:tlsCertificates"}
    cfg = parse_config({**raw, "hapx:tlsCertificates": json.dumps({"web": PEM})}, secret)
    assert cfg.given_certificates == {"web"}
    assert parse_config(raw).given_certificates == frozenset()  # offline (make render): nothing decrypted
    for value, key, words in (
        ({"plain": PEM}, "hapx:tlsCertificates.plain", "names no service with terminateTls (those are: web)"),
        ({"web": PEM.split("-----BEGIN PRIVATE")[0]}, "hapx:tlsCertificates.web", "is not a PEM certificate"),
        (["web"], "hapx:tlsCertificates", "is not an object"),
    ):
        with pytest.raises(ConfigError) as error:
            parse_config({**raw, "hapx:tlsCertificates": json.dumps(value)}, secret)
        assert error.value.key == key and words in str(error.value), str(error.value)
        assert "SECRETKEY" not in str(error.value)
    with pytest.raises(ConfigError, match=r"^hapx:tlsCertificates: is stored in plain text"):
        parse_config({**raw, "hapx:tlsCertificates": json.dumps({"web": PEM})})
