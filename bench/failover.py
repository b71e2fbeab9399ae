"""Failover benchmark on the QEMU lab: how long clients go without service.

    .venv/bin/python -m bench.failover [--runs 3] [--profiles reference,hapx,keepalived]
        [--scenarios power-off,kill-haproxy,link-cut,backend-change,idle-soak]
        [--soak-s 600] [--hapx-overrides JSON] [--variant NAME=JSON ...]
        [--out .bench/failover.json] [--keep-journals DIR]

Profiles: `reference` is hapx with the reference design's settings (token
3 s, monitors every 20 s, haproxy started on the survivor at failover and
restarted by Pacemaker after a crash, no fencing);
`hapx` is hapx's shipped defaults (plus --hapx-overrides, to try values);
`hapx-NAME` (one per --variant NAME=JSON, run after `hapx` in the order
given) is `hapx` with JSON on top: a value tried against the defaults and
keepalived in the same run, the only comparison that holds on these
machines;
`keepalived` is the same pair, same image and haproxy.cfg, switched to
keepalived (VRRP, unicast, advert_int 1 s, haproxy on both nodes, a
tracked haproxy check), the alternative operators would pick;
`keepalived-NAME` (--variant keepalived-NAME=JSON, run after `keepalived`)
is that pair built with JSON on top, so both pairs can run on the same
VM shape (for example `hapx:nodeSize`).

For each profile it brings up its own lab stack (real engine, real VMs),
then for each scenario and run keeps a client probing the VIP every 20 ms
from inside the lab's namespace (bounded in time) while it:

- power-off:     kills the QEMU process of the node holding the VIP, then
                 restarts that VM and waits until it has rejoined;
- kill-haproxy:  SIGKILLs haproxy on the node holding the VIP, then clears
                 Pacemaker's fail count;
- link-cut:      takes the VIP holder's cluster link down for 20 s (the node
                 keeps running), then restores it; records which nodes hold
                 the VIP meanwhile and for 10 s after (two holders is split
                 brain) and whether the cut node was fenced (rebooted);
- backend-change: replaces a backend (kube-mast03 <-> kube-mast04) through
                 `pulumi up`: haproxy reloads on both nodes, the stand-ins
                 follow;
- idle-soak:     nothing at all for --soak-s (600 s), a probe every 100 ms:
                 the VIP must not move and no request may fail;
- rolling-replace: replaces every VM. hapx: a node-size change (memory
                 +64 MiB, then back) through `pulumi up`, which drains and
                 replaces one node at a time; keepalived: the naive way, each
                 node in turn powered off and booted again once the pair is
                 whole (no drain: keepalived's own failover covers the loss).
- scale:         hapx only: a third node added to the running pair through
                 `pulumi up`, then removed again (2 -> 3 -> 2), every request
                 from the start of the first up counted. The keepalived pair
                 is converted from a hapx-built pair and has no path to a
                 third node yet: its profile skips this scenario and says so.

The probe (harness/probe.py) is armed before each fault, runs 2 s before
it and is told the instant it happens; once recovered it keeps probing
until 15 s after the fault. After a power-off or a link cut the survivor's
journal gives the failover's phases (bench/phases.py), on the host's clock
through an offset measured over SSH just before the fault and again after
(harness/clock.py). Every run, failed ones included, is a row of the JSON
written to --out after each run (bench/results.py describes it) and of the
printed summary: the unavailability window (from the fault to the first
good reply after which 1 s of replies were all good), failures before the
fault apart (never the window), failures after the fault and after the
recovery, the phases; then medians. `python -m bench.plot` draws the
pictures from the JSON. Figures depend on the machine: under TCG on 2
cores, process start-up inside the guests dominates.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench import phases, results
from bench.keepalived import convert_to_keepalived, pair_whole
from components.config import QemuConfig
from harness.clock import GUEST_CLOCK_LOOP, ClockOffset, combined_uncertainty, measure_offset
from harness.lab import LabStack, haproxy_serving_check
from harness.paths import REPO, stack_config
from harness.probe import ProbeProcess
from harness.pulumi_events import step_windows
from harness.wait import wait_for
from harness.watch import HolderWatch
from harness.workspace import PulumiWorkspace

# Every pair runs on VMs of this shape, whatever the lab's own (Pulumi.lab.yaml keeps 1 vCPU, for CI's time):
# under TCG a single emulated CPU is busy with Pacemaker's own work when a failover needs it, and both pairs get
# the same machines (docs/benchmarks.md). A profile or variant may still set hapx:nodeSize itself.
BENCH_VMS = {"hapx:nodeSize": {"cpus": 2}}
# Settings profiles: hapx:* config overrides on top of Pulumi.lab.yaml and BENCH_VMS.
PROFILES = {
    "reference": {
        "hapx:corosync": {"tokenMs": 3000},
        "hapx:pacemaker": {
            "monitorIntervalS": 20,
            "haproxyOnAllNodes": False,
            "haproxyRestart": "pacemaker",
            "vipAgent": "IPaddr2",
            "transitionDelayMs": 0,
        },
        "hapx:fencing": {"enabled": False},
    },
    "hapx": {},
    # Pacemaker is stopped on the keepalived pair; without fencing the crm
    # script does not follow the backends, so `pulumi up` leaves it alone.
    "keepalived": {"hapx:fencing": {"enabled": False}},
}
SCENARIOS = ("power-off", "kill-haproxy", "link-cut", "backend-change", "idle-soak", "rolling-replace", "scale")
# Scenarios a profile cannot run, and why (the JSON's `skipped` says so; no row is made up).
NOT_RUN = {"keepalived": {"scale": "the keepalived pair is converted from a hapx-built pair and has no path to a third node"}}
THIRD_NODE = {"name": "hapx-node03", "clusterAddress": "192.168.4.23"}
PROBE_INTERVAL_MS = 20
PROBE_TIMEOUT_MS = 300
PROBE_LIMIT_S = 120  # no scenario but the soak may keep a client loop running longer
PROBE_WAIT_S = PROBE_LIMIT_S + 60  # and how long the bench waits for its report
# The probe runs this long before the fault (the picture's left edge) and,
# once recovered, until this long after it: failures after a recovery are
# seen, and every run covers the picture's right edge.
LEAD_IN_S = 2.0
WATCH_AFTER_FAULT_S = 15.0
CUT_S = 20  # how long link-cut keeps the link down
AFTER_RESTORE_S = 10  # and how long it keeps watching VIP holders after
SOAK_PROBE_INTERVAL_MS = 100
# The journals kept around a long scenario's failed requests (--keep-journals).
FAILURE_JOURNAL_BEFORE_S = 30
FAILURE_JOURNAL_AFTER_S = 10
ROLL_LIMIT_S = 3600  # the probe's bound through a whole rolling replacement
ROLL_MEMORY_STEP_MB = 64
# A power-off, kill-haproxy or link-cut hits a settled pair: before the fault, every node
# must have been at least SETTLE_IDLE_PCT idle over SETTLE_SAMPLE_S (a node
# that has just booted and rejoined is busy for a minute or two under TCG,
# and the survivor's CPU is most of hapx's failover). Waited for at most
# SETTLE_LIMIT_S; what was waited and measured is in the row either way.
SETTLE_IDLE_PCT = 70.0
SETTLE_SAMPLE_S = 3
SETTLE_LIMIT_S = 240
QEMU_IMAGE_DIR = QemuConfig.model_fields["image_dir"].default  # the labs boot this unless told otherwise


@dataclass(frozen=True)
class Pair:
    """What runs the pair in a profile: Pacemaker, or keepalived after
    convert_to_keepalived; `whole` says the pair is back to normal."""

    kind: str  # a key of phases.PATTERNS
    whole: Callable[[LabStack], bool]


def pacemaker_whole(lab: LabStack) -> bool:
    try:
        for node in lab.nodes:
            status = lab.ssh(node, "sudo crm_mon -1 2>/dev/null", timeout=30).stdout
            if f"Online: [ {' '.join(lab.nodes)} ]" not in status or "Stopped" in status or "FAILED" in status:
                return False
        # Not whole while the scheduler still plans a move (the VIP handed back to a node that came back), or will
        # once a node is settled.
        return len(lab.vip_holders()) == 1 and lab.scheduler_idle(lab.nodes[0])
    except subprocess.TimeoutExpired:
        # A node that came back answers slowly while it boots: not whole yet, asked again by the caller's wait (a
        # run was marked failed for this after its measurement, as LabStack.whole once was in CI).
        return False


PACEMAKER = Pair("pacemaker", pacemaker_whole)
KEEPALIVED = Pair("keepalived", pair_whole)


def restart_vm(lab: LabStack, node: str) -> None:
    """Start a powered-off node again with the driver's own (idempotent) create script."""
    export = lab.workspace.export(lab.stack)
    (vm,) = [r for r in export["deployment"]["resources"] if r["urn"].endswith(f"::hapx-{node}-vm")]
    subprocess.run(["/bin/sh", "-c", vm["inputs"]["create"]], cwd=REPO, check=True, capture_output=True, timeout=120)


