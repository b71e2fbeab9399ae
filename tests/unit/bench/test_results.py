"""The benchmark's JSON (bench/results.py): every run a row with every
field, failed runs kept with their error and what they measured, the
document's header, the printed summary showing every run."""

from __future__ import annotations

import json
import re

from bench import failover, phases, results
from harness.paths import REPO
from tests.unit.bench import synthetic


def test_a_completed_run_is_a_row_with_every_field_in_order():
    record = {"probe": synthetic.probe_report(7.2, failures_before=2), "faultNode": "node01", "survivor": "node02",
              "phases": {"membershipS": 1.7}, "phasesUncertaintyS": 0.004, "cutNodeRebooted": True, "clockBefore": object()}  # fmt: skip
    row = results.run_row(3, record)
    assert list(row) == list(results.RUN_FIELDS)
    assert row["run"] == 3 and row["ok"] is True and row["error"] is None
    assert row["faultAt"] == synthetic.FAULT_AT and row["faultAtUtc"] == "2027-01-15T08:00:00.000Z"
    assert row["faultS"] == 2.5 and row["unavailableS"] == 7.2 and row["firstFailureAfterFaultS"] == 0.0
    # Failures before the fault stay their own figure, with their times.
    assert row["failuresBeforeFault"] == 2 and row["failuresBeforeFaultAtS"] == [-1.0, -1.0]
    assert row["failuresAfterFault"] == 360 and row["failures"] == 362
    assert row["probes"] == sum(n for *_, n in row["timeline"])
    assert row["phases"] == {"membershipS": 1.7} and row["phasesUncertaintyS"] == 0.004
    assert row["scenario"] == {"cutNodeRebooted": True}
    # What is not the row's (the ClockOffset object the runner kept) is not copied.
    json.dumps(row)


def test_a_failed_run_keeps_its_error_and_what_it_measured():
    measured = results.run_row(1, {"probe": synthetic.probe_report(6.0), "faultNode": "node01"}, error="RuntimeError: node01 did not rejoin")
    assert measured["ok"] is False and measured["error"] == "RuntimeError: node01 did not rejoin"
    assert measured["unavailableS"] == 6.0 and measured["timeline"], measured
    nothing = results.run_row(2, {}, error="TimeoutExpired: ssh")
    assert list(nothing) == list(results.RUN_FIELDS)
    assert nothing["ok"] is False and nothing["unavailableS"] is None and nothing["phases"] is None
    assert nothing["scenario"] == {}


def test_the_document_names_machine_commit_command_image_and_times(tmp_path):
    (tmp_path / "abc123").mkdir()
    (tmp_path / "abc123" / "image.json").write_text('{"key": "abc123", "kernel": "6.1.0-50-cloud-amd64", "built": "2026-11-25T20:13:38Z"}')
    (tmp_path / "current").symlink_to("abc123")
    doc = results.new_document(["python", "-m", "bench.failover", "--runs", "1"], {"runs": 1}, REPO, 1_800_000_000.5,
                               str(tmp_path / "current"))  # fmt: skip
    assert doc["image"] == {"dir": str(tmp_path / "abc123"), "key": "abc123", "kernel": "6.1.0-50-cloud-amd64",
                            "built": "2026-11-25T20:13:38Z"}  # fmt: skip
    assert "error" in results.image_info(str(tmp_path / "missing"))
    assert doc["schemaVersion"] == results.SCHEMA_VERSION
    assert re.fullmatch(r"[0-9a-f]{40}", doc["gitCommit"]) and isinstance(doc["gitDirty"], bool)
    assert doc["startedAt"] == "2027-01-15T08:00:00.500Z" and doc["endedAt"] is None
    machine = doc["machine"]
    assert machine["nproc"] >= 1 and machine["cpuModel"] and machine["kernel"]
    doc["profiles"]["hapx"] = dict(results.new_profile({}), qemuAccel="tcg")
    doc["profiles"]["keepalived"] = dict(results.new_profile({}), qemuAccel="tcg")
    results.finish_document(doc, 1_800_003_600.0)
    assert doc["endedAt"] == "2027-01-15T09:00:00.000Z" and doc["machine"]["qemuAccel"] == "tcg"
    json.dumps(doc)


