"""Turn a running hapx lab pair into the keepalived + haproxy pair that the
failover benchmark compares against: same VMs, same base image, same
haproxy.cfg, same network; Corosync/Pacemaker stopped and disabled,
haproxy enabled on both nodes, keepalived holding the VIP."""

from __future__ import annotations

import secrets
from pathlib import Path

import jinja2

from harness.lab import LabStack, haproxy_serving_check

TEMPLATE = Path(__file__).with_name("keepalived.conf.j2")
# The tracked check runs every second and its request may take as long as
# hapx's agent allows its own (check_timeout, templates/node/ocf-haproxy): on a
# busy emulated guest curl alone can take over a second. With one second, the
# keepalived pair gave up its VIP under the benchmark's load, before
# faults and after recoveries (docs/benchmarks.md). A killed haproxy refuses
# the request at once, so this does not slow that check; a hung haproxy is
# found as late as hapx's agent finds it. keepalived ends the script a second
# after curl would have.
CHECK_TIMEOUT_S = 5


def render_keepalived(lab: LabStack, node: str, auth_pass: str) -> str:
    nodes = {n["name"]: n["clusterAddress"] for n in lab.config["hapx:nodes"]}
    (peer,) = [address for name, address in nodes.items() if name != node]
    vlan = int(lab.config.get("hapx:clusterVlan", 41))
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(TEMPLATE.read_text()).render(
        node=node,
        interface=f"dmz0.{vlan}" if vlan else "dmz0",
        priority=150 - 10 * lab.nodes.index(node),
        address=nodes[node],
        peer=peer,
        auth_pass=auth_pass,
        serving_check=haproxy_serving_check(lab.config["hapx:haproxy"]["statsPort"], timeout_s=CHECK_TIMEOUT_S),
        script_timeout=CHECK_TIMEOUT_S + 1,
        vip=lab.config["hapx:vip"],
        prefix=lab.config["hapx:clusterNetwork"].split("/")[1],
    )


def convert_to_keepalived(lab: LabStack) -> None:
    auth_pass = secrets.token_hex(4)  # VRRP PASS auth takes 8 characters
    for node in lab.nodes:
        steps = (
            "sudo systemctl disable --now pacemaker corosync >/dev/null 2>&1",
            "sudo systemctl enable --now haproxy >/dev/null 2>&1",
        )
        for step in steps:
            result = lab.ssh(node, step, timeout=180)
            if result.returncode != 0:
                raise RuntimeError(f"{node}: {step}: {result.stderr}")
    for node in lab.nodes:
        conf = render_keepalived(lab, node, auth_pass)
        result = lab.ssh(
            node,
            "sudo install -m 0600 /dev/stdin /etc/keepalived/keepalived.conf && "
            "sudo systemctl enable --now keepalived >/dev/null 2>&1",
            timeout=120,
            stdin=conf,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{node}: keepalived: {result.stderr}")


def pair_whole(lab: LabStack) -> bool:
    serving = haproxy_serving_check(lab.config["hapx:haproxy"]["statsPort"])
    for node in lab.nodes:
        if lab.ssh(node, f"{serving} && systemctl is-active --quiet keepalived").returncode:
            return False
    return len(lab.vip_holders()) == 1