def idle_percent(lab: LabStack, node: str) -> float:
    """How idle the node's CPU was over SETTLE_SAMPLE_S (idle + iowait, /proc/stat)."""
    out = lab.ssh(node, f"head -1 /proc/stat; sleep {SETTLE_SAMPLE_S}; head -1 /proc/stat", timeout=60).stdout.splitlines()
    before, after = ([int(v) for v in line.split()[1:]] for line in out[:2])
    spent = [b - a for a, b in zip(before, after)]
    return 100.0 * (spent[3] + spent[4]) / max(1, sum(spent))


def settle(lab: LabStack, record: dict) -> None:
    """Wait until every node is SETTLE_IDLE_PCT idle (bounded); record it."""
    started = time.monotonic()
    while True:
        # Both nodes over the same seconds, and one sample's wait, not one per node.
        with ThreadPoolExecutor(len(lab.nodes)) as pool:
            samples = pool.map(lambda node: round(idle_percent(lab, node), 1), lab.nodes)
        idle = dict(zip(lab.nodes, samples))
        waited = time.monotonic() - started
        if min(idle.values()) >= SETTLE_IDLE_PCT or waited > SETTLE_LIMIT_S:
            break
    record["settle"] = {"waitedS": round(waited, 1), "idlePercent": idle, "settled": min(idle.values()) >= SETTLE_IDLE_PCT}


