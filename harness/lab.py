"""A lab stack for the e2e tests and the benchmark: the lab topology
(Pulumi.lab.yaml) with its own namespace, SSH ports and state directory,
driven by the real engine.

Everything it starts it can find again from its state directory (pid files)
and its namespace, so `force_cleanup` removes it even when `pulumi destroy`
failed. HAPX_IMAGE_DIR, when set, names the base image directory to boot
(default: hapx:qemu.imageDir, `make image`'s `current`, which the next
`make image` of another clone may repoint). Traffic goes only to 127.0.0.1 (SSH forwards) and into the lab's
own namespace (the VIP, stand-in backends).
"""

from __future__ import annotations

import copy
import os
import re
import select
import shlex
import signal
import socket
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from xml.etree import ElementTree

from components.drivers.qemu.lab import tap_name
from components.rendering import HEALTH_PATH, SETTLED_ATTRIBUTE, VIP_AVOIDS_DC_ID
from harness.paths import PYTHON, REPO, stack_config
from harness.probe import ProbeProcess
from harness.workspace import PulumiWorkspace
from tools.qemu_fence_host import FenceError, Qmp

# SIGKILL for every process of haproxy.service on a node, as `systemctl kill
# --signal=SIGKILL haproxy.service` does, in two halves: the process list is
# read and "primed" printed first; the kill (the shell's builtin) runs when a
# line arrives on stdin. So the caller can mark the fault the instant before
# it happens, not an SSH login (about a second under TCG) earlier.
# The unit's processes are read again at the kill, not when primed: a worker
# that a reload left behind may exit in between, and `kill` of a gone process
# failed the whole kill (seen right after the scale test's haproxy reloads).
# The kill succeeds when at least one process of the unit was killed.
# "Primed" needs the unit to have a process: read, not `[ -s ]`, because a
# cgroup file, like any file the kernel writes on read, has size 0 (a CI run
# found that `-s` never primed).
# The kill prints the node's clock read the instant before its first kill
# (bash's $EPOCHREALTIME: no program starts between the two): the line
# reaches the node's shell some time after the caller's mark (0.03-0.4 s on
# a busy emulated node), and a benchmark can start its window at the kill.
UNIT_HAS_PROCESSES = 'grep -q . "$procs"'
KILL_UNIT_PROCESSES = (
    'killed=0; pids=$(cat "$procs"); at=$EPOCHREALTIME;'
    ' for pid in $pids; do kill -KILL "$pid" 2>/dev/null && killed=$((killed + 1)); done;'
    ' echo "killed-at $at"; [ "$killed" -gt 0 ]'
)
PRIMED_HAPROXY_KILL = "sudo bash -c " + shlex.quote(
    "procs=/sys/fs/cgroup$(systemctl show -p ControlGroup --value haproxy.service)/cgroup.procs"
    f" && {UNIT_HAS_PROCESSES} && echo primed && read _ && {KILL_UNIT_PROCESSES}"
)
KILLED_AT = re.compile(r"^killed-at (\d+(?:[.,]\d+)?)$", re.MULTILINE)


def planned_actions(crm_simulate_output: str) -> list[str]:
    """The lines of crm_simulate's "Transition Summary" (start, stop, move, migrate...); empty when the cluster is
    where the scheduler wants it. Raises ValueError when the output has no summary (crm_simulate failed)."""
    if "Transition Summary:" not in crm_simulate_output:
        raise ValueError("crm_simulate printed no transition summary")
    summary = crm_simulate_output.split("Transition Summary:", 1)[1].split("Executing Cluster Transition:", 1)[0]
    return [line.strip() for line in summary.splitlines() if line.strip().startswith("*")]


# Printed by scheduler_idle's node command when the CIB has the VIP's rule against the DC.
RULE_MARK = "hapx-vip-avoids-dc-rule"


