"""The drift check's reading of a node: the read script's report parsed, hapx's part of the CIB in a canonical
form, and the differences from what hapx applied named (components/node_observation.py). The same functions on
a real CIB and the real read script: tests/rendered/test_drift_scripts.py."""

from __future__ import annotations

import base64

import pytest

from components.node_observation import (
    ABSENT,
    CIB_UNAVAILABLE,
    DECLARED_NODE,
    MISSING,
    NodeReportError,
    as_applied,
    canonical_pacemaker,
    node_state_from_crm_mon,
    pacemaker_drift,
    pacemaker_restore,
    parse_node_report,
)

IDS = ("hapx-haproxy-before-vip", "hapx-vip-with-haproxy", "hapx-vip", "hapx-haproxy-clone", "hapx-haproxy", "hapx-fence")

CRM_MON = """<pacemaker-result api-version="2.25" request="crm_mon">
  <nodes>
    <node name="hapx-node01" id="1" online="true" standby="false" maintenance="false" type="member"/>
    <node name="hapx-node02" id="2" online="true" standby="true" maintenance="false" type="member"/>
  </nodes>
  <node_history><node name="hapx-node01"/></node_history>
</pacemaker-result>"""

CIB = """<configuration>
  <crm_config>
    <cluster_property_set id="cib-bootstrap-options">
      <nvpair id="o-dc" name="dc-version" value="2.1.5"/>
      <nvpair id="o-name" name="cluster-name" value="haproxy-cluster"/>
      <nvpair id="o-st" name="stonith-enabled" value="true"/>
      <nvpair id="o-q" name="no-quorum-policy" value="stop"/>
      {extra_property}
    </cluster_property_set>
  </crm_config>
  <nodes><node id="1" uname="hapx-node01"/></nodes>
  <resources>
    <primitive id="hapx-vip" class="ocf" provider="hapx" type="vip">
      <instance_attributes id="hapx-vip-ia">
        <nvpair id="hapx-vip-ia-ip" name="ip" value="192.168.4.20"/>
        <nvpair id="hapx-vip-ia-nic" name="nic" value="dmz0"/>
      </instance_attributes>
    </primitive>
    <clone id="hapx-haproxy-clone">
      <primitive id="hapx-haproxy" class="ocf" provider="hapx" type="haproxy"/>
    </clone>
    <primitive id="someone-elses" class="ocf" provider="pacemaker" type="Dummy"/>
  </resources>
  <constraints>
    <rsc_colocation id="hapx-vip-with-haproxy" score="INFINITY" rsc="hapx-vip" with-rsc="hapx-haproxy-clone"/>
    <rsc_order id="hapx-haproxy-before-vip" kind="Optional" first="hapx-haproxy-clone" then="hapx-vip"/>
    <rsc_location id="unrelated-location" rsc="someone-elses" node="hapx-node01" score="10"/>
    {extra_constraint}
  </constraints>
  <rsc_defaults>
    <meta_attributes id="rsc-options"><nvpair id="rsc-options-stickiness" name="resource-stickiness" value="100"/></meta_attributes>
  </rsc_defaults>
  <fencing-topology>
    <fencing-level id="fl-1" target="hapx-node01" index="1" devices="hapx-fence-ping,hapx-fence"/>
    <fencing-level id="fl-other" target="hapx-node01" index="2" devices="someone-elses-fence"/>
  </fencing-topology>
</configuration>"""


def cib(extra_property: str = "", extra_constraint: str = "") -> str:
    return CIB.format(extra_property=extra_property, extra_constraint=extra_constraint)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def report(*lines: str) -> str:
    return "\n".join(("hapx-node-state 1",) + lines + ("end",)) + "\n"


# -- the report -------------------------------------------------------------------


def test_report_with_the_cib_parses_into_what_the_node_is():
    text = report("hostname hapx-node02", "haproxy-cfg-sha256 " + "ab" * 32, f"crm-mon {b64(CRM_MON)}", f"cib {b64(cib())}")
    seen = parse_node_report(text, "hapx-node02")
    assert seen.hostname == "hapx-node02"
    assert seen.haproxy_cfg_sha256 == "ab" * 32
    assert seen.node == {"online": True, "standby": True, "maintenance": False}
    assert seen.cib_asked and seen.cib_configuration == cib()


