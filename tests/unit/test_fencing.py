"""Fence plans as data: each driver's plan, its crm params, its credential."""

from __future__ import annotations

from components.config import parse_config
from components.drivers import driver_for
from components.fencing import (
    FENCE_DEVICE_ID,
    FENCE_HEURISTICS_ID,
    FENCE_ORDER_ID,
    NODE_PASSWORD_PATH,
    NODE_VBOX_KEY_PATH,
    FenceCredential,
    FencePlan,
)


def test_lab_plan_is_hapx_agent_with_a_password_and_its_own_ping_check(lab_raw):
    plan = driver_for(parse_config(lab_raw), "lab").fence_plan()
    assert (plan.agent, plan.credential, plan.credential_path) == ("fence_hapx_qemu", FenceCredential.PASSWORD, NODE_PASSWORD_PATH)
    assert plan.agent_template == "node/fence_hapx_qemu"
    assert dict(plan.params)["ping_targets"] == "192.168.4.11,192.168.4.12,192.168.4.13"
    # The agent pings itself, so no heuristics level in front of it.
    assert plan.ping_targets == ()
    assert plan.crm_ids == (FENCE_ORDER_ID, FENCE_DEVICE_ID)
    assert plan.host_map == "hapx-node01:hapx-node01;hapx-node02:hapx-node02"


def test_virtualbox_plan_is_fence_vbox_with_a_key_behind_a_ping_level(dev_raw):
    dev_raw["hapx:fencing"] = {"enabled": True, "hostUser": "vboxadmin", "pingTargets": ["192.168.4.1"]}
    plan = driver_for(parse_config(dev_raw), "dev").fence_plan()
    assert (plan.agent, plan.credential, plan.credential_path) == ("fence_vbox", FenceCredential.SSH_KEY, NODE_VBOX_KEY_PATH)
    assert plan.agent_template is None
    assert plan.params_text == f"ip=192.168.56.1 username=vboxadmin identity_file={NODE_VBOX_KEY_PATH}"
    assert plan.ping_targets == ("192.168.4.1",)
    assert plan.crm_ids == (FENCE_ORDER_ID, FENCE_DEVICE_ID, FENCE_HEURISTICS_ID)


def test_fencing_off_means_no_plan(dev_raw, lab_raw):
    assert driver_for(parse_config(dev_raw), "dev").fence_plan() is None
    lab_raw["hapx:fencing"] = {"enabled": False}
    assert driver_for(parse_config(lab_raw), "lab").fence_plan() is None


def test_params_are_quoted_only_where_crm_needs_it():
    plan = FencePlan(
        agent="fence_x",
        params=(("ip", "10.0.2.100"), ("password_script", "cat /etc/x"), ("targets", "a,b"), ("user", "me@host")),
        credential=FenceCredential.PASSWORD,
        credential_path="/etc/x",
        agent_template=None,
        nodes=("a", "b"),
        host_map="a:a;b:b",
        ping_targets=(),
    )
    assert plan.params_text == 'ip=10.0.2.100 password_script="cat /etc/x" targets="a,b" user=me@host'
