"""The drift check's provider and resource (components/node_state.py): what refresh reads, when up updates, what an
update restores and in which order, that it checks its work, that nothing is ever replaced, SSH with the host key
pinned and the private key kept off command lines; and the resources HaproxyCluster declares, under mocks.

A fake node stands in for SSH here (it answers the exact scripts the provider renders); tests/rendered runs those
scripts with the real Pacemaker tools, tests/engine the provider under the real engine, tests/e2e on the lab."""

from __future__ import annotations

import base64
import json
import os
import stat
from dataclasses import dataclass, field

import pulumi
import pytest

from tests.unit.pulumi_mocks import MOCKS, depends, is_secret_input, parent_name, unsecret

import components.node_state as node_state  # noqa: E402  (after the mocks)
from components.config import parse_config  # noqa: E402
from components.haproxy_cluster import HaproxyCluster, HaproxyClusterArgs  # noqa: E402
from components.node_observation import ABSENT, DECLARED_NODE  # noqa: E402
from components.node_state import (  # noqa: E402
    NodeStateError,
    NodeStateProvider,
    changed_keys,
    read_script,
    run_on_node,
    sha256_hex,
)
from components.rendering import HAPROXY_CFG_PATH, STATS_ENV_PATH, render_template  # noqa: E402
from tests.unit.test_node_observation import CRM_MON, IDS, cib  # noqa: E402

CFG = "global\n  daemon\n"
CRM = "primitive hapx-vip ocf:hapx:vip\n"
CONNECTION = {"host": "127.0.0.1", "port": 2222.0, "user": "debian", "privateKey": "KEY", "hostKey": "ssh-ed25519 AAAA host"}
COLOCATION = '<rsc_colocation id="hapx-vip-with-haproxy" score="INFINITY" rsc="hapx-vip" with-rsc="hapx-haproxy-clone"/>'


def declared(checks_cluster: bool = True, **overrides) -> dict:
    props = {
        "node": "hapx-node01",
        "connection": dict(CONNECTION),
        "instanceId": "hapx-node01-1",
        "haproxyCfg": CFG,
        "haproxyCfgSha256": sha256_hex(CFG),
        "pacemakerNode": dict(DECLARED_NODE),
        "checksCluster": checks_cluster,
    }
    if checks_cluster:
        props.update(crmScript=CRM, crmIds=list(IDS))
    return {**props, **overrides}


@dataclass
class FakeNode:
    """A node that answers the provider's scripts (recognised by their exact text) from its own state."""

    hostname: str = "hapx-node01"
    haproxy_cfg: str = CFG
    standby: bool = False
    pacemaker_running: bool = True
    cib: str = field(default_factory=cib)
    # Restores change nothing when False: a restore that does not take.
    restores_work: bool = True
    calls: list[str] = field(default_factory=list)
    stdins: list[str] = field(default_factory=list)

    def report(self, include_cib: bool) -> str:
        standby = "true" if self.standby else "false"
        crm_mon = CRM_MON.replace('id="1" online="true" standby="false"', f'id="1" online="true" standby="{standby}"')
        lines = [
            "hapx-node-state 1",
            f"hostname {self.hostname}",
            f"haproxy-cfg-sha256 {sha256_hex(self.haproxy_cfg)}",
            f"crm-mon {base64.b64encode(crm_mon.encode()).decode()}" if self.pacemaker_running else "crm-mon unavailable",
        ]
        if include_cib:
            lines.append(f"cib {base64.b64encode(self.cib.encode()).decode()}" if self.pacemaker_running else "cib unavailable")
        return "\n".join(lines + ["end"]) + "\n"

    def run(self, connection: dict, script: str, stdin: str = "", timeout_s: float = 0) -> str:
        assert connection == CONNECTION
        self.stdins.append(stdin)
        for include_cib in (True, False):
            if script == read_script(include_cib):
                self.calls.append("read")
                return self.report(include_cib)
        if script == render_template("drift/node-online.sh.j2", node="hapx-node01", timeout_s=node_state.NODE_ONLINE_TIMEOUT_S):
            self.calls.append("node-online")
            if self.restores_work:
                self.standby, self.pacemaker_running = False, True
        elif script == render_template("node/push-haproxy-cfg.sh.j2", stats_env_path=STATS_ENV_PATH, haproxy_cfg_path=HAPROXY_CFG_PATH):
            self.calls.append("push-haproxy-cfg")
            if self.restores_work:
                self.haproxy_cfg = stdin
        elif script.startswith("# Put hapx's part of the CIB back"):
            self.calls.append("restore-pacemaker")
            if self.restores_work:
                self.cib = cib()
        else:
            raise AssertionError(f"the fake node does not know this script:\n{script[:300]}")
        return "ok\n"