def test_the_accelerator_is_read_from_qemus_command_line():
    assert results.qemu_accel(b"qemu-system-x86_64\0-name\0hapx-x\0-accel\0tcg,tb-size=256\0-cpu\0max\0") == "tcg"
    assert results.qemu_accel(b"qemu-system-x86_64\0-machine\0pc,accel=kvm\0") == "kvm"
    assert results.qemu_accel(b"qemu-system-x86_64\0-m\0512\0") is None
    assert results.cpu_model("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n") == "Intel(R) Xeon(R) Processor"


def test_the_summary_prints_every_run_failed_ones_and_failures_before_the_fault():
    doc = synthetic.document({"hapx": [7.2, None], "keepalived": [3.3]})
    doc["profiles"]["hapx"]["scenarios"]["power-off"][0] = results.run_row(
        1, {"probe": synthetic.probe_report(7.2, failures_before=3), "phases": {"membershipS": 1.7, "fencingEndS": None},
            "phasesUncertaintyS": 0.004})  # fmt: skip
    text = results.summarize(doc, failover.SCENARIOS, phases.PHASE_LABELS)
    rows = [line for line in text.splitlines() if line.startswith("| hapx |") or line.startswith("| keepalived |")]
    every_run = [r for r in rows if re.match(r"\| \w+ \| \d \| ", r)]
    # hapx: 2 completed + 1 failed; keepalived: 1 + 1 failed; and the phases table's rows.
    assert sum(1 for r in every_run if "did not rejoin" in r) == 2, text
    assert any(r.startswith("| hapx | 1 | 7.20 | 0.00 | 360 | 3 | 0 |") for r in every_run), text
    assert any(r.startswith("| hapx | 2 | >= 15.00 (not recovered) |") for r in every_run), text
    # Medians over the measured runs, the one not recovered counting as the
    # longest; failed runs counted; failures before the fault summed apart.
    assert "| power-off | hapx | 3 | 2 | 1 | 1 | not recovered | 555.00 | 3 |" in text, text
    assert "| power-off | keepalived | 2 | 1 | 1 | 0 | 3.30 | 165 | 0 |" in text, text
    assert "| hapx | 1 | 1.70 | - | " in text and "| 0.004 |" in text, text
    # Phases: found ones shown, the ones not found are "-".
    assert "phases from the survivor's journal" in text and "| new membership |" in text, text


def test_the_bench_records_a_row_for_a_run_that_raised(monkeypatch):
    """bench_profile's loop: the runner raises after measuring; the row is kept with the error."""

    class FakeLab:
        nodes = ["node01", "node02"]
        config: dict = {}

        def set_config(self, config):
            self.config = config

        def up(self):
            pass

        def teardown(self):
            self.torn_down = True

        def vm_pid(self, node):
            raise OSError("no VM")

    lab = FakeLab()

    def measured_then_failed(lab, pair, record):
        record["probe"] = synthetic.probe_report(5.0)
        raise RuntimeError("node01 did not rejoin within 600 s")

    monkeypatch.setattr(failover.LabStack, "create", classmethod(lambda cls, *a, **k: lab))
    monkeypatch.setattr(failover, "PulumiWorkspace", lambda root: None)
    monkeypatch.setattr(failover, "pacemaker_whole", lambda lab: True)
    monkeypatch.setattr(failover, "PACEMAKER", failover.Pair("pacemaker", lambda lab: True))
    monkeypatch.setitem(failover.RUNNERS, "power-off", measured_then_failed)
    section = results.new_profile({})
    saved = []
    failover.bench_profile("hapx", section, 2, ["power-off"], REPO / ".bench-unused", 600, [], lambda: saved.append(1))
    rows = section["scenarios"]["power-off"]
    assert [r["run"] for r in rows] == [1, 2] and all(not r["ok"] for r in rows)
    assert rows[0]["error"] == "RuntimeError: node01 did not rejoin within 600 s"
    assert rows[0]["unavailableS"] == 5.0 and rows[0]["timeline"]
    assert len(saved) == 2 and lab.torn_down


def test_docs_describe_every_run_field():
    doc = (REPO / "docs" / "benchmarks.md").read_text()
    missing = [field for field in results.RUN_FIELDS if f"`{field}`" not in doc]
    assert not missing, f"docs/benchmarks.md does not describe these run fields: {missing}"