def clock_offset(lab: LabStack, node: str) -> ClockOffset:
    return measure_offset(lab.ssh_command(node, GUEST_CLOCK_LOOP))


def armed_probe(lab: LabStack, record: dict, survivor: str | None = None) -> ProbeProcess:
    """The survivor's clock measured, then a probe that stops once recovered
    (and WATCH_AFTER_FAULT_S after the fault), armed; returned once it has run
    LEAD_IN_S, so the fault can be marked. Its requests overlap (a new one
    every PROBE_INTERVAL_MS while others wait out PROBE_TIMEOUT_MS against a
    dead holder), so the window is known to the interval: one at a time, a
    power-off's windows came in steps of the timeout, 2.70 / 3.01 / 3.31 /
    3.61 s, for both pairs (docs/bench/token1000). The clock first: its SSH login
    costs the survivor most of a second of emulated CPU, which must be over
    before the fault, not in the failover it measures."""
    if survivor is not None:
        try:
            record["clockBefore"] = clock_offset(lab, survivor)
        except (RuntimeError, subprocess.SubprocessError, OSError) as error:
            # The run is still measured; only its phases are lost.
            record["phasesError"] = f"the survivor's clock before the fault: {error}"
    probe = lab.start_probe(PROBE_LIMIT_S, stop_after_recovery=True, min_after_fault_s=WATCH_AFTER_FAULT_S, overlap=True)
    time.sleep(LEAD_IN_S)
    return probe


def measure_clock_after(lab: LabStack, record: dict, node: str) -> None:
    """The node's clock again, once the probe has ended: how far the offset
    moved since the fault widens the phases' uncertainty."""
    try:
        record["clockAfter"] = clock_offset(lab, node)
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        record["clockError"] = str(error)


def read_phases(
    lab: LabStack, record: dict, kind: str, node: str | None = None, identifiers: tuple[str, ...] = phases.IDENTIFIERS
) -> None:
    """The phases of a kind (a key of phases.PATTERNS) from a node's journal
    (the survivor's unless told), on the host's clock, from the fault."""
    if "clockBefore" not in record:
        return
    node = node or record["survivor"]
    before, fault_at = record["clockBefore"], record["probe"]["faultAt"]
    if "clockAfter" not in record and "clockError" not in record:
        measure_clock_after(lab, record, node)
    after = record.get("clockAfter")
    uncertainty = combined_uncertainty(before, after)
    record["clock"] = {
        "node": node,
        "before": before.as_json(),
        "after": after.as_json() if after else None,
        "uncertaintyS": round(uncertainty, 4),
        "error": record.get("clockError"),
    }
    guest_fault = fault_at + before.offset_s
    try:
        journal = phases.fetch_journal(
            lab, node, guest_fault - phases.BEFORE_FAULT_S, guest_fault + PROBE_LIMIT_S, identifiers
        )
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        # The measurement stands without its phases; the row says why.
        record["phasesError"] = str(error)
        return
    if record.get("keepJournalAs"):
        record["keepJournalAs"].write_text(journal)
    window = record["probe"].get("unavailableS")
    until = None if window is None else guest_fault + window + phases.PHASES_AFTER_RECOVERY_S
    found = phases.find_phases(phases.parse_journal_json(journal), kind, guest_fault, until)
    found["firstAnsweredS"] = record["probe"].get("firstAnsweredAfterOutageS")
    record["phases"] = found
    record["phasesUncertaintyS"] = round(uncertainty, 4)


def power_off(lab: LabStack, pair: Pair, record: dict) -> None:
    settle(lab, record)
    (holder,) = lab.vip_holders()
    (survivor,) = [n for n in lab.nodes if n != holder]
    record.update(faultNode=holder, survivor=survivor)
    pid = lab.vm_pid(holder)
    with armed_probe(lab, record, survivor) as probe:
        probe.fault()
        os.kill(pid, signal.SIGKILL)
        record["probe"] = probe.finish(PROBE_WAIT_S)
    try:
        read_phases(lab, record, pair.kind)
    finally:
        restart_vm(lab, holder)
    if not wait_for(lambda: pair.whole(lab), 600, interval_s=5):
        raise RuntimeError(f"{holder} did not rejoin within 600 s")
    check_the_fault_hit_the_holder(lab, record, "power-off")


