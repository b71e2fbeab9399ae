"""Failover benchmark on the QEMU lab: how long clients go without service.

    .venv/bin/python -m bench.failover [--runs 3] [--profiles reference,hapx,keepalived]
        [--scenarios power-off,kill-haproxy,config-change] [--hapx-overrides JSON]
        [--out .bench/failover.json]

Profiles: `reference` is hapx with the reference design's settings (token
3 s, monitors every 20 s, haproxy started on the survivor at failover);
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
- config-change: changes haproxy.cfg through `pulumi up` (a health-check
                 interval), which reloads haproxy on both nodes.

It prints, per profile and scenario, the unavailability window (first failed
probe to the first good one after it) and failed probes, each run and the
median, then destroys the stack. Figures depend on the machine: under TCG
on 2 cores, process start-up inside the guests dominates.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.keepalived import convert_to_keepalived, pair_whole
from tests.conftest import REPO
from tests.e2e.lab import PYTHON, LabStack, wait_for
from tests.pulumi_cli import PulumiWorkspace

# Settings profiles: hapx:* config overrides on top of Pulumi.lab.yaml.
PROFILES = {
    "reference": {
        "hapx:corosync": {"tokenMs": 3000},
        "hapx:pacemaker": {"monitorIntervalS": 20, "haproxyOnAllNodes": False},
    },
    "hapx": {},
    "keepalived": {},
}
SCENARIOS = ("power-off", "kill-haproxy", "config-change")
PROBE_LIMIT_S = 120  # no scenario may keep a client loop running longer


def start_probe(lab: LabStack, duration_s: float, stop_after_recovery: bool) -> subprocess.Popen:
    args = ["ip", "netns", "exec", lab.namespace, PYTHON, str(REPO / "tools" / "vip_probe.py"),
            "--target", f"{lab.config['hapx:vip']}:{lab.config['hapx:haproxy']['frontendPort']}",
            "--duration-s", str(duration_s), "--interval-ms", "20", "--timeout-ms", "300"]  # fmt: skip
    if stop_after_recovery:
        args.append("--stop-after-recovery")
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def finish_probe(probe: subprocess.Popen) -> dict:
    out, _ = probe.communicate(timeout=PROBE_LIMIT_S + 60)
    return json.loads(out)


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
    probe = start_probe(lab, PROBE_LIMIT_S, stop_after_recovery=True)
    time.sleep(1)
    subprocess.run(["kill", "-KILL", str(lab.vm_pid(holder))], check=True)
    result = finish_probe(probe)
    restart_vm(lab, holder)
    if not wait_for(lambda: whole(lab), 600, interval_s=5):
        raise RuntimeError(f"{holder} did not rejoin within 600 s")
    return result


def kill_haproxy(lab: LabStack, whole) -> dict:
    (holder,) = lab.vip_holders()
    probe = start_probe(lab, PROBE_LIMIT_S, stop_after_recovery=True)
    time.sleep(1)
    lab.ssh(holder, "sudo systemctl kill --signal=SIGKILL haproxy.service")
    result = finish_probe(probe)
    # Back to a whole pair for the next run: Pacemaker forgets the failure,
    # keepalived's pair needs haproxy started again if systemd did not.
    if whole is pacemaker_whole:
        lab.ssh(holder, "sudo crm resource cleanup hapx-haproxy >/dev/null 2>&1")
    else:
        lab.ssh(holder, "systemctl is-active --quiet haproxy || sudo systemctl start haproxy")
    if not wait_for(lambda: whole(lab), 300, interval_s=5):
        raise RuntimeError("haproxy did not come back")
    return result


def config_change(lab: LabStack, whole) -> dict:
    config = copy.deepcopy(lab.config)
    haproxy = config["hapx:haproxy"]
    haproxy["checkIntervalMs"] = 2100 if haproxy.get("checkIntervalMs", 2000) == 2000 else 2000
    lab.set_config(config)
    probe = start_probe(lab, 60, stop_after_recovery=False)
    time.sleep(1)
    lab.up()
    probe.terminate()
    out, _ = probe.communicate(timeout=30)
    return json.loads(out) if out.strip() else {"failures": None, "unavailableS": None}


RUNNERS = {"power-off": power_off, "kill-haproxy": kill_haproxy, "config-change": config_change}


def bench_profile(name: str, runs: int, scenarios: list[str], root: Path, overrides: dict) -> dict:
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
            for run in range(1, runs + 1):
                result = RUNNERS[scenario](lab, whole)
                results.setdefault(scenario, []).append(result)
                print(f"[bench] {name} {scenario} run {run}: unavailable {result.get('unavailableS')} s, "
                      f"{result.get('failures')} failed of {result.get('probes')}", flush=True)  # fmt: skip
    finally:
        lab.teardown()
    return results


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def summarize(all_results: dict) -> str:
    lines = ["| scenario | " + " | ".join(f"{p}: unavailable s (median) | {p}: failed probes (median)" for p in all_results) + " |"]
    lines.append("|---" * (1 + 2 * len(all_results)) + "|")
    scenarios = sorted({s for r in all_results.values() for s in r}, key=SCENARIOS.index)
    for scenario in scenarios:
        cells = []
        for profile, results in all_results.items():
            rows = results.get(scenario, [])
            window = [r.get("unavailableS") if r.get("failures") else 0.0 for r in rows]
            cells += [str(median(window)), str(median([r.get("failures") for r in rows]))]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profiles", default="reference,hapx,keepalived")
    parser.add_argument("--hapx-overrides", default="{}", help='JSON config for the hapx profile, e.g. \'{"hapx:corosync": {"tokenMs": 1000}}\'')
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--out", default=str(REPO / ".bench" / "failover.json"))
    args = parser.parse_args(argv)
    profiles = [p for p in args.profiles.split(",") if p]
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [p for p in profiles if p not in PROFILES] + [s for s in scenarios if s not in RUNNERS]
    if unknown:
        parser.error(f"unknown profile or scenario: {', '.join(unknown)}")
    all_results = {}
    with tempfile.TemporaryDirectory(prefix="hapx-bench-") as tmp:
        for profile in profiles:
            all_results[profile] = bench_profile(profile, args.runs, scenarios, Path(tmp), json.loads(args.hapx_overrides))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(all_results, indent=2))
    print()
    print(summarize(all_results))
    print(f"\n[bench] raw results: {args.out}; command: {shlex.join(['python', '-m', 'bench.failover'] + (argv or []))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
