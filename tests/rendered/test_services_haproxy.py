"""Service layouts in haproxy.cfg, checked by the real `haproxy -c`, and two real haproxies (one per network
namespace, as the two nodes) serving a rendered config: TLS terminated with a generated certificate, an HTTP check
that takes a failing backend out, a stick table entry written through one node present on the other, and the
metrics behind the stats credentials."""

from __future__ import annotations

import copy
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from components.config import parse_config
from components.rendering import CERT_DIR, render_haproxy_cfg
from harness.paths import REPO

from .conftest import require_tool, run

STATS_ENV = {"HAPX_STATS_USER": "admin", "HAPX_STATS_PASSWORD": "not-a-real-password"}
GEN_SECRET = [sys.executable, str(REPO / "tools" / "gen_secret.py")]


def _backend(name, address, port, **extra):
    return {"name": name, "address": address, "port": port, **extra}


WEB_TIER = [  # TLS terminated at the VIP, persistence, an HTTP check, weights and a backup
    {"name": "www", "mode": "http", "ports": [443, 8443], "balance": "leastconn", "terminateTls": True, "tlsNames": ["www.example.org"],
     "persistence": "source", "persistenceExpireS": 600, "check": {"type": "http", "method": "HEAD", "path": "/healthz", "expectStatus": 204},
     "backends": [_backend("web1", "10.0.0.11", 8081, weight=3), _backend("web2", "10.0.0.12", 8082), _backend("sorry", "10.0.0.13", 8080, backup=True)]},
    {"name": "www-redirect", "mode": "http", "ports": [80], "backends": [_backend("web1", "10.0.0.11", 8081)]},
]
TCP_AND_HTTP = [  # TCP passthrough (TLS checked) next to HTTP re-encrypted to its backends
    {"name": "postgres", "mode": "tcp", "ports": [5432], "balance": "first", "persistence": "source",
     "backends": [_backend("db1", "10.0.0.21", 5432), _backend("db2", "10.0.0.22", 5432, backup=True)]},
    {"name": "ldaps", "mode": "tcp", "ports": [636], "check": {"tls": True}, "backends": [_backend("ldap1", "10.0.0.31", 636)]},
    {"name": "api", "mode": "http", "ports": [8080], "backendTls": True, "check": {"type": "http", "path": "/ready"},
     "backends": [_backend("api1", "10.0.0.41", 443), _backend("api2", "api2.internal", 443)]},
]