def check_the_fault_hit_the_holder(lab: LabStack, record: dict, scenario: str) -> None:
    """Fail the run (its figures kept) when the node the fault hit no longer relayed the VIP's answers just before
    the fault: the VIP had moved in the seconds between choosing the node and the fault (a keepalived pair whose
    check timed out on a slow machine did), and the run measures nothing of the fault. `faultMissedHolder` (the
    address that did relay) keeps the run out of the medians."""
    via = (record.get("probe") or {}).get("viaBeforeFault")
    node = record["faultNode"]
    address = {n["name"]: n["clusterAddress"] for n in lab.config["hapx:nodes"]}.get(node)
    if via is not None and via != address:
        record["faultMissedHolder"] = via
        raise RuntimeError(
            f"the VIP had left {node} ({address}) before the fault: the last answer before it came via {via}; "
            f"this run measures no {scenario}"
        )


def kill_haproxy(lab: LabStack, pair: Pair, record: dict) -> None:
    settle(lab, record)
    (holder,) = lab.vip_holders()
    record.update(faultNode=holder)
    # The holder's clock, so the window can start at the kill on the holder rather than at the mark (the SSH line
    # reaches the holder's shell 0.03-0.4 s after it, later on the busier node). Measured before the probe, as the
    # kill's login: most of a second of the holder's emulated CPU each. In the lead-in, on a holder the probe loads,
    # that login came with a keepalived pair's check timing out and its VIP leaving before the kill (3 of 3 runs,
    # docs/benchmarks.md).
    before = clock_offset(lab, holder)
    with lab.primed_haproxy_kill(holder) as fire, armed_probe(lab, record) as probe:
        killed_at = fire(probe.fault)
        record["probe"] = probe.finish(PROBE_WAIT_S)
    after = clock_offset(lab, holder)
    record.update(kill_window_start(record["probe"], killed_at, before, after))
    # The restart's phases from the holder's journal, from the mark like the
    # window's figures (killLandedS is the kill among them).
    record.update(clockBefore=before, clockAfter=after)
    read_phases(lab, record, "haproxy-restart", holder, phases.RESTART_IDENTIFIERS)
    if record.get("phases") is not None:
        record["phases"]["killLandedS"] = record["killLandedS"]
    # Back to a whole pair for the next run: Pacemaker forgets the failure,
    # keepalived's pair needs haproxy started again if systemd did not.
    if pair is PACEMAKER:
        lab.ssh(holder, "sudo crm resource cleanup hapx-haproxy >/dev/null 2>&1")
    else:
        serving = haproxy_serving_check(lab.config["hapx:haproxy"]["statsPort"])
        lab.ssh(holder, f"{serving} || sudo systemctl start haproxy")
    if not wait_for(lambda: pair.whole(lab), 300, interval_s=5):
        raise RuntimeError("haproxy did not come back")
    check_the_fault_hit_the_holder(lab, record, "kill-haproxy")


def kill_window_start(report: dict, killed_at_guest: float, before: ClockOffset, after: ClockOffset | None) -> dict:
    """Where a kill-haproxy window starts, from the probe's report (times relative to the mark) and the kill's
    instant on the node's clock: `killLandedS` (the kill, host clock, from the mark), `windowStartS` (the earliest
    instant the kill can have been, given the clocks' uncertainty, never before the mark) and `windowStartNote`.
    The window stays at the mark (windowStartS 0) when a request failed after the mark and before that start (not
    the kill's doing), or when the first failure came too soon after the mark for that start (the clocks disagree
    with the probe): never a window shorter than the probe saw from the kill."""
    uncertainty = combined_uncertainty(before, after)
    landed = before.to_host(killed_at_guest) - report["faultAt"]
    start = max(0.0, landed - uncertainty)
    figures = {"killLandedS": round(landed, 3), "killLandedUncertaintyS": round(uncertainty, 4)}
    failed_before_start = [seg for seg in report.get("timeline") or () if not seg[2] and 0 <= seg[1] < start]
    first_failure, recovered = report.get("firstFailureAfterFaultS"), report.get("unavailableS")
    if failed_before_start:
        return {**figures, "windowStartS": 0.0, "windowStartNote": "a request failed after the mark, before the kill"}
    if (first_failure is not None and start > first_failure + PROBE_TIMEOUT_MS / 1000) or (
        recovered is not None and start > recovered
    ):
        return {**figures, "windowStartS": 0.0, "windowStartNote": "the kill's time is after the first failure ended"}
    return {**figures, "windowStartS": round(start, 3), "windowStartNote": None}


