"""The failover benchmark's raw results: one JSON document per `make bench`
run, and the summary printed from it.

The document (schemaVersion SCHEMA_VERSION; docs/benchmarks.md describes
every field):

    {"schemaVersion", "command", "gitCommit", "gitDirty", "startedAt",
     "endedAt", "machine": {...}, "image": {...}, "settings": {...},
     "profiles": {profile: {"overrides", "qemuAccel", "labUpS", "error", "skipped",
                            "scenarios": {scenario: [run row, ...]}}}}

Every run is a row with every field of RUN_FIELDS (null when it does not
apply or was not measured); a run that failed is a row with its `error`
and whatever was measured before it failed, never left out.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
import subprocess
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 9
# Versions whose runs read the same as this one's (3 only added
# translationCacheFlushes to the idle soak's scenario figures; 4 the
# rolling-replace scenario and its figures; 5 the scale scenario, its
# figures, and a profile's `skipped` scenarios; 6 the scale scenario's
# stepsS and translationCacheFlushes, and failureJournals; 7
# faultMissedHolder; 8 kill-haproxy's window from the kill, its
# killLandedS, windowStartS and unavailableFromMarkS; 9 kill-haproxy's
# phases, clock and phasesUncertaintyS, from the killed node's journal,
# and settings.probeOverlapScenarios).
READABLE_VERSIONS = (2, 3, 4, 5, 6, 7, 8, 9)

# Every run row has exactly these keys, in this order. Times are seconds;
# "from the fault" means relative to the fault mark (negative: before it).
RUN_FIELDS: dict[str, str] = {
    "run": "1-based number of the run within its profile and scenario",
    "ok": "true when the run completed; false when it raised (see error)",
    "error": "why the run failed, or null",
    "faultAt": "the fault mark, host wall clock (seconds since the epoch)",
    "faultAtUtc": "the same as ISO 8601 UTC",
    "faultS": "the fault mark, seconds from the probe's start",
    "faultNode": "the node the fault hit (the VIP holder when the run began)",
    "survivor": "the other node, whose journal the phases come from (kill-haproxy: null; its phases come from faultNode's)",
    "probes": "requests the probe sent in the run",
    "failures": "requests that failed in the run, before and after the fault",
    "elapsedS": "how long the probe ran",
    "failuresBeforeFault": "requests that failed before the fault (never part of the window)",
    "failuresBeforeFaultAtS": "when each of those began, from the fault (first 200)",
    "firstFailureAfterFaultS": "start of the first request that failed after the fault, from the fault",
    "unavailableS": "the window: from the fault to the start of the recovering request (end of the outage); null when not recovered; kill-haproxy: from the kill (scenario.windowStartS after the mark)",
    "recoveryConfirmed": "the probe saw --confirm-s of answers after the recovering request",
    "unavailableAtLeastS": "a lower bound for the window when recovery was not confirmed",
    "failuresAfterFault": "requests that failed after the fault, including those after recovery",
    "failuresAfterRecovery": "requests that failed after the recovery was confirmed (a later blip)",
    "failuresAfterRecoveryAtS": "when each of those began, from the fault (first 200)",
    "firstAnsweredAfterOutageS": "start of the first request answered after the first failure, from the fault",
    "vipMovedS": "from the fault to the first answer relayed by the other node",
    "servedVia": "the node address that relayed the probe's first answer",
    "backends": "answers per stand-in backend",
    "timelineZero": "what the timeline's times are relative to: fault, or start (no fault marked)",
    "timeline": "every request, run-length encoded: [startS, endS, ok, count] per stretch of equal outcome",
    "timelineTruncated": "true when the timeline hit its bound (the counts above stay complete)",
    "clock": "the clock of the node the phases come from against the host's: offsets before the fault and after the probe, and the uncertainty",
    "phases": "the failover's phases from the survivor's journal, seconds from the fault (null if not found); power-off and link-cut; kill-haproxy: the restart's from the killed node's journal, seconds from the mark, with killLandedS",
    "phasesUncertaintyS": "± on every phase time from the clock offset",
    "phasesError": "why the journal could not be read, or null",
    "scenario": "what only this scenario measures (VIP holders, fencing, moves), or {}",
}
# The probe's own report, copied into the row under the same names.
PROBE_FIELDS = (
    "probes", "failures", "elapsedS", "faultS", "failuresBeforeFault", "failuresBeforeFaultAtS", "firstFailureAfterFaultS",
    "unavailableS", "recoveryConfirmed", "unavailableAtLeastS", "failuresAfterFault", "failuresAfterRecovery",
    "failuresAfterRecoveryAtS", "firstAnsweredAfterOutageS", "vipMovedS", "servedVia", "backends", "timelineZero",
    "timeline", "timelineTruncated",
)  # fmt: skip
# The scenario-only figures a row may carry under "scenario".
SCENARIO_FIELDS = (
    "maxVipHolders", "dualHolderS", "cutNodeRebooted", "vipMoves", "holderSamples", "fencingHistoryLines",
    "failCounts", "backendNow", "settle", "translationCacheFlushes", "memoryMb", "stepsS", "replaceS", "replacedNodes",
    "viaChanges", "scaleUpS", "scaleDownAtS", "scaleDownS", "nodesAfterScaleUp", "failureJournals", "faultMissedHolder",
    "killLandedS", "killLandedUncertaintyS", "windowStartS", "windowStartNote", "unavailableFromMarkS",
)  # fmt: skip


def utc(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_row(run: int, record: dict, error: str | None = None) -> dict:
    """A run's row from what its runner recorded (the probe's report under
    "probe", and faultNode, survivor, clock, phases, extras)."""
    probe = record.get("probe") or {}
    row = dict.fromkeys(RUN_FIELDS)
    row.update({k: probe.get(k) for k in PROBE_FIELDS})
    row.update(
        run=run,
        ok=error is None,
        error=error,
        faultAt=probe.get("faultAt"),
        faultAtUtc=utc(probe.get("faultAt")),
        faultNode=record.get("faultNode"),
        survivor=record.get("survivor"),
        clock=record.get("clock"),
        phases=record.get("phases"),
        phasesUncertaintyS=record.get("phasesUncertaintyS"),
        phasesError=record.get("phasesError"),
        scenario={k: record[k] for k in SCENARIO_FIELDS if k in record},
    )
    # kill-haproxy: the window from the kill on the node, not from the mark the line to it left at.
    if record.get("windowStartS") and row["unavailableS"]:
        row["scenario"]["unavailableFromMarkS"] = row["unavailableS"]
        row["unavailableS"] = round(row["unavailableS"] - record["windowStartS"], 3)
    return row


def _first_line(args: list[str]) -> str | None:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def cpu_model(cpuinfo: str) -> str | None:
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return match.group(1).strip() if match else None


def machine_info() -> dict:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpuModel": cpu_model(cpuinfo),
        "memoryMiB": _mem_total_mib(),
        "kernel": platform.release(),
        "qemuVersion": _first_line(["qemu-system-x86_64", "--version"]),
        # Filled in from the labs' QEMU processes (the VM script picks it).
        "qemuAccel": None,
    }


def _mem_total_mib() -> int | None:
    try:
        match = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) // 1024 if match else None


def qemu_accel(cmdline: bytes) -> str | None:
    """The accelerator a QEMU process runs with, from /proc/PID/cmdline."""
    args = cmdline.split(b"\0")
    for flag, value in zip(args, args[1:]):
        if flag == b"-accel":
            return value.decode().split(",")[0]
        if flag == b"-machine":
            match = re.search(rb"accel=([a-z]+)", value)
            if match:
                return match.group(1).decode()
    return None


def image_info(image_dir: str) -> dict:
    """Which base image the labs boot: its directory (links resolved) and
    what its image.json says."""
    path = Path(os.path.expanduser(image_dir)).resolve()
    info: dict = {"dir": str(path)}
    try:
        described = json.loads((path / "image.json").read_text())
    except (OSError, ValueError):
        return info | {"error": f"no readable image.json in {path}"}
    return info | {k: described.get(k) for k in ("key", "kernel", "built")}


def git_state(repo: Path) -> tuple[str | None, bool | None]:
    commit = _first_line(["git", "-C", str(repo), "rev-parse", "HEAD"])
    if commit is None:
        return None, None
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True)
    return commit, bool(status.stdout.strip())


def new_document(command: list[str], settings: dict, repo: Path, started_at: float, image_dir: str) -> dict:
    commit, dirty = git_state(repo)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "command": command,
        "gitCommit": commit,
        "gitDirty": dirty,
        "startedAt": utc(started_at),
        "endedAt": None,
        "machine": machine_info(),
        "image": image_info(image_dir),
        "settings": settings,
        "profiles": {},
    }


def new_profile(overrides: dict) -> dict:
    return {"overrides": overrides, "qemuAccel": None, "labUpS": None, "error": None, "scenarios": {}}


def finish_document(document: dict, ended_at: float) -> None:
    document["endedAt"] = utc(ended_at)
    accels = {p["qemuAccel"] for p in document["profiles"].values() if p.get("qemuAccel")}
    document["machine"]["qemuAccel"] = ",".join(sorted(accels)) or None


# -- The printed summary ------------------------------------------------------

WINDOWED = ("power-off", "kill-haproxy", "link-cut")


def failed_requests(row: dict) -> int | None:
    """Failed requests a run counts: after the fault, or all of them when
    there was no fault (the soak)."""
    return row.get("failures") if row.get("faultAt") is None else row.get("failuresAfterFault")


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def window_median(rows: list[dict]) -> float | None:
    """Median window of the measured runs, a run that never recovered
    counting as longer than any (math.inf): it is not left out."""
    measured = [r for r in rows if r.get("faultAt") is not None]
    return median([r["unavailableS"] if r.get("recoveryConfirmed") else math.inf for r in measured])


def _cell(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if value == math.inf:
        return "not recovered"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def window_cell(row: dict) -> str:
    if row.get("unavailableS") is not None:
        return f"{row['unavailableS']:.2f}"
    if row.get("unavailableAtLeastS") is not None:
        return f">= {row['unavailableAtLeastS']:.2f} (not recovered)"
    return "-"


def _scenario_cell(row: dict) -> str:
    extras = row.get("scenario") or {}
    shown = []
    for key in ("maxVipHolders", "dualHolderS", "cutNodeRebooted", "vipMoves", "backendNow", "replaceS"):
        if key in extras:
            shown.append(f"{key} {extras[key]}")
    return ", ".join(shown) or "-"


def runs_table(document: dict, scenario: str) -> list[str]:
    """Every run of one scenario, failed ones included."""
    lines = [
        f"### {scenario}: every run",
        "",
        "| profile | run | unavailable s | first failure s | failed after fault | failed before fault | failed after recovery | requests | other node serves s | scenario | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for profile, section in document["profiles"].items():
        rows = section["scenarios"].get(scenario, [])
        if section.get("error") and not rows:
            lines.append(f"| {profile} | - | | | | | | | | | lab: {section['error']} |")
        for row in rows:
            error = (row.get("error") or "").replace("|", "/").replace("\n", " ")[:160]
            lines.append(
                f"| {profile} | {row['run']} | {window_cell(row) if scenario in WINDOWED else '-'} | "
                f"{_cell(row.get('firstFailureAfterFaultS'))} | {_cell(failed_requests(row))} | "
                f"{_cell(row.get('failuresBeforeFault'))} | {_cell(row.get('failuresAfterRecovery'))} | "
                f"{_cell(row.get('probes'))} | {_cell(row.get('vipMovedS'))} | {_scenario_cell(row)} | {error or '-'} |"
            )
    return lines


def medians_table(document: dict, scenarios: list[str]) -> list[str]:
    lines = [
        "### medians over the measured runs (a run not recovered counts as the longest)",
        "",
        "| scenario | profile | runs | measured | failed runs | not recovered | unavailable s | failed after fault | failed before fault (total) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for scenario in scenarios:
        for profile, section in document["profiles"].items():
            rows = section["scenarios"].get(scenario, [])
            if not rows:
                continue
            # Measured: the probe reported, even if a step after it failed; not when the fault hit a node the VIP
            # had already left (no fault of the holder was measured).
            measured = [r for r in rows if r.get("probes") is not None and not (r.get("scenario") or {}).get("faultMissedHolder")]
            failed = sum(1 for r in rows if not r["ok"])
            unrecovered = sum(1 for r in measured if r.get("faultAt") is not None and not r.get("recoveryConfirmed"))
            window = window_median(measured) if scenario in WINDOWED else None
            before = sum(r.get("failuresBeforeFault") or 0 for r in rows)
            lines.append(
                f"| {scenario} | {profile} | {len(rows)} | {len(measured)} | {failed} | {unrecovered} | {_cell(window)} | "
                f"{_cell(median([failed_requests(r) for r in measured]))} | {before} |"
            )
    return lines


def phases_table(document: dict, scenario: str, phase_names: dict[str, str]) -> list[str]:
    """The phases of every run of a scenario, from the survivor's journal (kill-haproxy: the killed node's)."""
    rows = [(p, r) for p, s in document["profiles"].items() for r in s["scenarios"].get(scenario, [])]
    used = [k for k in phase_names if any((r.get("phases") or {}).get(k) is not None for _, r in rows)]
    if not used:
        return []
    lines = [
        f"### {scenario}: phases from the {'killed node' if scenario == 'kill-haproxy' else 'survivor'}'s journal"
        " (s from the fault; - not found)",
        "",
        "| profile | run | " + " | ".join(phase_names[k] for k in used) + " | ± clock s |",
        "|---|---|" + "---|" * len(used) + "---|",
    ]
    for profile, row in rows:
        phases = row.get("phases") or {}
        cells = " | ".join(_cell(phases.get(k)) for k in used)
        lines.append(f"| {profile} | {row['run']} | {cells} | {_cell(row.get('phasesUncertaintyS'), 3)} |")
    return lines


def summarize(document: dict, scenario_order: tuple[str, ...], phase_names: dict[str, str]) -> str:
    scenarios = sorted(
        {s for p in document["profiles"].values() for s in p["scenarios"]}, key=scenario_order.index
    )
    lines: list[str] = []
    for scenario in scenarios:
        lines += runs_table(document, scenario) + [""]
        phases = phases_table(document, scenario, phase_names)
        if phases:
            lines += phases + [""]
    lines += medians_table(document, scenarios)
    return "\n".join(lines)