def test_report_without_the_cib_and_without_pacemaker_reads_offline():
    seen = parse_node_report(report("hostname n", f"haproxy-cfg-sha256 {MISSING}", "crm-mon unavailable"), "n")
    assert seen.node == {"online": False, "standby": False, "maintenance": False}
    assert seen.haproxy_cfg_sha256 == MISSING
    assert not seen.cib_asked and seen.cib_configuration is None
    asked = parse_node_report(report("hostname n", "haproxy-cfg-sha256 x", "crm-mon unavailable", "cib unavailable"), "n")
    assert asked.cib_asked and asked.cib_configuration is None


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("Welcome to the node!\n" + report("hostname n"), "does not start with"),
        (report("hostname n", "haproxy-cfg-sha256 x", "crm-mon unavailable").replace("end\n", ""), "cut short"),
        (report("hostname n", "crm-mon unavailable"), "'haproxy-cfg-sha256'"),
        (report("hostname n", "haproxy-cfg-sha256 x", "crm-mon not*base64"), "not valid base64"),
        (report("hostname n", "haproxy-cfg-sha256 x", f"crm-mon {b64('<unclosed')}"), "does not parse"),
        ("", "does not start with"),
    ],
    ids=["banner-first", "no-end", "no-sha", "bad-base64", "bad-xml", "empty"],
)
def test_a_report_that_is_not_the_read_scripts_is_refused(text, complaint):
    with pytest.raises(NodeReportError, match=complaint):
        parse_node_report(text, "n")


def test_node_state_is_the_nodes_own_entry_not_its_history():
    assert node_state_from_crm_mon(CRM_MON, "hapx-node01") == DECLARED_NODE
    maintenance = CRM_MON.replace('standby="false" maintenance="false"', 'standby="false" maintenance="true"', 1)
    assert node_state_from_crm_mon(maintenance, "hapx-node01") == {"online": True, "standby": False, "maintenance": True}
    # A node Pacemaker does not list (or no answer at all) is offline.
    assert node_state_from_crm_mon(CRM_MON, "hapx-node03")["online"] is False
    assert node_state_from_crm_mon(None, "hapx-node01")["online"] is False


# -- the CIB, canonical ----------------------------------------------------------------


def test_canonical_form_holds_hapxs_objects_and_properties_only():
    live = canonical_pacemaker(cib(), IDS)
    assert set(live) == {
        "hapx-vip",
        "hapx-haproxy-clone",  # with its primitive inside
        "hapx-vip-with-haproxy",
        "hapx-haproxy-before-vip",
        "fencing-level:hapx-node01:1",
        "rsc_defaults:rsc-options",
        "property:cluster-name",
        "property:stonith-enabled",
        "property:no-quorum-policy",
    }
    assert live["property:stonith-enabled"] == "true"
    assert 'id="hapx-haproxy"' in live["hapx-haproxy-clone"]
    assert "someone-elses" not in "".join(live.values()) and "dc-version" not in "".join(live)


def test_canonical_form_ignores_order_and_whitespace_but_not_values():
    live = canonical_pacemaker(cib(), IDS)
    reordered = cib().replace(
        '<nvpair id="hapx-vip-ia-ip" name="ip" value="192.168.4.20"/>\n        <nvpair id="hapx-vip-ia-nic" name="nic" value="dmz0"/>',
        '<nvpair name="nic" value="dmz0" id="hapx-vip-ia-nic"/><nvpair value="192.168.4.20" name="ip" id="hapx-vip-ia-ip"/>',
    )
    assert reordered != cib()
    assert canonical_pacemaker(reordered, IDS) == live
    changed = canonical_pacemaker(cib().replace('value="dmz0"', 'value="eth0"'), IDS)
    assert pacemaker_drift(live, changed) == {"hapx-vip": changed["hapx-vip"]}