def link_cut(lab: LabStack, pair: Pair, record: dict) -> None:
    """Cut the VIP holder's cluster link for CUT_S, then restore it. Both nodes
    stay up; what matters is who holds the VIP meanwhile and after."""
    settle(lab, record)
    (holder,) = lab.vip_holders()
    (survivor,) = [n for n in lab.nodes if n != holder]
    record.update(faultNode=holder, survivor=survivor)
    boot_before = lab.boot_id(holder)
    # Every 0.5 s, each node reporting over one open SSH session (a login
    # per sample, as before, took a third of the survivor's emulated CPU).
    with HolderWatch(lab, interval_s=0.5) as watch, armed_probe(lab, record, survivor) as probe:
        cut_at = probe.fault()
        lab.set_link(holder, up=False)
        try:
            record["probe"] = probe.finish(PROBE_WAIT_S)
            measure_clock_after(lab, record, survivor)
            time.sleep(max(0.0, cut_at + CUT_S - time.time()))
        finally:
            lab.set_link(holder, up=True)
        # Two holders that could not see each other meet again now.
        time.sleep(AFTER_RESTORE_S)
    record["maxVipHolders"] = watch.max_holders
    record["dualHolderS"] = watch.dual_seconds()
    # The survivor's journal is read once the pair is whole, so reading it
    # takes nothing from the failover.
    if not wait_for(lambda: pair.whole(lab), 600, interval_s=5):
        raise RuntimeError(f"{holder} did not rejoin within 600 s after the link came back")
    record["cutNodeRebooted"] = lab.boot_id(holder) != boot_before
    read_phases(lab, record, pair.kind)
    check_the_fault_hit_the_holder(lab, record, "link-cut")


def idle_soak(lab: LabStack, pair: Pair, record: dict, duration_s: float) -> None:
    """Nothing happens for duration_s: the VIP must not move, nothing may fail."""
    fenced = "sudo stonith_admin --history='*' 2>/dev/null | grep -c . || true"
    fenced_before = lab.ssh(lab.nodes[0], fenced).stdout.strip()
    # Under TCG a full translation cache is dropped and the guest stalls for
    # a moment (docs/troubleshooting.md): counted, so a lone timeout can be
    # set against it.
    flushes_before = {node: lab.translation_cache_flushes(node) for node in lab.nodes}
    with HolderWatch(lab, interval_s=10) as watch:
        with lab.start_probe(duration_s, stop_after_recovery=False, interval_ms=SOAK_PROBE_INTERVAL_MS) as probe:
            record["probe"] = probe.finish(timeout_s=duration_s + 120)
    record["translationCacheFlushes"] = {
        node: [flushes_before[node], lab.translation_cache_flushes(node)] for node in lab.nodes
    }
    holders = [h for _, h in watch.samples]
    record["vipMoves"] = sum(1 for a, b in zip(holders, holders[1:]) if a != b)
    record["maxVipHolders"] = watch.max_holders
    record["holderSamples"] = len(holders)
    if pair is PACEMAKER:
        fenced_after = lab.ssh(lab.nodes[0], fenced).stdout.strip()
        record["fencingHistoryLines"] = [fenced_before, fenced_after]
        record["failCounts"] = lab.ssh(lab.nodes[0], "sudo crm_mon -1 --failcounts 2>/dev/null | sed -n '/Migration Summary/,$p'").stdout.strip()


def backend_change(lab: LabStack, pair: Pair, record: dict) -> None:
    """Replace the third backend (kube-mast03 <-> kube-mast04) through
    `pulumi up` while a client keeps using the VIP: haproxy reloads on both
    nodes, the lab's stand-ins follow."""
    config = copy.deepcopy(lab.config)
    backends = config["hapx:backends"]
    third = backends[2]
    if third["name"] == "kube-mast03":
        backends[2] = {"name": "kube-mast04", "address": "192.168.4.14", "port": third["port"]}
    else:
        backends[2] = {"name": "kube-mast03", "address": "192.168.4.13", "port": third["port"]}
    lab.set_config(config)
    with lab.start_probe(PROBE_LIMIT_S, stop_after_recovery=False) as probe:
        time.sleep(LEAD_IN_S)
        # The "fault" is the whole `up`: what fails from its start on counts.
        probe.fault()
        lab.up()
        time.sleep(2)  # the reloads' old workers finish
        record["probe"] = probe.stop()
    record["backendNow"] = backends[2]["name"]


def rolling_replace(lab: LabStack, pair: Pair, record: dict) -> None:
    """Replace every VM while a client keeps using the VIP (every request
    from the start of the replacement counts)."""
    settle(lab, record)
    before = {node: lab.vm_pid(node) for node in lab.nodes}
    # No SSH into the nodes meanwhile (a login costs a TCG guest a moment):
    # the probe's answers say which node relays them, so when the VIP moved.
    with lab.start_probe(ROLL_LIMIT_S, stop_after_recovery=False) as probe:
        time.sleep(LEAD_IN_S)
        fault_at = probe.fault()
        started = time.monotonic()
        if pair is PACEMAKER:
            config = copy.deepcopy(lab.config)
            size = config.setdefault("hapx:nodeSize", {})
            memory = size.get("memoryMb", 512)
            size["memoryMb"] = memory + ROLL_MEMORY_STEP_MB if memory % 128 == 0 else memory - ROLL_MEMORY_STEP_MB
            lab.set_config(config)
            record["memoryMb"] = size["memoryMb"]
            up = lab.pulumi("up", "--yes", "--skip-preview", "--json")
            windows = step_windows(up.stdout, since=fault_at)
            record["stepsS"] = {
                node: {step: [round(t, 1) for t in windows[f"hapx-{node}-{step}"]] for step in ("drain", "vm", "rejoin")}
                for node in lab.nodes
            }
        else:
            for node in lab.nodes:
                os.kill(lab.vm_pid(node), signal.SIGKILL)
                restart_vm(lab, node)
                if not wait_for(lambda: pair.whole(lab), 600, interval_s=5):
                    raise RuntimeError(f"{node} did not come back within 600 s")
        record["replaceS"] = round(time.monotonic() - started, 1)
        time.sleep(2)
        record["probe"] = probe.stop()
    keep_failure_journals(lab, record, lab.nodes)
    record["replacedNodes"] = [node for node in lab.nodes if lab.vm_pid(node) != before[node]]
    record["vipMoves"] = len(record["probe"]["viaChanges"])
    record["viaChanges"] = record["probe"]["viaChanges"]
    if not wait_for(lambda: pair.whole(lab), 600, interval_s=5):
        raise RuntimeError("the pair is not whole after the replacement")


