"""Failover benchmark on the QEMU lab: how long clients go without service.

    .venv/bin/python -m bench.failover [--runs 3] [--profiles reference,hapx,keepalived]
        [--scenarios power-off,kill-haproxy,link-cut,backend-change,idle-soak]
        [--soak-s 600] [--hapx-overrides JSON] [--out .bench/failover.json]

Profiles: `reference` is hapx with the reference design's settings (token
3 s, monitors every 20 s, haproxy started on the survivor at failover and
restarted by Pacemaker after a crash, no fencing);
`hapx` is hapx's shipped defaults (plus --hapx-overrides, to try values);
`keepalived` is the same pair, same image and haproxy.cfg, switched to
keepalived (VRRP, unicast, advert_int 1 s, haproxy on both nodes, a
tracked haproxy check), the alternative operators would pick.

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
                 the VIP must not move and no request may fail.

The probe (harness/probe.py) is armed before each fault and told the
instant it happens. It prints, per profile and scenario, the unavailability
window (from the fault to the first good reply after which 1 s of replies
were all good) and the failed probes after the fault, each run and the
median, then destroys the stack; failures before the fault are reported
apart, never as the window. Figures depend on the machine: under TCG on 2
cores, process start-up inside the guests dominates.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.keepalived import convert_to_keepalived, pair_whole
from harness.lab import LabStack, haproxy_serving_check
from harness.paths import REPO
from harness.wait import wait_for
from harness.watch import HolderWatch
from harness.workspace import PulumiWorkspace

# Settings profiles: hapx:* config overrides on top of Pulumi.lab.yaml.
PROFILES = {
    "reference": {
        "hapx:corosync": {"tokenMs": 3000},
        "hapx:pacemaker": {"monitorIntervalS": 20, "haproxyOnAllNodes": False, "haproxyRestart": "pacemaker"},
        "hapx:fencing": {"enabled": False},
    },
    "hapx": {},
    # Pacemaker is stopped on the keepalived pair; without fencing the crm
    # script does not follow the backends, so `pulumi up` leaves it alone.
    "keepalived": {"hapx:fencing": {"enabled": False}},
}
SCENARIOS = ("power-off", "kill-haproxy", "link-cut", "backend-change", "idle-soak")
# Scenarios whose figure is the window after a fault; the others count failed requests.
WINDOWED = ("power-off", "kill-haproxy", "link-cut")
PROBE_LIMIT_S = 120  # no scenario but the soak may keep a client loop running longer
PROBE_WAIT_S = PROBE_LIMIT_S + 60  # and how long the bench waits for its report
CUT_S = 20  # how long link-cut keeps the link down
AFTER_RESTORE_S = 10  # and how long it keeps watching VIP holders after
SOAK_PROBE_INTERVAL_MS = 100


def pacemaker_whole(lab: LabStack) -> bool:
    for node in lab.nodes:
        status = lab.ssh(node, "sudo crm_mon -1 2>/dev/null", timeout=30).stdout
        if f"Online: [ {' '.join(lab.nodes)} ]" not in status or "Stopped" in status or "FAILED" in status:
            return False
    return len(lab.vip_holders()) == 1


def restart_vm(lab: LabStack, node: str) -> None:
    """Start a powered-off node again with the driver's own (idempotent) create script."""
    export = lab.workspace.export(lab.stack)
    (vm,) = [r for r in export["deployment"]["resources"] if r["urn"].endswith(f"::hapx-{node}-vm")]
    subprocess.run(["/bin/sh", "-c", vm["inputs"]["create"]], cwd=REPO, check=True, capture_output=True, timeout=120)


def power_off(lab: LabStack, whole) -> dict:
    (holder,) = lab.vip_holders()
    pid = lab.vm_pid(holder)
    with lab.start_probe(PROBE_LIMIT_S, stop_after_recovery=True) as probe:
        probe.fault()
        os.kill(pid, signal.SIGKILL)
        result = probe.finish(PROBE_WAIT_S)
    restart_vm(lab, holder)
    if not wait_for(lambda: whole(lab), 600, interval_s=5):
        raise RuntimeError(f"{holder} did not rejoin within 600 s")
    return result


def kill_haproxy(lab: LabStack, whole) -> dict:
    (holder,) = lab.vip_holders()
    with lab.start_probe(PROBE_LIMIT_S, stop_after_recovery=True) as probe:
        lab.kill_haproxy(holder, mark=probe.fault)
        result = probe.finish(PROBE_WAIT_S)
    # Back to a whole pair for the next run: Pacemaker forgets the failure,
    # keepalived's pair needs haproxy started again if systemd did not.
    if whole is pacemaker_whole:
        lab.ssh(holder, "sudo crm resource cleanup hapx-haproxy >/dev/null 2>&1")
    else:
        serving = haproxy_serving_check(lab.config["hapx:haproxy"]["statsPort"])
        lab.ssh(holder, f"{serving} || sudo systemctl start haproxy")
    if not wait_for(lambda: whole(lab), 300, interval_s=5):
        raise RuntimeError("haproxy did not come back")
    return result