@pytest.fixture
def fake_node(monkeypatch) -> FakeNode:
    node = FakeNode()
    monkeypatch.setattr(node_state, "run_on_node", node.run)
    return node


PROVIDER = NodeStateProvider()


# -- create, read, diff ----------------------------------------------------------------


def test_create_reads_once_and_records_what_hapx_applied(fake_node):
    result = PROVIDER.create(declared())
    assert fake_node.calls == ["read"]
    outs = result.outs
    assert result.id == "hapx-node01"
    assert outs["haproxyCfgSha256"] == sha256_hex(CFG) and outs["pacemakerNode"] == DECLARED_NODE
    assert outs["crmSha256"] == sha256_hex(CRM) and outs["pacemakerDrift"] == {}
    assert {"hapx-vip", "hapx-vip-with-haproxy", "property:stonith-enabled"} <= set(outs["pacemakerApplied"])
    # The content goes to the node when needed; state keeps its hash only once.
    assert "haproxyCfg" not in outs and "crmScript" not in outs
    assert PROVIDER.diff("hapx-node01", outs, declared()).changes is False


def test_a_node_without_the_cluster_check_reads_no_cib(fake_node):
    outs = PROVIDER.create(declared(checks_cluster=False)).outs
    assert "pacemakerApplied" not in outs and "crmSha256" not in outs
    assert fake_node.calls == ["read"]


def test_refresh_shows_each_hand_edit_and_the_next_up_updates(fake_node):
    outs = PROVIDER.create(declared()).outs
    fake_node.haproxy_cfg += "# edited by hand\n"
    fake_node.standby = True
    fake_node.cib = cib().replace(COLOCATION, "")
    refreshed = PROVIDER.read("hapx-node01", outs).outs
    assert refreshed["haproxyCfgSha256"] == sha256_hex(CFG + "# edited by hand\n")
    assert refreshed["pacemakerNode"] == {"online": True, "standby": True, "maintenance": False}
    assert refreshed["pacemakerDrift"] == {"hapx-vip-with-haproxy": ABSENT}
    assert refreshed["pacemakerApplied"] == outs["pacemakerApplied"]
    assert fake_node.calls == ["read", "read"], "a refresh is one SSH round trip and restores nothing"
    assert set(changed_keys(refreshed, declared())) == {"haproxyCfgSha256", "pacemakerNode", "pacemakerDrift"}
    diff = PROVIDER.diff("hapx-node01", refreshed, declared())
    assert diff.changes is True and diff.replaces == [] and diff.delete_before_replace is False


def test_refresh_of_a_node_whose_pacemaker_is_down_says_so(fake_node):
    outs = PROVIDER.create(declared()).outs
    fake_node.pacemaker_running = False
    refreshed = PROVIDER.read("hapx-node01", outs).outs
    assert refreshed["pacemakerNode"]["online"] is False
    assert refreshed["pacemakerDrift"] == {"cib": "unavailable"}