def keep_failure_journals(lab: LabStack, record: dict, nodes: list[str]) -> None:
    """With --keep-journals and requests failed after the mark of a long
    scenario: each node's whole journal (but haproxy's request lines) from
    FAILURE_JOURNAL_BEFORE_S before the first of them to
    FAILURE_JOURNAL_AFTER_S after the last, one file per node beside the
    run's, so the cause can be read after the lab is gone."""
    target, probe = record.get("keepJournalAs"), record.get("probe") or {}
    # An outage from the mark on (first failure to the recovering request)
    # and every later blip.
    outage = probe.get("firstFailureAfterFaultS"), probe.get("unavailableS") or probe.get("unavailableAtLeastS")
    failed_at = [t for t in outage if t is not None] + (probe.get("failuresAfterRecoveryAtS") or [])
    if target is None or not failed_at or probe.get("faultAt") is None:
        return
    since = probe["faultAt"] + min(failed_at) - FAILURE_JOURNAL_BEFORE_S
    until = probe["faultAt"] + max(failed_at) + FAILURE_JOURNAL_AFTER_S
    command = (
        f"sudo journalctl --no-pager -o short-precise --since=@{since:.3f} --until=@{until:.3f}"
        f" | grep -v ' haproxy\\[' | head -n {phases.MAX_LINES}"
    )
    kept = {}
    for node in nodes:
        out = lab.ssh(node, command, timeout=120)
        path = target.with_name(f"{target.stem}-{node}.log")
        path.write_text(out.stdout if out.returncode == 0 else f"journalctl failed ({out.returncode}): {out.stderr}")
        kept[node] = path.name
    record["failureJournals"] = kept


def scale(lab: LabStack, pair: Pair, record: dict) -> None:
    """Add a third node to the running pair through `pulumi up`, then remove
    it, while a client keeps using the VIP (every request from the start of
    the first up counts)."""
    settle(lab, record)
    pair_config = copy.deepcopy(lab.config)
    trio_config = copy.deepcopy(pair_config)
    trio_config["hapx:nodes"] = [*pair_config["hapx:nodes"], THIRD_NODE]
    pair_nodes = lab.nodes
    flushes_before = {node: lab.translation_cache_flushes(node) for node in pair_nodes}
    try:
        with lab.start_probe(ROLL_LIMIT_S, stop_after_recovery=False) as probe:
            time.sleep(LEAD_IN_S)
            fault_at = probe.fault()
            started = time.monotonic()
            lab.set_config(trio_config)
            up = lab.pulumi("up", "--yes", "--skip-preview", "--json")
            record["scaleUpS"] = round(time.monotonic() - started, 1)
            record["nodesAfterScaleUp"] = sorted(lab.corosync_members(lab.nodes[0]))
            removing = time.monotonic()
            record["scaleDownAtS"] = round(removing - started, 1)
            lab.set_config(pair_config)
            down = lab.pulumi("up", "--yes", "--skip-preview", "--json")
            record["scaleDownS"] = round(time.monotonic() - removing, 1)
            time.sleep(2)
            record["probe"] = probe.stop()
    finally:
        # A failed up leaves the stack wherever it stopped: the next up (the next run) goes back to the pair.
        lab.set_config(pair_config)
    # When each step of both ups ran (s from the mark), to set failed requests against.
    record["stepsS"] = {
        direction: {name: [round(t, 1) for t in window] for name, window in sorted(step_windows(out.stdout, since=fault_at).items())}
        for direction, out in (("up", up), ("down", down))
    }  # fmt: skip
    record["translationCacheFlushes"] = {
        node: [flushes_before[node], lab.translation_cache_flushes(node)] for node in pair_nodes
    }
    keep_failure_journals(lab, record, pair_nodes)
    record["vipMoves"] = len(record["probe"]["viaChanges"])
    record["viaChanges"] = record["probe"]["viaChanges"]
    if not wait_for(lambda: pair.whole(lab), 600, interval_s=5):
        raise RuntimeError("the pair is not whole after the scale")


RUNNERS = {
    "power-off": power_off,
    "kill-haproxy": kill_haproxy,
    "link-cut": link_cut,
    "backend-change": backend_change,
    "idle-soak": idle_soak,
    "rolling-replace": rolling_replace,
    "scale": scale,
}