def settled_nodes(output: str) -> set[str]:
    """The nodes marked settled (the attribute set to 1) in the CIB status section that `output` holds after
    RULE_MARK (`cibadmin --query --scope status`): what the scheduler reads. Not attrd's view: after a short split
    attrd can hold a mark the CIB lost (hapx-mark-settled sets such a mark again)."""
    status = re.search(r"<status\b.*?(?:</status>|<status/>)", output.split(RULE_MARK, 1)[-1], re.DOTALL)
    if status is None:
        return set()
    try:
        root = ElementTree.fromstring(status.group(0))
    except ElementTree.ParseError:
        return set()
    return {
        state.get("uname", "")
        for state in root.iter("node_state")
        for pair in state.iterfind("transient_attributes//nvpair")
        if pair.get("name") == SETTLED_ATTRIBUTE and pair.get("value") == "1"
    }


def haproxy_serving_check(stats_port: int, timeout_s: int = 2) -> str:
    """The shell command that succeeds on a node while haproxy serves there:
    the request hapx's resource agent makes (templates/node/ocf-haproxy), an
    HTTP GET of haproxy's monitor-uri on the local stats listener. The lab,
    the benchmark and the keepalived pair's tracked script all use this."""
    url = f"http://127.0.0.1:{stats_port}{HEALTH_PATH}"
    return f"/usr/bin/curl --silent --fail --max-time {timeout_s} --output /dev/null {url}"


def free_port_base(count: int, start: int) -> int:
    """A run of `count` free loopback ports at or above `start`."""
    base = start
    while base < 60000:
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
        base += count
    raise RuntimeError("no free loopback ports for the lab's SSH forwards")