def link_cut(lab: LabStack, whole) -> dict:
    """Cut the VIP holder's cluster link for CUT_S, then restore it. Both nodes
    stay up; what matters is who holds the VIP meanwhile and after."""
    (holder,) = lab.vip_holders()
    boot_before = lab.boot_id(holder)
    # Every 2 s: each sample is an SSH login on both guests, which costs
    # them CPU under TCG; a split brain lasts the whole cut, so 2 s sees it.
    with HolderWatch(lab, interval_s=2) as watch, lab.start_probe(PROBE_LIMIT_S, stop_after_recovery=True) as probe:
        cut_at = probe.fault()
        lab.set_link(holder, up=False)
        try:
            result = probe.finish(PROBE_WAIT_S)
            time.sleep(max(0.0, cut_at + CUT_S - time.time()))
        finally:
            lab.set_link(holder, up=True)
        # Two holders that could not see each other meet again now.
        time.sleep(AFTER_RESTORE_S)
    result["maxVipHolders"] = watch.max_holders
    result["dualHolderS"] = watch.dual_seconds()
    if not wait_for(lambda: whole(lab), 600, interval_s=5):
        raise RuntimeError(f"{holder} did not rejoin within 600 s after the link came back")
    result["cutNodeRebooted"] = lab.boot_id(holder) != boot_before
    return result


def idle_soak(lab: LabStack, whole, duration_s: float) -> dict:
    """Nothing happens for duration_s: the VIP must not move, nothing may fail."""
    fenced_before = lab.ssh(lab.nodes[0], "sudo stonith_admin --history='*' 2>/dev/null | grep -c . || true").stdout.strip()
    with HolderWatch(lab, interval_s=10) as watch:
        with lab.start_probe(duration_s, stop_after_recovery=False, interval_ms=SOAK_PROBE_INTERVAL_MS) as probe:
            result = probe.finish(timeout_s=duration_s + 120)
    holders = [h for _, h in watch.samples]
    result["vipMoves"] = sum(1 for a, b in zip(holders, holders[1:]) if a != b)
    result["maxVipHolders"] = watch.max_holders
    result["holderSamples"] = len(holders)
    if whole is pacemaker_whole:
        fenced_after = lab.ssh(lab.nodes[0], "sudo stonith_admin --history='*' 2>/dev/null | grep -c . || true").stdout.strip()
        result["fencingHistoryLines"] = [fenced_before, fenced_after]
        result["failCounts"] = lab.ssh(lab.nodes[0], "sudo crm_mon -1 --failcounts 2>/dev/null | sed -n '/Migration Summary/,$p'").stdout.strip()
    return result


def backend_change(lab: LabStack, whole) -> dict:
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
        # The "fault" is the whole `up`: what fails from its start on counts.
        probe.fault()
        lab.up()
        time.sleep(2)  # the reloads' old workers finish
        result = probe.stop()
    result["backendNow"] = backends[2]["name"]
    return result


RUNNERS = {
    "power-off": power_off,
    "kill-haproxy": kill_haproxy,
    "link-cut": link_cut,
    "backend-change": backend_change,
    "idle-soak": idle_soak,
}


