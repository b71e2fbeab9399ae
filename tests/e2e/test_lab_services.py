"""The lab's services through the VIP (Pulumi.lab.yaml: the reference's TCP pool, `web`: HTTP with TLS terminated
and source persistence, `tls-passthrough`: TCP to backends that speak TLS), on the lab the lifecycle tests built
(tests/e2e/conftest.py orders them after its backend change): both services answer, the HTTP check takes a failing
backend out and back, a sticky client keeps its backend when the VIP moves, and the metrics answer behind the stats
credentials, the cluster's showing the VIP's new node."""

from __future__ import annotations

import csv
import io
import re
import time

import pytest

from components.rendering import VIP_ID
from harness.paths import PYTHON
from harness.wait import wait_for
from tests.e2e.conftest import FIGURES

pytestmark = pytest.mark.e2e

WEB, PASSTHROUGH = 443, 8443
# A client in the lab's namespace: GET url (optionally verified against cafile, with basic auth); prints
# "status first-line-of-body". TLS errors print "tls-error ...".
CLIENT = """
import base64, ssl, sys, urllib.request as u
url, cafile, auth = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = None
if url.startswith("https"):
    ctx = ssl.create_default_context(cafile=cafile) if cafile != "-" else ssl._create_unverified_context()
headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth != "-" else {}
try:
    r = u.urlopen(u.Request(url, headers=headers), timeout=5, context=ctx)
    print(r.status, r.read().decode())
except u.HTTPError as e:
    print(e.code, "-")
except (ssl.SSLError, u.URLError) as e:
    print("tls-error" if "CERTIFICATE" in str(e).upper() or isinstance(e, ssl.SSLError) else "error", e)
"""
# TLS to host:port verified against cafile (hostname not checked), then one request line; prints the answer.
TLS_CLIENT = """
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
ctx.check_hostname = False
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as raw:
    try:
        with ctx.wrap_socket(raw) as s:
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
            print(answer.decode().split("\\r\\n\\r\\n", 1)[1].strip())
    except ssl.SSLError as e:
        print("tls-error", e)
"""



@pytest.fixture(scope="module")
def ca_file(lab_up, tmp_path_factory):
    path = tmp_path_factory.mktemp("ca") / "hapx-ca.crt"
    path.write_text(lab_up.outputs()["tlsCaCertificate"])  # a plain output: no --show-secrets
    return str(path)


def _vip(lab) -> str:
    return lab.config["hapx:vip"]


def _get(lab, url: str, cafile: str = "-", auth: str = "-") -> tuple[str, str]:
    proc = lab.in_namespace(PYTHON, "-c", CLIENT, url, cafile, auth, timeout=30)
    assert proc.returncode == 0, proc.stderr
    status, _, body = proc.stdout.strip().partition(" ")
    return status, body


def _auth(lab, password: str | None = None) -> str:
    outputs = lab.outputs(show_secrets=True)
    return f"{outputs['statsUser']}:{password or outputs['statsPassword']}"


def _server_status(lab, service: str, auth: str) -> dict[str, str]:
    """Each server's status in `service`, from the stats page's CSV through the VIP."""
    status, body = _get_raw(lab, f"http://{_vip(lab)}:{lab.config['hapx:haproxy']['statsPort']}/;csv", auth)
    assert status == "200", body
    rows = csv.DictReader(io.StringIO(body.lstrip("# ")))
    return {row["svname"]: row["status"] for row in rows if row["pxname"] == service and row["svname"] not in ("FRONTEND", "BACKEND")}


def _get_raw(lab, url: str, auth: str) -> tuple[str, str]:
    code = CLIENT.replace("r.read().decode())", "r.read().decode(), end='')")
    proc = lab.in_namespace(PYTHON, "-c", code, url, "-", auth, timeout=30)
    assert proc.returncode == 0, proc.stderr
    status, _, body = proc.stdout.partition(" ")
    return status, body


def test_http_with_tls_termination_and_tcp_passthrough_answer_through_the_vip(lab_up, ca_file):
    lab = lab_up
    services = lab.outputs()["services"]
    assert services["web"]["urls"] == [f"https://{_vip(lab)}:{WEB}"] and services["tls-passthrough"]["mode"] == "tcp"
    # HTTPS verified against the stack's CA (the certificate names the VIP): the web stand-ins answer.
    status, body = _get(lab, f"https://{_vip(lab)}:{WEB}/", ca_file)
    assert status == "200" and re.match(r"web-[ab] via 192\.168\.4\.2[12]$", body), (status, body)
    # Passthrough: the client's TLS reaches the backend itself, whose own certificate it sees (not the stack's).
    stand_in_pem = str(lab.state_dir / lab.stack / "backends" / "stand-in-tls.pem")
    answer = lab.in_namespace(PYTHON, "-c", TLS_CLIENT, _vip(lab), str(PASSTHROUGH), stand_in_pem, timeout=30).stdout.strip()
    assert re.match(r"tls-[ab] via 192\.168\.4\.2[12]$", answer), answer
    refused = lab.in_namespace(PYTHON, "-c", TLS_CLIENT, _vip(lab), str(PASSTHROUGH), ca_file, timeout=30).stdout
    assert refused.startswith("tls-error"), refused
    # On each node the certificate and key are root's alone.
    for node in lab.nodes:
        assert lab.ssh(node, "sudo stat -c '%a %U' /etc/haproxy/certs/web.pem").stdout.strip() == "600 root"


