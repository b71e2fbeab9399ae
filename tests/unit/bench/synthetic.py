"""Bench results made by hand for the unit tests: probe reports shaped like
harness/probe.py's, turned into rows and documents by bench/results.py."""

from __future__ import annotations

from bench import results

FAULT_AT = 1_800_000_000.0  # host wall clock of every synthetic fault


def probe_report(window_s: float | None, failures_before: int = 0, interval_s: float = 0.02, after_s: float = 15.0) -> dict:
    """What the probe reports for a run that answered from -2 s, failed from
    the fault for window_s (None: never recovered), then answered until after_s."""
    lead = round(2.0 / interval_s)
    failed = round((window_s if window_s is not None else after_s) / interval_s)
    answered_after = 0 if window_s is None else round((after_s - window_s) / interval_s)
    timeline = [[-2.0, -0.001, 1, lead - failures_before]]
    if failures_before:
        timeline = [[-2.0, -1.0, 1, lead // 2], [-1.0, -0.7, 0, failures_before], [-0.68, -0.001, 1, lead // 2 - failures_before]]
    timeline.append([0.0, (window_s if window_s is not None else after_s) - 0.001, 0, failed])
    if answered_after:
        timeline.append([window_s, after_s, 1, answered_after])
    probes = sum(n for *_, n in timeline)
    return {
        "target": "192.168.4.20:6443",
        "startedAt": FAULT_AT - 2.5,
        "probes": probes,
        "failures": failures_before + failed,
        "elapsedS": 2.5 + after_s,
        "backends": {"kube-mast01": probes - failed - failures_before},
        "servedVia": "192.168.4.21",
        "faultMarked": True,
        "faultS": 2.5,
        "failuresBeforeFault": failures_before,
        "failuresBeforeFaultAtS": [-1.0] * failures_before,
        "failuresAfterFault": failed,
        "firstFailureAfterFaultS": 0.0,
        "unavailableS": window_s,
        "recoveryConfirmed": window_s is not None,
        "unavailableAtLeastS": None if window_s is not None else after_s,
        "failuresAfterRecovery": 0,
        "failuresAfterRecoveryAtS": [],
        "vipMovedS": window_s,
        "firstAnsweredAfterOutageS": window_s,
        "timelineZero": "fault",
        "timeline": timeline,
        "timelineTruncated": False,
        "faultAt": FAULT_AT,
    }


def document(windows: dict[str, list[float | None]], scenario: str = "power-off") -> dict:
    """A bench document with one profile per key, one completed run per
    window (None: not recovered), and a failed run at the end of each."""
    doc = {
        "schemaVersion": results.SCHEMA_VERSION,
        "command": ["python", "-m", "bench.failover", "--runs", "2"],
        "gitCommit": "0" * 40,
        "gitDirty": False,
        "startedAt": "2027-01-15T08:00:00.000Z",
        "endedAt": "2027-01-15T09:00:00.000Z",
        "machine": {"nproc": 2, "cpuModel": "Synthetic CPU", "memoryMiB": 24000, "kernel": "6.1", "qemuVersion": None, "qemuAccel": "tcg"},
        "settings": {},
        "profiles": {},
    }
    for profile, profile_windows in windows.items():
        section = results.new_profile({})
        rows = []
        for run, window in enumerate(profile_windows, start=1):
            record = {"probe": probe_report(window), "faultNode": "node01", "survivor": "node02"}
            if window is not None:
                record["phases"] = {"membershipS": 1.7, "fencingEndS": 4.4, "vipStartedS": window - 0.2, "firstAnsweredS": window}
                record["phasesUncertaintyS"] = 0.004
            rows.append(results.run_row(run, record))
        rows.append(results.run_row(len(rows) + 1, {"faultNode": "node01"}, error="RuntimeError: node01 did not rejoin within 600 s"))
        section["scenarios"][scenario] = rows
        doc["profiles"][profile] = section
    return doc