@pytest.mark.parametrize(
    "change, key",
    [
        ({"haproxyCfgSha256": sha256_hex("new"), "haproxyCfg": "new"}, "haproxyCfgSha256"),
        ({"crmScript": CRM + "# new\n"}, "crmScript"),
        ({"crmIds": list(IDS[:-1])}, "crmIds"),
        ({"instanceId": "hapx-node01-2"}, "instanceId"),
        ({"connection": dict(CONNECTION, port=2223.0)}, "connection"),
        ({"instanceId": node_state.UNKNOWN}, "instanceId"),
        ({"connection": dict(CONNECTION, privateKey=node_state.UNKNOWN)}, "connection"),
    ],
    ids=["haproxy-cfg", "crm-script", "crm-ids", "vm-replaced", "connection", "unknown-in-preview", "unknown-nested"],
)
def test_a_program_change_is_an_update_never_a_replacement(fake_node, change, key):
    outs = PROVIDER.create(declared()).outs
    diff = PROVIDER.diff("hapx-node01", outs, declared(**change))
    assert key in changed_keys(outs, declared(**change))
    assert diff.changes is True and diff.replaces == []


# -- update: restore ----------------------------------------------------------------------


def test_update_restores_only_what_drifted_in_order_then_checks(fake_node):
    outs = PROVIDER.create(declared()).outs
    fake_node.haproxy_cfg += "# edited by hand\n"
    fake_node.standby = True
    fake_node.cib = cib().replace(COLOCATION, "")
    fake_node.calls.clear()
    fake_node.stdins.clear()
    restored = PROVIDER.update("hapx-node01", PROVIDER.read("hapx-node01", outs).outs, declared()).outs
    # The node back in the cluster before the crm script (it needs quorum), one read after.
    assert fake_node.calls == ["read", "read", "node-online", "push-haproxy-cfg", "restore-pacemaker", "read"]
    assert fake_node.stdins[3] == CFG and fake_node.stdins[4] == CRM  # content on stdin
    assert fake_node.haproxy_cfg == CFG and not fake_node.standby
    assert restored["pacemakerDrift"] == {} and restored["pacemakerApplied"] == outs["pacemakerApplied"]
    assert restored["haproxyCfgSha256"] == sha256_hex(CFG) and restored["pacemakerNode"] == DECLARED_NODE
    assert PROVIDER.diff("hapx-node01", restored, declared()).changes is False


def test_update_restores_only_the_haproxy_cfg_when_only_it_drifted(fake_node):
    outs = PROVIDER.create(declared(checks_cluster=False)).outs
    fake_node.haproxy_cfg = "edited"
    fake_node.calls.clear()
    PROVIDER.update("hapx-node01", outs, declared(checks_cluster=False))
    assert fake_node.calls == ["read", "push-haproxy-cfg", "read"]


def test_a_new_crm_script_is_the_new_reference_not_drift(fake_node):
    outs = PROVIDER.create(declared()).outs
    # The resource set applied a new script (an update of its own, before this one): the CIB changed.
    fake_node.cib = cib().replace('value="dmz0"', 'value="eth1"')
    news = declared(crmScript=CRM + "# nic eth1\n")
    updated = PROVIDER.update("hapx-node01", outs, news).outs
    assert fake_node.calls[-1] == "read" and "restore-pacemaker" not in fake_node.calls
    assert updated["crmSha256"] == sha256_hex(CRM + "# nic eth1\n")
    assert 'value="eth1"' in updated["pacemakerApplied"]["hapx-vip"]


def test_a_leftover_constraint_at_create_is_taken_out(fake_node):
    fake_node.cib = cib(extra_constraint='<rsc_location id="cli-prefer-hapx-vip" rsc="hapx-vip" node="hapx-node02" score="INFINITY"/>')
    outs = PROVIDER.create(declared()).outs
    assert fake_node.calls == ["read", "restore-pacemaker", "read"]
    assert "cli-prefer-hapx-vip" not in outs["pacemakerApplied"]