def print_run(profile: str, scenario: str, row: dict) -> None:
    keys = ("firstFailureAfterFaultS", "failuresBeforeFault", "failuresAfterRecovery", "vipMovedS", "unavailableAtLeastS")
    extras = {k: row[k] for k in keys if row.get(k) is not None} | row["scenario"]
    if row["phases"]:
        extras["phases"] = {k: v for k, v in row["phases"].items() if v is not None}
    status = "FAILED: " + row["error"] if row["error"] else "ok"
    print(f"[bench] {profile} {scenario} run {row['run']} {status}: unavailable {row['unavailableS']} s, "
          f"{results.failed_requests(row)} failed of {row['probes']} {extras}", flush=True)  # fmt: skip


def bench_profile(
    name: str, section: dict, runs: int, scenarios: list[str], root: Path, soak_s: float, soak_profiles: list[str],
    save: Callable[[], None], journal_dir: Path | None = None,
) -> None:  # fmt: skip
    """Bring up the profile's lab, run its scenarios into `section`
    (save() after each run), tear it down."""
    workspace = PulumiWorkspace(root / name / "pulumi")
    stack = f"bench{name[:3]}" if name in PROFILES else f"bench-{name.removeprefix('hapx-')}"
    lab = LabStack.create(workspace, stack, root / name / "lab", port_start=24400)
    lab.set_config(merge_overrides(lab.config, section["overrides"]))
    pair = PACEMAKER
    try:
        started = time.monotonic()
        lab.up()
        section["labUpS"] = round(time.monotonic() - started, 1)
        print(f"[bench] {name}: lab up in {section['labUpS']:.0f} s", flush=True)
        section["qemuAccel"] = lab_accel(lab)
        wait_for(lambda: pacemaker_whole(lab), 300, interval_s=5)
        if variant_base(name) == "keepalived":
            convert_to_keepalived(lab)
            pair = KEEPALIVED
            if not wait_for(lambda: pair_whole(lab), 120, interval_s=2):
                raise RuntimeError("the keepalived pair did not settle")
        for scenario in scenarios:
            # The soak is one long run; the others repeat.
            if scenario == "idle-soak" and name not in soak_profiles:
                continue
            not_run = NOT_RUN.get(variant_base(name), {})
            if scenario in not_run:
                section.setdefault("skipped", {})[scenario] = not_run[scenario]
                print(f"[bench] {name} {scenario}: not run: {not_run[scenario]}", flush=True)
                save()
                continue
            rows = section["scenarios"].setdefault(scenario, [])
            for run in range(1, (1 if scenario == "idle-soak" else runs) + 1):
                print(f"[bench] {name} {scenario} run {run} ...", flush=True)
                record: dict = {}
                if journal_dir is not None:
                    record["keepJournalAs"] = journal_dir / f"{name}-{scenario}-{run}.json"
                error = None
                try:
                    if scenario == "idle-soak":
                        idle_soak(lab, pair, record, soak_s)
                    else:
                        RUNNERS[scenario](lab, pair, record)
                except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
                    error = f"{type(exc).__name__}: {exc}"
                rows.append(results.run_row(run, record, error))
                print_run(name, scenario, rows[-1])
                save()
                if error and not wait_for(lambda: pair.whole(lab), 600, interval_s=10):
                    raise RuntimeError(f"{name}: the lab did not recover after a failed run")
    finally:
        lab.teardown()


def lab_accel(lab: LabStack) -> str | None:
    """The accelerator the lab's QEMU processes run with."""
    accels = set()
    for node in lab.nodes:
        try:
            accels.add(results.qemu_accel(Path(f"/proc/{lab.vm_pid(node)}/cmdline").read_bytes()))
        except (OSError, ValueError):
            continue
    return ",".join(sorted(a for a in accels if a)) or None


def parse_variant(spec: str) -> tuple[str, dict]:
    """`NAME=JSON` (--variant): the profile name, `hapx-NAME` (or NAME itself when it is `keepalived-...`, a
    variant of the keepalived pair), and its hapx:* overrides."""
    name, sep, overrides = spec.partition("=")
    if not sep or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,15}", name.removeprefix("keepalived-")):
        raise ValueError(f"--variant {spec!r}: give NAME=JSON, NAME lowercase letters, digits and dashes (at most 16)")
    try:
        value = json.loads(overrides)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--variant {name}: the overrides are not JSON ({exc})") from None
    if not isinstance(value, dict) or not value or not all(k.startswith("hapx:") for k in value):
        raise ValueError(f"--variant {name}: the overrides must be a JSON object of hapx:* config keys")
    return (name if name.startswith("keepalived-") else f"hapx-{name}"), value


def variant_base(profile: str) -> str:
    """The named profile a profile is, or is a variant of."""
    return "keepalived" if profile.startswith("keepalived") else "hapx" if profile.startswith("hapx") else profile