def test_canonical_form_reads_a_whole_cib_too():
    whole = f'<cib epoch="1"><configuration>{cib().split("<configuration>", 1)[1]}<status/></cib>'
    assert canonical_pacemaker(whole, IDS) == canonical_pacemaker(cib(), IDS)
    with pytest.raises(NodeReportError, match="no configuration"):
        canonical_pacemaker("<cib/>", IDS)


def test_out_of_service_properties_count_only_when_true():
    assert "property:maintenance-mode" not in canonical_pacemaker(
        cib('<nvpair id="m" name="maintenance-mode" value="false"/>'), IDS
    )
    on = canonical_pacemaker(cib('<nvpair id="m" name="maintenance-mode" value="true"/>'), IDS)
    assert on["property:maintenance-mode"] == "true"
    stopped = canonical_pacemaker(cib('<nvpair id="s" name="stop-all-resources" value="yes"/>'), IDS)
    assert stopped["property:stop-all-resources"] == "yes"


def test_a_constraint_someone_else_made_on_a_hapx_resource_counts():
    ban = '<rsc_location id="cli-ban-hapx-vip-on-hapx-node02" rsc="hapx-vip" node="hapx-node02" score="-INFINITY"/>'
    live = canonical_pacemaker(cib(extra_constraint=ban), IDS)
    assert "cli-ban-hapx-vip-on-hapx-node02" in live
    in_a_set = '<rsc_order id="set-order"><resource_set id="rs"><resource_ref id="hapx-vip"/></resource_set></rsc_order>'
    assert "set-order" in canonical_pacemaker(cib(extra_constraint=in_a_set), IDS)


# -- what hapx applied, and what drifted --------------------------------------------------


def test_what_hapx_applied_leaves_out_what_hapx_never_makes():
    ban = '<rsc_location id="cli-prefer-hapx-vip" rsc="hapx-vip" node="hapx-node02" score="INFINITY"/>'
    live = canonical_pacemaker(cib('<nvpair id="m" name="maintenance-mode" value="true"/>', ban), IDS)
    applied = as_applied(live, IDS)
    assert "cli-prefer-hapx-vip" not in applied and "property:maintenance-mode" not in applied
    assert {"hapx-vip", "fencing-level:hapx-node01:1", "rsc_defaults:rsc-options", "property:stonith-enabled"} <= set(applied)
    # So a leftover found when the check is created is drift from the start.
    assert set(pacemaker_drift(applied, live)) == {"cli-prefer-hapx-vip", "property:maintenance-mode"}


def test_drift_names_each_key_with_its_live_value():
    applied = as_applied(canonical_pacemaker(cib(), IDS), IDS)
    edited = cib('<nvpair id="m" name="maintenance-mode" value="true"/>').replace(
        '<rsc_colocation id="hapx-vip-with-haproxy" score="INFINITY" rsc="hapx-vip" with-rsc="hapx-haproxy-clone"/>', ""
    )
    drift = pacemaker_drift(applied, canonical_pacemaker(edited, IDS))
    assert drift == {"hapx-vip-with-haproxy": ABSENT, "property:maintenance-mode": "true"}
    assert pacemaker_drift(applied, canonical_pacemaker(cib(), IDS)) == {}


def test_restore_deletes_foreign_constraints_and_sets_properties_back():
    applied = as_applied(canonical_pacemaker(cib(), IDS), IDS)
    drift = {
        "hapx-vip-with-haproxy": ABSENT,  # re-applied by the crm script, not deleted
        "hapx-vip": "<primitive/>",
        "cli-ban-hapx-vip-on-hapx-node02": "<rsc_location/>",
        "property:maintenance-mode": "true",
        "property:no-quorum-policy": "ignore",
        "fencing-level:hapx-node02:1": "<fencing-level/>",
        **CIB_UNAVAILABLE,
    }
    undo = pacemaker_restore(applied, drift)
    assert undo.extra_constraints == ("cli-ban-hapx-vip-on-hapx-node02",)
    assert dict(undo.properties) == {"maintenance-mode": None, "no-quorum-policy": "stop"}