@pytest.mark.parametrize(
    "edit, complaint",
    [
        (lambda node: setattr(node, "haproxy_cfg", "edited"), "haproxy.cfg is not the declared one"),
        (lambda node: setattr(node, "standby", True), "not in service"),
        (lambda node: setattr(node, "cib", cib().replace(COLOCATION, "")), "still differs from what hapx applied"),
    ],
    ids=["haproxy-cfg", "standby", "pacemaker"],
)
def test_update_fails_when_the_restore_did_not_take(fake_node, edit, complaint):
    outs = PROVIDER.create(declared()).outs
    edit(fake_node)
    fake_node.restores_work = False
    with pytest.raises(NodeStateError, match=complaint):
        PROVIDER.update("hapx-node01", PROVIDER.read("hapx-node01", outs).outs, declared())


def test_a_node_that_answers_under_another_name_is_refused(fake_node):
    fake_node.hostname = "hapx-node02"
    with pytest.raises(NodeStateError, match="answered as 'hapx-node02', not 'hapx-node01'"):
        PROVIDER.create(declared())


def test_delete_touches_nothing(fake_node):
    PROVIDER.delete("hapx-node01", declared())
    assert fake_node.calls == []


# -- SSH -----------------------------------------------------------------------------------

FAKE_SSH = """#!{python}
import json, os, stat, sys
log = os.environ["FAKE_SSH_LOG"]
opts = sys.argv[1:]
key = opts[opts.index("-i") + 1]
known = next(o.split("=", 1)[1] for o in opts if o.startswith("UserKnownHostsFile="))
calls = json.load(open(log)) if os.path.exists(log) else []
calls.append({{"argv": opts, "stdin": sys.stdin.read(), "key": open(key).read(),
              "key_mode": stat.S_IMODE(os.stat(key).st_mode), "known_hosts": open(known).read()}})
json.dump(calls, open(log, "w"))
codes = os.environ.get("FAKE_SSH_CODES", "0").split(",")
code = int(codes[min(len(calls), len(codes)) - 1])
if code == 0:
    print("remote output")
else:
    print("ssh: connect to host: Connection refused", file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    import sys

    ssh.write_text(FAKE_SSH.format(python=sys.executable))
    ssh.chmod(ssh.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.json"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    monkeypatch.setattr(node_state, "SSH_RETRY_PAUSE_S", 0)
    return lambda: json.loads(log.read_text())


def test_ssh_pins_the_host_key_and_keeps_the_private_key_off_the_command_line(fake_ssh):
    out = run_on_node(dict(CONNECTION, privateKey="-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n-----END OPENSSH PRIVATE KEY-----"), "echo hi", stdin="payload")
    assert out == "remote output\n"
    (call,) = fake_ssh()
    argv = call["argv"]
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv and "IdentitiesOnly=yes" in argv
    assert "HostKeyAlias=hapx-node" in argv and argv[argv.index("-p") + 1] == "2222"
    assert call["known_hosts"] == "hapx-node ssh-ed25519 AAAA host\n"
    assert call["key"].endswith("-----END OPENSSH PRIVATE KEY-----\n") and call["key_mode"] == 0o600
    assert not any("secret" in arg for arg in argv)
    assert argv[-2] == "debian@127.0.0.1" and argv[-1] == "sh -c 'echo hi'"
    assert call["stdin"] == "payload"
    # The key's directory is gone afterwards.
    assert not os.path.exists(argv[argv.index("-i") + 1])


def test_ssh_tries_again_when_ssh_itself_fails_but_not_when_the_script_does(fake_ssh, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_CODES", "255,255,0")
    assert run_on_node(CONNECTION, "true") == "remote output\n"
    assert len(fake_ssh()) == 3
    monkeypatch.setenv("FAKE_SSH_CODES", "3")
    with pytest.raises(NodeStateError, match=r"failed \(3\)"):
        run_on_node(CONNECTION, "false")
    assert len(fake_ssh()) == 4


def test_ssh_gives_up_after_its_tries(fake_ssh, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_CODES", "255")
    with pytest.raises(node_state.NodeUnreachable, match=r"cannot reach .*: ssh: connect to host: Connection refused"):
        run_on_node(CONNECTION, "true")
    assert len(fake_ssh()) == node_state.SSH_TRIES


def test_ssh_tries_can_be_fewer(fake_ssh, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_CODES", "255")
    with pytest.raises(node_state.NodeUnreachable):
        run_on_node(CONNECTION, "true", tries=1)
    assert len(fake_ssh()) == 1


def test_a_failing_command_is_not_unreachable(fake_ssh, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_CODES", "3")
    with pytest.raises(NodeStateError, match=r"failed \(3\)") as raised:
        run_on_node(CONNECTION, "true")
    assert not isinstance(raised.value, node_state.NodeUnreachable)
    assert len(fake_ssh()) == 1


# -- the resources HaproxyCluster declares (mocks) ----------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    from harness.paths import stack_config

    MOCKS.resources.clear()
    return HaproxyCluster("hapx", HaproxyClusterArgs(config=parse_config(stack_config("lab")), stack="test"))


def _registered(cluster) -> pulumi.Output:
    return pulumi.Output.all(cluster.pacemaker.vip_node_at_apply, *[s.haproxy_cfg_sha256 for s in cluster.node_states])


@pulumi.runtime.test
def test_one_node_state_per_node_after_the_resource_set_and_only_the_first_checks_the_cib(cluster):
    def check(_):
        names = ("hapx-hapx-node01-state", "hapx-hapx-node02-state")
        for name in names:
            reg = MOCKS.resources[name]
            assert reg.type == "pulumi-python:dynamic/hapx:NodeState"
            assert parent_name(reg) == "hapx"
            assert depends(name, "hapx-pacemaker-vip-placed") or depends(name, "hapx-pacemaker")
            assert reg.inputs["pacemakerNode"] == DECLARED_NODE
            cfg = unsecret(reg.inputs["haproxyCfg"])
            assert reg.inputs["haproxyCfgSha256"] == sha256_hex(cfg)
            assert cfg == unsecret(MOCKS.resources[name.replace("-state", "-haproxy-cfg")].inputs["stdin"])
        first, second = (MOCKS.resources[n].inputs for n in names)
        assert first["checksCluster"] is True and second["checksCluster"] is False
        # The resource set's stdin is the crm script and, as comments, the node instances it was applied with.
        applied = unsecret(MOCKS.resources["hapx-pacemaker-apply"].inputs["stdin"])
        assert applied.startswith(unsecret(first["crmScript"]))
        assert applied.count("\n# node instance ") == 2
        assert "hapx-fence" in first["crmIds"] and "crmScript" not in second
        # Each aims at its own node, as the node's commands do.
        ready = unsecret(MOCKS.resources["hapx-hapx-node01-ready"].inputs["connection"])
        first_connection, second_connection = unsecret(first["connection"]), unsecret(second["connection"])
        assert {k: first_connection[k] for k in ("host", "port", "user", "hostKey")} == {
            k: ready[k] for k in ("host", "port", "user", "hostKey")
        }
        assert first_connection["port"] != second_connection["port"]

    return _registered(cluster).apply(check)


@pulumi.runtime.test
def test_the_private_key_and_the_pickled_provider_are_secret(cluster):
    def check(_):
        inputs = MOCKS.resources["hapx-hapx-node01-state"].inputs
        # The SDK marks the whole connection secret (as it does the remote commands'); the engine test
        # checks the state file holds the key only encrypted.
        connection = inputs["connection"]
        assert is_secret_input(connection) or is_secret_input(connection["privateKey"])
        assert "PRIVATE KEY" in unsecret(connection)["privateKey"]
        assert is_secret_input(inputs["__provider"])

    return _registered(cluster).apply(check)


def test_crm_ids_are_required_with_a_crm_script():
    from pulumi_command import remote

    with pytest.raises(ValueError, match="crm_ids"):
        node_state.NodeState(
            "x",
            node_state.NodeStateArgs(
                node="n", connection=remote.ConnectionArgs(host="h"), instance_id="i", haproxy_cfg="c", crm_script="s"
            ),
        )