def test_http_check_takes_an_unhealthy_backend_out_and_back(lab_up, ca_file):
    lab = lab_up
    marker = lab.state_dir / lab.stack / "backends" / "web.web-a.unhealthy"
    auth = _auth(lab)
    assert wait_for(lambda: _server_status(lab, "web", auth).get("web-a") == "UP", 30), _server_status(lab, "web", auth)
    started = time.monotonic()
    marker.touch()
    try:
        assert wait_for(lambda: _server_status(lab, "web", auth).get("web-a") == "DOWN", 30, interval_s=0.5), _server_status(lab, "web", auth)
        FIGURES["httpCheckDownS"] = round(time.monotonic() - started, 1)
        # Out of the pool: every answer comes from another backend (a sticky entry for it is overridden).
        answers = {_get(lab, f"https://{_vip(lab)}:{WEB}/", ca_file)[1].split()[0] for _ in range(4)}
        assert "web-a" not in answers and answers <= {"web-b"}, answers
    finally:
        marker.unlink(missing_ok=True)
    started = time.monotonic()
    assert wait_for(lambda: _server_status(lab, "web", auth).get("web-a") == "UP", 30, interval_s=0.5), _server_status(lab, "web", auth)
    FIGURES["httpCheckUpS"] = round(time.monotonic() - started, 1)


def _table(lab, node: str) -> str:
    ask = "import socket;s=socket.socket(socket.AF_UNIX);s.connect('/run/haproxy/admin.sock');s.sendall(b'show table web\\n');print(s.makefile().read())"
    return lab.ssh(node, f'sudo python3 -c "{ask}"').stdout


def _vip_node_in_cluster_metrics(lab) -> set[str]:
    status, body = _get_raw(lab, lab.outputs()["metricsUrls"]["cluster"], _auth(lab))
    assert status == "200", body[:300]
    return {
        m.group(1)
        for line in body.splitlines()
        if line.startswith("ha_cluster_pacemaker_resources{") and f'resource="{VIP_ID}"' in line and line.endswith(" 1")
        for m in [re.search(r'node="([^"]+)"', line)]
        if m and 'role="started"' in line and 'status="active"' in line
    }


def test_sticky_client_keeps_its_backend_and_metrics_follow_the_vip(lab_up, ca_file):
    lab = lab_up
    (holder,) = lab.vip_holders()
    other = next(n for n in lab.nodes if n != holder)
    url = f"https://{_vip(lab)}:{WEB}/"
    first = _get(lab, url, ca_file)[1]
    backend = first.split()[0]
    assert {_get(lab, url, ca_file)[1] for _ in range(4)} == {first}
    # The entry written through the holder is in the other node's table already (peers).
    client = str(lab.config["hapx:qemu"].get("labClientAddress") or "192.168.4.30")
    assert wait_for(lambda: f"key={client}" in _table(lab, other), 10), _table(lab, other)

    # Metrics: both exporters through the VIP, behind the stats credentials.
    metrics = lab.outputs()["metricsUrls"]
    for name in ("haproxy", "cluster"):
        assert _get(lab, metrics[name], auth=_auth(lab, "not-the-password"))[0] == "401"
        assert _get(lab, metrics[name])[0] == "401"
    status, body = _get_raw(lab, metrics["haproxy"], _auth(lab))
    assert status == "200" and 'haproxy_server_status{proxy="web",server="web-b",state="UP"} 1' in body, body[:300]
    assert _get_raw(lab, metrics["nodes"][other]["haproxy"], _auth(lab))[0] == "200"
    assert _vip_node_in_cluster_metrics(lab) == {holder}

    # Move the VIP: the holder goes standby, the other node takes the VIP; then the holder comes back.
    started = time.monotonic()
    lab.ssh(holder, f"sudo crm node standby {holder}")
    try:
        assert wait_for(lambda: lab.vip_holders() == [other], 120, interval_s=1), lab.ssh(other, "sudo crm_mon -1").stdout
        FIGURES["vipMoveStandbyS"] = round(time.monotonic() - started, 1)
        # Same client, same backend, now relayed by the other node.
        assert wait_for(lambda: _get(lab, url, ca_file)[0] == "200", 30, interval_s=0.5)
        moved = _get(lab, url, ca_file)[1]
        assert moved.split()[0] == backend and moved != first, (first, moved)
        assert wait_for(lambda: _vip_node_in_cluster_metrics(lab) == {other}, 60, interval_s=2), _vip_node_in_cluster_metrics(lab)
    finally:
        lab.ssh(holder, f"sudo crm node online {holder}")

    assert wait_for(lambda: lab.whole(other), 180, interval_s=3), lab.ssh(other, "sudo crm_mon -1").stdout