@dataclass
class LabStack:
    workspace: PulumiWorkspace
    stack: str
    namespace: str
    state_dir: Path
    config: dict

    @classmethod
    def create(
        cls, workspace: PulumiWorkspace, stack: str, state_dir: Path, port_start: int, rollout: str | None = None
    ) -> "LabStack":
        """A lab stack from Pulumi.lab.yaml on its own namespace, ports and state; `rollout` sets hapx:rollout."""
        config = copy.deepcopy(stack_config("lab"))
        if rollout is not None:
            config["hapx:rollout"] = rollout
        namespace = f"hx-{stack}-{os.getpid() % 10000}"[:15]
        config["hapx:qemu"] = dict(
            config["hapx:qemu"],
            labNamespace=namespace,
            # Room for one node more: the scale test adds a third.
            sshPortBase=free_port_base(len(config["hapx:nodes"]) + 1, port_start),
            stateDir=str(state_dir),
        )
        if os.environ.get("HAPX_IMAGE_DIR"):
            config["hapx:qemu"]["imageDir"] = os.path.expanduser(os.environ["HAPX_IMAGE_DIR"])
        lab = cls(workspace, stack, namespace, state_dir, config)
        workspace.init_stack(stack, config)
        return lab

    # -- Pulumi ------------------------------------------------------------
    def pulumi(self, *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
        return self.workspace.run(*args, stack=self.stack, check=check, timeout=timeout)

    def up(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.pulumi("up", "--yes", "--skip-preview", *extra, check=check)

    def set_config(self, config: dict) -> None:
        self.workspace.write_config(self.stack, config)
        self.config = config

    def outputs(self, show_secrets: bool = False) -> dict:
        return self.workspace.outputs(self.stack, show_secrets=show_secrets)

    # -- Nodes ----------------------------------------------------------------
    @property
    def nodes(self) -> list[str]:
        return [n["name"] for n in self.config["hapx:nodes"]]

    def ssh_port(self, node: str) -> int:
        return self.config["hapx:qemu"]["sshPortBase"] + self.nodes.index(node)

    def key_file(self) -> Path:
        path = self.state_dir.parent / f"{self.stack}-admin-key"
        if not path.exists():
            key = self.outputs(show_secrets=True)["adminPrivateKey"]
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key if key.endswith("\n") else key + "\n")
        return path

    def ssh_command(self, node: str, command: str, options: tuple[str, ...] = ()) -> list[str]:
        return [
            "ssh", "-i", str(self.key_file()), "-p", str(self.ssh_port(node)),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", *options,
            f"{self.config.get('hapx:adminUser', 'debian')}@127.0.0.1", command,
        ]  # fmt: skip

    def ssh(self, node: str, command: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess:
        feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
        return subprocess.run(self.ssh_command(node, command), capture_output=True, text=True, timeout=timeout, **feed)

    def vip_holders(self, alive: list[str] | None = None) -> list[str]:
        return [node for node in alive or self.nodes if self._holds_vip(self.ssh(node, "ip -o -4 addr show").stdout)]

    def _holds_vip(self, addresses: str) -> bool:
        """Whether `ip -o -4 addr show` output lists the VIP."""
        return f" {self.config['hapx:vip']}/" in addresses

    def whole(self, node: str | None = None) -> bool:
        """Every node online in Pacemaker (as `node` sees it), no resource stopped, one VIP holder, and nothing left
        for the scheduler to do."""
        node = node or self.nodes[0]
        try:
            status = self.ssh(node, "sudo crm_mon -1 2>/dev/null", timeout=30).stdout
            if f"Online: [ {' '.join(self.nodes)} ]" not in status or "Stopped" in status:
                return False
            # Every node must answer, not only be online to Pacemaker: a node that refuses logins is not counted
            # as "holds no VIP" here (a CI run took a reset node, online but not yet letting anyone in, for whole).
            addresses = {n: self.ssh(n, "ip -o -4 addr show", timeout=30) for n in self.nodes}
            if any(out.returncode != 0 for out in addresses.values()):
                return False
            holders = [n for n, out in addresses.items() if self._holds_vip(out.stdout)]
            return len(holders) == 1 and self.scheduler_idle(node)
        except subprocess.TimeoutExpired:
            # A node still booting (a reset node after a link cut, on a slow emulated machine) can take longer than
            # that to log in and answer: not whole yet, asked again by the caller's wait, not an error.
            return False

    def scheduler_idle(self, node: str) -> bool:
        """The scheduler, run on a copy of the live CIB, plans no action, and none is still to come: in particular
        no VIP handover to a node that came back (hapx:pacemaker.vipAvoidsDc), planned now or once that node is
        settled (every node must carry the settled attribute while the CIB has the rule). Read-only (crm_simulate
        never writes the live CIB)."""
        rule = f"//rsc_location[@id='{VIP_AVOIDS_DC_ID}']"
        out = self.ssh(
            node,
            "sudo crm_simulate --live-check --simulate 2>/dev/null; "
            f"if sudo cibadmin --query --xpath {shlex.quote(rule)} >/dev/null 2>&1; then "
            f"echo {RULE_MARK}; sudo cibadmin --query --scope status 2>/dev/null; fi",
            timeout=60,
        )
        try:
            idle = out.returncode == 0 and planned_actions(out.stdout) == []
        except ValueError:  # no summary: not known to be idle
            return False
        return idle and (RULE_MARK not in out.stdout or set(self.nodes) <= settled_nodes(out.stdout))

    def tap(self, node: str) -> str:
        """The node's cluster NIC on the host."""
        return tap_name(self.stack, node)

    def set_link(self, node: str, up: bool) -> None:
        """Cut (or restore) the node's cluster link: its tap on the lab bridge goes down."""
        subprocess.run(["ip", "-n", self.namespace, "link", "set", self.tap(node), "up" if up else "down"], check=True)

    def boot_id(self, node: str) -> str | None:
        """The node's current boot id (changes when it was reset), None if unreachable."""
        try:
            out = self.ssh(node, "cat /proc/sys/kernel/random/boot_id", timeout=20)
        except subprocess.TimeoutExpired:
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    def corosync_members(self, node: str) -> set[str]:
        """The nodes in corosync's current membership, as the node sees it."""
        out = self.ssh(node, "sudo corosync-quorumtool -l 2>/dev/null", timeout=30).stdout
        # Rows: nodeid, votes, name (then "(local)" on the node's own row).
        return {fields[2] for fields in (line.split() for line in out.splitlines()) if len(fields) >= 3 and fields[0].isdigit()}

    def kill_haproxy(self, node: str, mark: Callable[[], object] = lambda: None) -> None:
        """SIGKILL haproxy (every process of its unit) on the node; `mark` is
        called the instant before the kill is sent (a probe's fault())."""
        with self.primed_haproxy_kill(node) as fire:
            fire(mark)

    @contextmanager
    def primed_haproxy_kill(self, node: str) -> Iterator[Callable[[Callable[[], object]], float]]:
        """A root shell on the node, logged in and waiting to SIGKILL haproxy;
        yields `fire(mark)`, which calls `mark` the instant before it sends the
        kill, and returns once it is done, with the node's clock (seconds since
        the epoch) the instant before its first kill. The login (most of a
        second of an emulated CPU) happens here, so a benchmark primes before
        its probe starts and the node's CPU is not busy with it when the
        probe's lead-in begins. The unit's processes are read when it fires,
        not when primed."""
        proc = subprocess.Popen(
            self.ssh_command(node, PRIMED_HAPROXY_KILL),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        fired = False

        def fire(mark: Callable[[], object]) -> float:
            nonlocal fired
            fired = True
            mark()
            proc.stdin.write("\n")
            proc.stdin.flush()
            out, err = proc.communicate(timeout=60)
            if proc.returncode != 0:
                raise RuntimeError(f"{node}: killing haproxy failed ({proc.returncode}): {err}")
            killed_at = KILLED_AT.search(out)
            if killed_at is None:
                raise RuntimeError(f"{node}: haproxy was killed but the node did not say when: {out.strip()!r}")
            return float(killed_at.group(1).replace(",", "."))

        try:
            answered = select.select([proc.stdout], [], [], 60)[0]
            line = proc.stdout.readline().strip() if answered else None
            if line != "primed":
                proc.kill()
                _, err = proc.communicate(timeout=30)
                why = "no answer within 60 s" if line is None else f"exit {proc.returncode}, no haproxy process to kill"
                raise RuntimeError(f"{node}: could not get ready to kill haproxy ({why}): {err.strip()}")
            yield fire
            if not fired:
                raise RuntimeError(f"{node}: a primed haproxy kill was never fired")
        finally:
            if proc.poll() is None:
                # Not fired (or it hung): the session ends with the client; the remote
                # `read` then meets the end of its input and the shell stops before the kill.
                proc.kill()
                proc.wait()

    def vm_pid(self, node: str) -> int:
        return int((self.state_dir / self.stack / "vms" / node / "qemu.pid").read_text())

    def translation_cache_flushes(self, node: str) -> int | None:
        """How often QEMU has dropped the VM's whole TCG translation cache
        since the VM started ("TB flush count" of `info jit`): the guest
        stalls for a moment after each. None when it cannot be read (KVM, VM
        not running)."""
        try:
            qmp = Qmp(self.state_dir / self.stack / "vms" / node / "qmp.sock")
            try:
                text = qmp.execute("human-monitor-command", {"command-line": "info jit"})
            finally:
                qmp.close()
        except (FenceError, OSError, ValueError):
            return None
        found = re.search(r"TB flush count\s+(\d+)", text if isinstance(text, str) else "")
        return int(found.group(1)) if found else None

    def instance_id(self, node: str) -> str:
        return (self.state_dir / self.stack / "vms" / node / "instance-id").read_text().strip()

    # -- The lab's own clients -------------------------------------------------
    def in_namespace(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.namespace, *args], capture_output=True, text=True, timeout=timeout)

    def start_probe(
        self,
        duration_s: float,
        stop_after_recovery: bool = True,
        interval_ms: int = 20,
        ready: bool = True,
        min_after_fault_s: float = 0.0,
        overlap: bool = False,
    ) -> ProbeProcess:
        """A bounded client loop against the VIP, in the background
        (harness/probe.py). With `ready`, returned once it is armed: the VIP
        answered it several times in a row, so a fault can be marked. With
        `stop_after_recovery` it ends once recovered from the fault, but not
        before `min_after_fault_s` after it. With `overlap` a request begins
        every interval even while earlier ones wait, so a window is known to
        the interval rather than to the request timeout."""
        args = ["ip", "netns", "exec", self.namespace, PYTHON, "-m", "harness.probe",
                "--target", f"{self.config['hapx:vip']}:{self.config['hapx:haproxy']['frontendPort']}",
                "--duration-s", str(duration_s), "--interval-ms", str(interval_ms), "--timeout-ms", "300"]  # fmt: skip
        if stop_after_recovery:
            args += ["--stop-after-recovery", "--min-after-fault-s", str(min_after_fault_s)]
        if overlap:
            args.append("--overlap")
        probe = ProbeProcess(args, cwd=REPO)
        if ready:
            probe.wait_ready()
        return probe

    def probe(self, duration_s: float = 2, interval_ms: int = 20) -> dict:
        """A short probe with no fault, waited for: its report (failures, backends)."""
        with self.start_probe(duration_s, stop_after_recovery=False, interval_ms=interval_ms, ready=False) as probe:
            return probe.finish(timeout_s=duration_s + 30)

    def stats_status(self, user: str, password: str) -> int:
        """HTTP status of the stats page at the VIP for these credentials."""
        code = (
            "import base64,sys,urllib.request as u\n"
            "r=u.Request(sys.argv[1],headers={'Authorization':'Basic '+base64.b64encode(sys.argv[2].encode()).decode()})\n"
            "try:\n print(u.urlopen(r,timeout=5).status)\n"
            "except u.HTTPError as e:\n print(e.code)\n"
        )
        url = f"http://{self.config['hapx:vip']}:{self.config['hapx:haproxy']['statsPort']}/"
        proc = self.in_namespace(PYTHON, "-c", code, url, f"{user}:{password}", timeout=30)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.strip())

    # -- What is left ------------------------------------------------------------
    def leftovers(self) -> list[str]:
        """Everything of this stack still on the host: processes, files, namespace, taps."""
        found = []
        marker = f"hapx-{self.stack}-"
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if ("qemu-system" in cmdline and f"-name {marker}" in cmdline) or (
                "lab_backend.py" in cmdline and str(self.state_dir) in cmdline
            ):
                found.append(f"process {entry.name}: {cmdline[:120]}")
        stack_dir = self.state_dir / self.stack
        if stack_dir.exists():
            found += [f"file {p}" for p in stack_dir.rglob("*")] or [f"directory {stack_dir}"]
        if self.namespace in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split():
            found.append(f"namespace {self.namespace}")
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        for node in self.nodes:
            tap = self.tap(node)
            if f" {tap}:" in links or f" {tap}@" in links:
                found.append(f"tap {tap}")
        return found

    def teardown(self) -> None:
        """After the tests (or a failed one): destroy, then remove by pid files what is left."""
        if self.leftovers():
            self.pulumi("destroy", "--yes", "--skip-preview", check=False, timeout=900)
            self.force_cleanup()

    def force_cleanup(self) -> None:
        """After a failed test: stop what this stack started, by its pid files."""
        for pidfile in (self.state_dir / self.stack).rglob("*.pid") if (self.state_dir / self.stack).exists() else []:
            try:
                pid = int(pidfile.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if b"qemu-system" in cmdline or b"lab_backend.py" in cmdline:
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True)