def merge_overrides(config: dict, overrides: dict) -> dict:
    """`config` with `overrides` on top, a copy: a key whose value is an object is merged field by field (so one
    field of hapx:corosync can be set), any other value replaces."""
    merged = copy.deepcopy(config)
    for key, value in overrides.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return merged


def profile_overrides(profile: str, hapx_overrides: dict, variants: dict[str, dict]) -> dict:
    """A profile's config overrides: the bench's VM shape (BENCH_VMS) under the named profile's, `hapx`'s plus
    --hapx-overrides, or a variant's on top of its base's (`hapx`'s, or `keepalived`'s)."""
    if profile not in variants:
        named = merge_overrides(BENCH_VMS, PROFILES[profile])
        return merge_overrides(named, hapx_overrides if profile == "hapx" else {})
    return merge_overrides(profile_overrides(variant_base(profile), hapx_overrides, {}), variants[profile])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profiles", default="reference,hapx,keepalived")
    parser.add_argument("--hapx-overrides", default="{}", help='JSON config for the hapx profile, e.g. \'{"hapx:corosync": {"tokenMs": 1000}}\'')
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                        help='a profile hapx-NAME: hapx with these hapx:* overrides, run after hapx, e.g. '
                             '\'token600={"hapx:corosync": {"tokenMs": 600}}\'; a NAME keepalived-... is a variant '
                             'of the keepalived pair, run after it (repeatable)')  # fmt: skip
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--soak-s", type=float, default=600, help="length of the idle-soak scenario (bounded to 3600)")
    parser.add_argument("--soak-profiles", default="hapx", help="profiles that run the idle soak (it is long)")
    parser.add_argument("--out", default=str(REPO / ".bench" / "failover.json"), help="where the raw results go (JSON)")
    parser.add_argument("--keep-journals", type=Path, default=None, metavar="DIR",
                        help="also write into DIR the survivor's journal lines each run's phases came from, and, for "
                             "rolling-replace and scale, each node's journal around failed requests")  # fmt: skip
    args = parser.parse_args(argv)
    profiles = [p for p in args.profiles.split(",") if p]
    scenarios = [s for s in args.scenarios.split(",") if s]
    try:
        variants = dict(parse_variant(spec) for spec in args.variant)
    except ValueError as exc:
        parser.error(str(exc))
    # Each variant right after its base (or last, without it): the same lab image, the same hour.
    for base in ("hapx", "keepalived"):
        at = profiles.index(base) + 1 if base in profiles else len(profiles)
        profiles[at:at] = [v for v in variants if variant_base(v) == base]
    unknown = [p for p in profiles if p not in PROFILES and p not in variants] + [s for s in scenarios if s not in RUNNERS]
    if unknown:
        parser.error(f"unknown profile or scenario: {', '.join(unknown)}")
    if not 0 < args.soak_s <= 3600:
        parser.error("--soak-s must be between 0 and 3600")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    overrides = json.loads(args.hapx_overrides)
    command = ["python", "-m", "bench.failover"] + (sys.argv[1:] if argv is None else argv)
    settings = {
        "runs": args.runs, "profiles": profiles, "scenarios": scenarios, "soakS": args.soak_s,
        "soakProfiles": args.soak_profiles.split(","), "hapxOverrides": overrides, "variants": variants,
        "probeIntervalMs": PROBE_INTERVAL_MS, "probeTimeoutMs": PROBE_TIMEOUT_MS, "confirmS": 1.0,
        "probeOverlapScenarios": list(results.WINDOWED),
        "soakProbeIntervalMs": SOAK_PROBE_INTERVAL_MS, "probeLimitS": PROBE_LIMIT_S, "leadInS": LEAD_IN_S,
        "watchAfterFaultS": WATCH_AFTER_FAULT_S, "linkCutS": CUT_S,
    }  # fmt: skip
    image_dir = os.environ.get("HAPX_IMAGE_DIR") or stack_config("lab")["hapx:qemu"].get("imageDir") or QEMU_IMAGE_DIR
    document = results.new_document(command, settings, REPO, time.time(), image_dir)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.keep_journals:
        args.keep_journals.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        # After every run: a later failure loses nothing.
        out.write_text(json.dumps(document, indent=1) + "\n")

    with tempfile.TemporaryDirectory(prefix="hapx-bench-") as tmp:
        for profile in profiles:
            section = results.new_profile(profile_overrides(profile, overrides, variants))
            document["profiles"][profile] = section
            try:
                bench_profile(profile, section, args.runs, scenarios, Path(tmp), args.soak_s, settings["soakProfiles"], save,
                              args.keep_journals)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - the next profile still runs; the error is in the results
                section["error"] = f"{type(exc).__name__}: {exc}"
                print(f"[bench] {profile}: FAILED: {section['error']}", flush=True)
            save()
    results.finish_document(document, time.time())
    save()
    print()
    print(results.summarize(document, SCENARIOS, phases.PHASE_LABELS))
    print(f"\n[bench] raw results: {out}; command: {shlex.join(command)}")
    print(f"[bench] pictures: python -m bench.plot {out} --out {out.parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
