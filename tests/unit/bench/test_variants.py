"""bench.failover --variant: a value tried as its own profile in the same run as hapx's defaults and keepalived."""

import json

import pytest

from bench import failover
from bench.failover import BENCH_VMS, PROFILES, parse_variant, profile_overrides


def test_a_variant_is_hapx_with_its_overrides_merged_key_by_key():
    name, overrides = parse_variant('token600={"hapx:corosync": {"tokenMs": 600}}')
    assert name == "hapx-token600"
    hapx = {"hapx:corosync": {"consensusMs": 200}, "hapx:pacemaker": {"transitionDelayMs": 300}}
    merged = profile_overrides(name, hapx, {name: overrides})
    # One field of hapx:corosync set, the other kept; the rest of hapx's overrides kept; the bench's VMs under all.
    assert merged == {
        **BENCH_VMS, "hapx:corosync": {"consensusMs": 200, "tokenMs": 600}, "hapx:pacemaker": {"transitionDelayMs": 300}
    }  # fmt: skip
    # hapx itself and the named profiles are unchanged by a variant.
    assert profile_overrides("hapx", hapx, {name: overrides}) == {**BENCH_VMS, **hapx}
    assert profile_overrides("keepalived", hapx, {name: overrides}) == {**BENCH_VMS, **PROFILES["keepalived"]}


@pytest.mark.parametrize(
    "spec, message",
    [
        ('{"hapx:corosync": {}}', "give NAME=JSON"),
        ('Token={"hapx:corosync": {"tokenMs": 600}}', "give NAME=JSON"),
        ("t=not json", "not JSON"),
        ("t={}", "JSON object of hapx:\\* config keys"),
        ('t={"corosync": {"tokenMs": 600}}', "JSON object of hapx:\\* config keys"),
    ],
)
def test_a_bad_variant_is_refused_with_the_fix(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_variant(spec)


def test_variants_run_right_after_hapx_and_are_recorded(tmp_path, monkeypatch):
    ran = []

    def fake_bench_profile(name, section, *args, **kwargs):
        ran.append((name, section["overrides"]))

    monkeypatch.setattr(failover, "bench_profile", fake_bench_profile)
    out = tmp_path / "failover.json"
    failover.main([
        "--profiles", "hapx,keepalived", "--scenarios", "power-off", "--runs", "1", "--out", str(out),
        "--variant", 'token600={"hapx:corosync": {"tokenMs": 600}}',
    ])  # fmt: skip
    assert [name for name, _ in ran] == ["hapx", "hapx-token600", "keepalived"]
    assert ran[1][1] == {**BENCH_VMS, "hapx:corosync": {"tokenMs": 600}}
    document = json.loads(out.read_text())
    assert document["settings"]["variants"] == {"hapx-token600": {"hapx:corosync": {"tokenMs": 600}}}
    assert list(document["profiles"]) == ["hapx", "hapx-token600", "keepalived"]


def test_a_bad_variant_stops_the_bench_before_any_lab(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(failover, "bench_profile", lambda *a, **k: pytest.fail("a lab was started"))
    with pytest.raises(SystemExit):
        failover.main(["--out", str(tmp_path / "f.json"), "--variant", "t=nope"])
    assert "--variant t: the overrides are not JSON" in capsys.readouterr().err


def test_a_keepalived_variant_is_the_keepalived_pair_with_its_overrides_run_after_it(tmp_path, monkeypatch):
    # The same VM shape for both pairs: a hapx variant and a keepalived variant with the same overrides.
    name, overrides = parse_variant('keepalived-cpu1={"hapx:nodeSize": {"cpus": 1}}')
    assert name == "keepalived-cpu1"
    assert profile_overrides(name, {"hapx:corosync": {"tokenMs": 600}}, {name: overrides}) == {
        **PROFILES["keepalived"], "hapx:nodeSize": {"cpus": 1}
    }, "built on keepalived's overrides, not on hapx's; the variant's shape over the bench's"
    ran = []
    monkeypatch.setattr(failover, "bench_profile", lambda name, section, *a, **k: ran.append((name, section["overrides"])))
    failover.main([
        "--profiles", "keepalived,hapx", "--scenarios", "power-off", "--runs", "1", "--out", str(tmp_path / "f.json"),
        "--variant", 'keepalived-cpu1={"hapx:nodeSize": {"cpus": 1}}', "--variant", 'cpu1={"hapx:nodeSize": {"cpus": 1}}',
    ])  # fmt: skip
    assert [n for n, _ in ran] == ["keepalived", "keepalived-cpu1", "hapx", "hapx-cpu1"]
    assert ran[0][1]["hapx:nodeSize"] == BENCH_VMS["hapx:nodeSize"]
    assert ran[1][1]["hapx:fencing"] == {"enabled": False} and ran[1][1]["hapx:nodeSize"] == {"cpus": 1}


def test_each_profile_names_the_pair_it_is_built_as():
    assert [failover.variant_base(p) for p in ("keepalived", "keepalived-cpu2", "hapx", "hapx-fast", "reference")] == [
        "keepalived", "keepalived", "hapx", "hapx", "reference"
    ]