def _raw(dev_raw, services, keep_reference=False, **haproxy):
    raw = copy.deepcopy(dev_raw)
    raw["hapx:services"] = services
    raw["hapx:haproxy"] = {"statsPort": 32700, **haproxy}
    if keep_reference:
        raw["hapx:haproxy"]["frontendPort"] = 6443
    else:
        del raw["hapx:backends"]
    return raw


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A per-stack CA and a server PEM per service name used here, made by the generator hapx runs."""
    out = tmp_path_factory.mktemp("certs")
    require_tool("openssl")
    ca = subprocess.run([*GEN_SECRET, "tls-ca", "test"], capture_output=True, text=True, check=True).stdout
    (out / "ca.crt").write_text(ca[ca.index("-----BEGIN CERTIFICATE-----"):])
    for name in ("www", "web"):
        pem = subprocess.run([*GEN_SECRET, "tls-server", name, "IP:127.0.0.1", f"DNS:{name}.example.org"], input=ca,
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        (out / f"{name}.pem").write_text(pem)
        (out / f"{name}.pem").chmod(0o600)
    return out


def _checked(text: str, certificates: Path, tmp_path: Path, node: str = "hapx-node01") -> subprocess.CompletedProcess:
    path = tmp_path / "haproxy.cfg"
    path.write_text(text.replace(f"{CERT_DIR}/", f"{certificates}/"))
    # -L: check as a node would, which finds itself in the peers section by its host name.
    return run([require_tool("haproxy"), "-c", "-L", node, "-f", str(path)], env={**os.environ, **STATS_ENV})


@pytest.mark.parametrize("layout", ["lab", "web-tier", "tcp-and-http", "with-reference"])
def test_each_layout_passes_haproxy_check(layout, lab_raw, dev_raw, certificates, tmp_path):
    raw = {"lab": lambda: lab_raw, "web-tier": lambda: _raw(dev_raw, WEB_TIER), "tcp-and-http": lambda: _raw(dev_raw, TCP_AND_HTTP),
           "with-reference": lambda: _raw(dev_raw, WEB_TIER[:1], keep_reference=True)}[layout]()
    text = render_haproxy_cfg(parse_config(raw), "test")
    if layout == "lab":
        text = text.replace(f"{CERT_DIR}/web.pem", f"{CERT_DIR}/www.pem")
    result = _checked(text, certificates, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr
    # No peers warning: each node finds itself in the peers section.
    assert "peers" not in result.stderr, result.stderr


def test_web_tier_sections(dev_raw):
    text = render_haproxy_cfg(parse_config(_raw(dev_raw, WEB_TIER)), "test")
    assert "frontend www\n  bind :443 ssl crt /etc/haproxy/certs/www.pem alpn h2,http/1.1\n  bind :8443 ssl crt" in text
    assert "backend www\n  mode http\n  balance leastconn\n  stick-table type ip size 100k expire 600s peers hapx\n  stick on src" in text
    assert "http-check send meth HEAD uri /healthz\n  http-check expect status 204" in text
    assert "server web1 10.0.0.11:8081 check weight 3\n" in text and "server sorry 10.0.0.13:8080 check backup\n" in text
    assert "peer hapx-node01 192.168.4.21:32701\n  peer hapx-node02 192.168.4.22:32701" in text
    # The plain HTTP service: no certificate, no stick table.
    www_redirect = text.split("frontend www-redirect")[1].split("backend www-redirect")[0]
    assert "ssl" not in www_redirect and "bind :80\n" in www_redirect
    # No private key in the file: only the path of a root-only PEM.
    assert "PRIVATE KEY" not in text


def test_tcp_and_http_sections(dev_raw):
    text = render_haproxy_cfg(parse_config(_raw(dev_raw, TCP_AND_HTTP, nameservers=["10.0.0.1:53"])), "test")
    assert "default-server inter 2000 fall 3 rise 2 check-ssl verify none\n  server ldap1 10.0.0.31:636 check\n" in text
    assert "server api1 10.0.0.41:443 check ssl verify none\n" in text
    assert "server api2 api2.internal:443 check ssl verify none resolvers dns\n" in text
    assert "bind :5432\n  mode tcp\n  option tcplog" in text and "ssl crt" not in text
    # Without a terminating service: no TLS defaults at all.
    assert "ssl-default-bind-options" not in text


def test_reference_alone_has_no_peers_and_no_tls(dev_raw):
    text = render_haproxy_cfg(parse_config(dev_raw), "test")
    # (The global `httpclient.ssl.verify none` is there with or without TLS services.)
    assert "peers" not in text and "ssl" not in text.replace("httpclient.ssl.verify", "") and "stick" not in text


def test_a_missing_certificate_fails_the_check(lab_raw, tmp_path):
    # Guards the layout tests: haproxy -c reads the certificates.
    result = _checked(render_haproxy_cfg(parse_config(lab_raw), "test"), tmp_path / "none", tmp_path)
    assert result.returncode != 0 and "web.pem" in result.stdout + result.stderr


# --- Two real haproxies, one per namespace ------------------------------------------------------------------------

NET = "10.231.7"  # only inside the test's own namespaces


@pytest.fixture
def two_nodes():
    """Namespaces A and B joined by a veth pair (the cluster segment); removed also on failure."""
    require_tool("ip")
    names = [f"hx-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    veth = f"hxv{uuid.uuid4().hex[:6]}"
    try:
        for ns in names:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "link", "add", veth + "a", "netns", names[0], "type", "veth", "peer", veth + "b", "netns", names[1]], check=True)
        for ns, dev, address in ((names[0], veth + "a", f"{NET}.21/27"), (names[1], veth + "b", f"{NET}.22/27")):
            subprocess.run(["ip", "-n", ns, "addr", "add", address, "dev", dev], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        subprocess.run(["ip", "-n", names[0], "addr", "add", f"{NET}.11/27", "dev", veth + "a"], check=True)
        yield names
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], check=False)


def _local(text: str, tmp: Path, node: str) -> Path:
    """The rendered config as a test process runs it: no chroot, no user switch, sockets under tmp."""
    text = re.sub(r"\n  (chroot /var/lib/haproxy|user haproxy|group haproxy|daemon)(?=\n)", "", text)
    text = text.replace("/run/haproxy/admin.sock", str(tmp / f"{node}.sock")).replace("log /dev/log", "log stdout")
    path = tmp / f"{node}.cfg"
    path.write_text(text)
    return path


def _socket(path: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def _in(ns: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, timeout=30, **kwargs)


def _wait(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


CLIENT = (
    "import base64,ssl,sys,urllib.request as u\n"
    "ctx=ssl.create_default_context(cafile=sys.argv[2]) if sys.argv[2] != '-' else None\n"
    "h={'Authorization':'Basic '+base64.b64encode(sys.argv[3].encode()).decode()} if len(sys.argv)>3 else {}\n"
    "try:\n r=u.urlopen(u.Request(sys.argv[1],headers=h),timeout=5,context=ctx); print(r.status, r.read().decode().splitlines()[0])\n"
    "except u.HTTPError as e:\n print(e.code, '-')\n"
)


def test_two_nodes_share_sticks_check_http_and_serve_metrics(dev_raw, two_nodes, certificates, tmp_path):
    raw = copy.deepcopy(dev_raw)
    raw.update({"hapx:clusterNetwork": f"{NET}.0/27", "hapx:vip": f"{NET}.20", "hapx:clusterVlan": 0})
    del raw["hapx:dhcpVlan"]
    raw["hapx:nodes"] = [{"name": "node-a", "clusterAddress": f"{NET}.21", "managementAddress": "192.168.56.21"},
                         {"name": "node-b", "clusterAddress": f"{NET}.22", "managementAddress": "192.168.56.22"}]  # fmt: skip
    web = {"name": "web", "mode": "http", "ports": [443], "terminateTls": True, "persistence": "source",
           "check": {"type": "http", "path": "/healthz"},
           "backends": [_backend("web-a", f"{NET}.11", 8080), _backend("web-b", f"{NET}.11", 8081)]}  # fmt: skip
    raw = _raw(raw, [web], checkIntervalMs=200, checkFall=1, checkRise=1, peersPort=32701)
    text = render_haproxy_cfg(parse_config(raw), "test").replace(f"{CERT_DIR}/", f"{certificates}/")
    node_a, node_b = two_nodes
    unhealthy = tmp_path / "web-a.unhealthy"
    processes = []
    try:
        for port, name, extra in ((8080, "web-a", ["--unhealthy-file", str(unhealthy)]), (8081, "web-b", [])):
            processes.append(subprocess.Popen(["ip", "netns", "exec", node_a, sys.executable, str(REPO / "tools" / "lab_backend.py"),
                                               "--name", name, "--listen", f"{NET}.11:{port}", *extra]))  # fmt: skip
        for ns, node in ((node_a, "node-a"), (node_b, "node-b")):
            cfg = _local(text, tmp_path, node)
            processes.append(subprocess.Popen(["ip", "netns", "exec", ns, require_tool("haproxy"), "-L", node, "-f", str(cfg)],
                                              env={**os.environ, **STATS_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))  # fmt: skip
        sock_a, sock_b = tmp_path / "node-a.sock", tmp_path / "node-b.sock"
        assert _wait(lambda: sock_a.exists() and sock_b.exists(), 10), [p.poll() for p in processes]

        def get(ns, url, *auth, ca=str(certificates / "ca.crt")):
            out = _in(ns, sys.executable, "-c", CLIENT, url, ca, *auth)
            assert out.returncode == 0, out.stderr
            status, body = out.stdout.split(" ", 1)
            return int(status), body.strip()

        # TLS terminated with the generated certificate, verified against the per-stack CA.
        assert _wait(lambda: "UP" in _socket(sock_a, "show stat").split("web-b")[1].split("\n")[0], 10)
        status, first = get(node_a, "https://127.0.0.1:443/")
        assert status == 200 and first.startswith("web-"), first
        # Persistence: the same client keeps its backend ...
        assert {get(node_a, "https://127.0.0.1:443/")[1] for _ in range(4)} == {first}
        # ... and the entry written through node A is in node B's table (pushed over the peers link).
        assert _wait(lambda: "key=127.0.0.1" in _socket(sock_b, "show table web"), 10), _socket(sock_b, "show table web")
        # The HTTP check takes the failing backend out, and puts it back.
        state = lambda: {line.split()[3]: line.split()[5] for line in _socket(sock_a, "show servers state web").splitlines()[2:] if line.strip()}  # noqa: E731
        unhealthy.touch()
        assert _wait(lambda: state().get("web-a") == "0", 10), state()  # srv_op_state 0: stopped (down)
        assert {get(node_a, "https://127.0.0.1:443/")[1] for _ in range(3)} == {"web-b via " + f"{NET}.21"}
        unhealthy.unlink()
        assert _wait(lambda: state().get("web-a") == "2", 10), state()  # 2: running
        # Metrics behind the stats credentials; the health URL without.
        user_pw = f"{STATS_ENV['HAPX_STATS_USER']}:{STATS_ENV['HAPX_STATS_PASSWORD']}"
        metrics = _in(node_a, "curl", "-s", "-u", user_pw, "http://127.0.0.1:32700/metrics").stdout
        assert 'haproxy_server_status{proxy="web",server="web-a",state="UP"} 1' in metrics, metrics[:500]
        assert get(node_a, "http://127.0.0.1:32700/metrics", "admin:wrong", ca="-")[0] == 401
        assert get(node_a, "http://127.0.0.1:32700/cluster-metrics", ca="-")[0] == 401
        assert get(node_a, "http://127.0.0.1:32700/hapx-health", ca="-")[0] == 200
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
