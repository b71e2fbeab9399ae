"""The apply's last step (templates/pacemaker/wait-vip.sh.j2), run here with stand-ins for Pacemaker's tools whose
answers the test changes while the script waits. With the VIP's rule against the DC it returns only once every
node is settled and the VIP is off the DC (the handover done, not a surprise for the first clients); without the
rule, as soon as the VIP runs with haproxy. On the lab: every e2e lab up."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from components.pacemaker_resource_set import VIP_PLACE_TIMEOUT_S, render_wait_vip
from components.rendering import HAPROXY_CLONE_ID, SETTLED_ATTRIBUTE, VIP_ID

from .conftest import stand_in_path


@pytest.fixture
def cluster(tmp_path) -> dict:
    """Files the stand-ins read: where the VIP runs, the DC, the settled nodes."""
    state = {name: tmp_path / name for name in ("vip", "dc", "settled")}
    fakes = {
        "sudo": 'exec "$@"',
        "crm_resource": (
            f'case "$*" in *{VIP_ID}*) echo "resource {VIP_ID} is running on: $(cat {state["vip"]})" ;;\n'
            f'*{HAPROXY_CLONE_ID}*) for n in node-a node-b; do echo "resource {HAPROXY_CLONE_ID} is running on: $n"; done ;; esac'
        ),
        "crm_mon": (
            f'echo \'<current_dc present="true" version="2.1.5" name="\'"$(cat {state["dc"]})"\'" id="1"/>\'\n'
            "echo '<node name=\"node-a\" id=\"1\" online=\"true\"/>'\necho '<node name=\"node-b\" id=\"2\" online=\"true\"/>'"
        ),
        # The CIB's status as cibadmin prints it: a node_state per node, the settled ones with their mark.
        "cibadmin": (
            '[ "$*" = "--query --scope status" ] || exit 2\n'
            'echo "<status>"\n'
            'for n in node-a node-b; do\n'
            '  echo "  <node_state id=\\"$n\\" uname=\\"$n\\" in_ccm=\\"true\\" crmd=\\"online\\">"\n'
            f'  if grep -qw "$n" {state["settled"]}; then\n'
            f'    echo "        <nvpair id=\\"status-$n-{SETTLED_ATTRIBUTE}\\" name=\\"{SETTLED_ATTRIBUTE}\\" value=\\"1\\"/>"\n'
            '  fi\n'
            '  echo "  </node_state>"\n'
            'done\n'
            'echo "</status>"'
        ),
    }
    env = {**os.environ, "PATH": stand_in_path(tmp_path / "bin", fakes)}
    state["vip"].write_text("node-a")
    state["dc"].write_text("node-a")
    state["settled"].write_text("")
    return {"env": env, **state}


def _script(handover_after_s: int | None, timeout_s: int) -> str:
    """The rendered script with a short deadline for the test (the real one: the VIP's time plus the settle time)."""
    deadline = f"+ {VIP_PLACE_TIMEOUT_S + (handover_after_s or 0)} ))"
    script = render_wait_vip(handover_after_s)
    assert deadline in script
    return script.replace(deadline, f"+ {timeout_s} ))")


def test_with_the_rule_it_waits_for_the_handover_to_a_settled_node(cluster):
    script = _script(20, 30)
    proc = subprocess.Popen(["sh", "-c", script], env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    assert proc.poll() is None, "returned while no node was settled"
    cluster["settled"].write_text("node-a node-b")
    time.sleep(2.5)
    assert proc.poll() is None, "returned while the VIP was still on the DC"
    cluster["vip"].write_text("node-b")  # the handover
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out.strip() == "vip-node=node-b"


def test_with_the_rule_a_handover_that_never_comes_fails_and_says_why(cluster):
    cluster["settled"].write_text("node-a")
    result = subprocess.run(["sh", "-c", _script(20, 2)], env=cluster["env"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "waiting for the handover (1 of 2 nodes settled, VIP on node-a, DC node-a)" in result.stderr


def test_without_the_rule_the_vip_with_haproxy_is_enough(cluster):
    script = _script(None, 5)
    assert SETTLED_ATTRIBUTE not in script
    result = subprocess.run(["sh", "-c", script], env=cluster["env"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "vip-node=node-a"