def bench_profile(
    name: str, runs: int, scenarios: list[str], root: Path, overrides: dict, soak_s: float, soak_profiles: list[str]
) -> dict:
    workspace = PulumiWorkspace(root / name / "pulumi")
    lab = LabStack.create(workspace, f"bench{name[:3]}", root / name / "lab", port_start=24400)
    config = copy.deepcopy(lab.config)
    for key, value in {**PROFILES[name], **(overrides if name == "hapx" else {})}.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    lab.set_config(config)
    whole = pacemaker_whole
    results: dict[str, list[dict]] = {}
    try:
        started = time.monotonic()
        lab.up()
        print(f"[bench] {name}: lab up in {time.monotonic() - started:.0f} s", flush=True)
        wait_for(lambda: pacemaker_whole(lab), 300, interval_s=5)
        if name == "keepalived":
            convert_to_keepalived(lab)
            whole = pair_whole
            if not wait_for(lambda: pair_whole(lab), 120, interval_s=2):
                raise RuntimeError("the keepalived pair did not settle")
        for scenario in scenarios:
            # The soak is one long run; the others repeat.
            if scenario == "idle-soak" and name not in soak_profiles:
                continue
            for run in range(1, (1 if scenario == "idle-soak" else runs) + 1):
                print(f"[bench] {name} {scenario} run {run} ...", flush=True)
                try:
                    if scenario == "idle-soak":
                        result = idle_soak(lab, whole, soak_s)
                    else:
                        result = RUNNERS[scenario](lab, whole)
                except Exception as error:  # noqa: BLE001 - one failed run must not lose the others
                    # Recorded, not hidden: the table shows the error count.
                    print(f"[bench] {name} {scenario} run {run} FAILED: {error}", flush=True)
                    results.setdefault(scenario, []).append({"error": str(error)})
                    if not wait_for(lambda: whole(lab), 600, interval_s=10):
                        raise RuntimeError(f"{name}: the lab did not recover after a failed run") from error
                    continue
                results.setdefault(scenario, []).append(result)
                keys = ("vipMovedS", "failuresBeforeFault", "unavailableAtLeastS", "failuresAfterRecovery",
                        "maxVipHolders", "dualHolderS", "cutNodeRebooted", "vipMoves")  # fmt: skip
                extras = {k: result[k] for k in keys if result.get(k) is not None}
                print(f"[bench] {name} {scenario} run {run}: unavailable {result.get('unavailableS')} s, "
                      f"{failed_requests(result)} failed of {result.get('probes')} {extras}", flush=True)  # fmt: skip
    finally:
        lab.teardown()
    return results


def failed_requests(result: dict) -> int | None:
    """Failed requests a run counts: after the fault, or all of them when
    there was no fault (the soak)."""
    return result.get("failuresAfterFault") if result.get("faultMarked") else result.get("failures")


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def summarize(all_results: dict) -> str:
    """One row per scenario and profile: medians, and the worst case where it matters."""
    lines = [
        "| scenario | profile | runs | unavailable s (median) | failed probes after the fault (median) | other node serves after s (median) | most VIP holders at once | s with two holders (max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    scenarios = sorted({s for r in all_results.values() for s in r}, key=SCENARIOS.index)
    for scenario in scenarios:
        for profile, results in all_results.items():
            rows = [r for r in results.get(scenario, []) if "error" not in r]
            errors = len(results.get(scenario, [])) - len(rows)
            if errors:
                lines.append(f"| {scenario} | {profile} | {errors} failed run(s) | | | | | |")
            if not rows:
                continue
            unrecovered = sum(1 for r in rows if r.get("faultMarked") and not r.get("recoveryConfirmed"))
            if scenario in WINDOWED:
                window = median([r.get("unavailableS") for r in rows])
                if unrecovered:
                    window = f"{window} ({unrecovered} run(s) not recovered)"
            else:
                window = "-"
            moved = median([r.get("vipMovedS") for r in rows])
            holders = max((r.get("maxVipHolders", 0) for r in rows), default=0)
            dual = max((r.get("dualHolderS", 0.0) for r in rows), default=0.0)
            if scenario == "idle-soak":
                moved = f"{sum(r.get('vipMoves', 0) for r in rows)} moves"
            lines.append(
                f"| {scenario} | {profile} | {len(rows)} | {window} | {median([failed_requests(r) for r in rows])} | "
                f"{'-' if moved is None else moved} | {holders or '-'} | {dual if 'dualHolderS' in rows[0] else '-'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profiles", default="reference,hapx,keepalived")
    parser.add_argument("--hapx-overrides", default="{}", help='JSON config for the hapx profile, e.g. \'{"hapx:corosync": {"tokenMs": 1000}}\'')
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--soak-s", type=float, default=600, help="length of the idle-soak scenario (bounded to 3600)")
    parser.add_argument("--soak-profiles", default="hapx", help="profiles that run the idle soak (it is long)")
    parser.add_argument("--out", default=str(REPO / ".bench" / "failover.json"))
    args = parser.parse_args(argv)
    profiles = [p for p in args.profiles.split(",") if p]
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [p for p in profiles if p not in PROFILES] + [s for s in scenarios if s not in RUNNERS]
    if unknown:
        parser.error(f"unknown profile or scenario: {', '.join(unknown)}")
    if not 0 < args.soak_s <= 3600:
        parser.error("--soak-s must be between 0 and 3600")
    all_results = {}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hapx-bench-") as tmp:
        for profile in profiles:
            all_results[profile] = bench_profile(profile, args.runs, scenarios, Path(tmp), json.loads(args.hapx_overrides), args.soak_s, args.soak_profiles.split(","))
            # Saved after each profile: a later failure does not lose it.
            Path(args.out).write_text(json.dumps(all_results, indent=2))
    print()
    print(summarize(all_results))
    print(f"\n[bench] raw results: {args.out}; command: {shlex.join(['python', '-m', 'bench.failover'] + (sys.argv[1:] if argv is None else argv))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
