"""The phases of a failover, read from the survivor's journal, and of a
haproxy restart, read from the killed node's.

After a power-off or a link cut the benchmark reads the survivor's journal
around the fault (`journalctl -o json`, over SSH) and finds, for each phase,
the first line after the fault that marks it. Times in the journal are the
guest's wall clock (__REALTIME_TIMESTAMP, microseconds); the caller passes
the fault on the guest's clock (the host's fault mark plus the measured
offset, harness/clock.py) and gets seconds from the fault back. A phase
with no matching line is None: not found is not guessed.

After a kill-haproxy the benchmark reads the journal of the node whose
haproxy it killed: both pairs restart the same unit in place, and its
phases (systemd's restart, haproxy's start-up) are timed from the kill on
that node's own clock, with no offset to convert.

The patterns match what the tools on the lab's image (Debian 12: corosync
3.1, Pacemaker 2.1, resource-agents 4.12, keepalived 2.2) print;
tests/fixtures/journal/ holds lines read from a lab run, and the unit tests
parse those.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from components.rendering import HAPROXY_ID, VIP_ID

if TYPE_CHECKING:
    from harness.lab import LabStack

# The journal is read from this long before the fault (a line there is not
# a phase, but shows the clock and the read are right).
BEFORE_FAULT_S = 5.0
# Whose lines are read: the cluster's daemons and the VIP agents. IPaddr2
# logs through `logger` as "IPaddr2(<resource>)", hapx's agent as
# "vip(<resource>)" (kept with --keep-journals). haproxy is left out: it
# logs every request.
IDENTIFIERS = (
    "corosync", "pacemaker-controld", "pacemaker-schedulerd", "pacemaker-fenced", "pacemaker-based",
    "pacemaker-attrd", "pacemakerd", f"IPaddr2({VIP_ID})", f"vip({VIP_ID})",
    "Keepalived_vrrp", "Keepalived",
)  # fmt: skip
# Whose lines are read after a kill: systemd's about the unit, haproxy's own
# (its master's start-up notices; its request log comes too, as "haproxy",
# and matches no phase), hapx's agent ("haproxy(<resource>)": a monitor that
# met the restart and waited for it), keepalived's state changes and
# Pacemaker's controller (a recovery of its own would be a finding).
RESTART_IDENTIFIERS = ("systemd", "haproxy", f"haproxy({HAPROXY_ID})", "Keepalived_vrrp", "pacemaker-controld")
# A failover's phases end by this long after the probe saw service again (the
# VIP agent's start returns after the first answer; 0.2-0.7 s in the runs).
PHASES_AFTER_RECOVERY_S = 10.0
# The journal read is bounded: a failover writes a few dozen of these lines.
MAX_LINES = 5000


@dataclass(frozen=True)
class JournalLine:
    at: float  # guest wall clock, seconds since the epoch
    identifier: str
    message: str


@dataclass(frozen=True)
class Phase:
    key: str
    label: str  # a short column heading
    identifier: str  # regex on SYSLOG_IDENTIFIER
    message: str  # regex searched in MESSAGE


_VIP = re.escape(VIP_ID)
_UNIT = r"haproxy\.service"
# Per pair kind, in the order a failover goes through them. A phase that
# does not happen in a run (no election when the survivor already was the
# DC) has no line, and stays None.
PATTERNS: dict[str, tuple[Phase, ...]] = {
    "pacemaker": (
        # knet sees the link go (its pings stop), or the token is late.
        Phase("lossNoticedS", "loss noticed", r"^corosync$",
              r"\[KNET *\] link: host: \d+ link: \d+ is down|\[TOTEM *\] Token has not been received"),
        Phase("tokenLostS", "token lost", r"^corosync$", r"\[TOTEM *\] A processor failed, forming new configuration"),
        Phase("membershipS", "new membership", r"^corosync$", r"\[TOTEM *\] A new membership \(\S+\) was formed"),
        Phase("nodeLostS", "Pacemaker: node lost", r"^pacemaker-controld$", r"Node \S+ state is now lost"),
        # Only when the node that died was the DC.
        Phase("electionS", "election", r"^pacemaker-controld$", r"State transition \S+ -> S_ELECTION"),
        Phase("dcS", "DC (integration)", r"^pacemaker-controld$", r"State transition \S+ -> S_INTEGRATION"),
        Phase("schedulerStartS", "scheduler start", r"^pacemaker-controld$", r"State transition \S+ -> S_POLICY_ENGINE"),
        Phase("scheduledS", "transition computed", r"^pacemaker-schedulerd$", r"Calculated transition \d+"),
        Phase("fencingStartS", "fencing start", r"^pacemaker-controld$", r"Requesting fencing \(\w+\) of node"),
        Phase("fencingEndS", "fencing done", r"^pacemaker-fenced$", r"Operation '\w+' targeting \S+ by \S+ for \S+: OK"),
        Phase("vipStartS", "VIP start", r"^pacemaker-controld$", rf"Initiating start operation {_VIP}_start_0"),
        # IPaddr2 only: hapx's agent writes its line in the background once
        # the address is on (and often after Pacemaker has its result), so
        # its line would be no phase; for it, VIP start to VIP started is all.
        Phase("vipAddressS", "VIP address added (IPaddr2)", rf"^IPaddr2\({_VIP}\)$", r"Adding inet address"),
        Phase("vipStartedS", "VIP started", r"^pacemaker-controld$", rf"Result of start operation for {_VIP} on \S+: ok"),
    ),
    # keepalived 2.2 at its default log level prints the state change only
    # (not the missed adverts, nor the gratuitous ARPs); it adds the VIP
    # as it enters MASTER.
    "keepalived": (
        Phase("masterS", "VRRP MASTER", r"^Keepalived_vrrp$", r"\(\S+\) Entering MASTER STATE"),
    ),
    # A killed haproxy restarted in place by its unit's Restart= (systemd 252,
    # haproxy 2.6 in master-worker mode), on the node it was killed on. The
    # last two are not phases of the restart but what else happened: hapx's
    # monitor met the restart and polled until haproxy answered (its CPU is
    # the restart's), or keepalived gave the VIP up.
    "haproxy-restart": (
        Phase("exitedS", "exit seen", r"^systemd$", rf"{_UNIT}: Main process exited"),
        Phase("restartScheduledS", "restart scheduled", r"^systemd$", rf"{_UNIT}: Scheduled restart job"),
        Phase("startingS", "starting", r"^systemd$", rf"Starting {_UNIT}"),
        Phase("workerForkedS", "worker forked", r"^haproxy$", r"New worker \(?\d+\)? forked"),
        Phase("loadedS", "loading success", r"^haproxy$", r"Loading success"),
        Phase("startedS", "started (systemd)", r"^systemd$", rf"Started {_UNIT}"),
        Phase("monitorWaitedS", "hapx monitor waited", rf"^haproxy\({re.escape(HAPROXY_ID)}\)$", r"answers again"),
        Phase("vipLeftS", "VIP left (keepalived)", r"^Keepalived_vrrp$", r"Entering (BACKUP|FAULT) STATE"),
    ),
}  # fmt: skip
# Every phase a run row may carry, in a sensible column order, with its heading.
PHASE_LABELS: dict[str, str] = {
    "killLandedS": "kill landed",  # kill-haproxy: the kill on the node's clock, converted
    **{p.key: p.label for kind in PATTERNS.values() for p in kind},
    "firstAnsweredS": "first answered (probe)",
}


def parse_journal_json(text: str) -> list[JournalLine]:
    """`journalctl -o json` output (one object a line) as JournalLines,
    in the journal's order. The time is _SOURCE_REALTIME_TIMESTAMP (when
    the sender logged it) where present: __REALTIME_TIMESTAMP is when
    journald got round to it, up to 130 ms later on a busy guest. MESSAGE
    may be an array of bytes (journald does that for non-UTF-8 text)."""
    lines = []
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw:
            continue
        entry = json.loads(raw)
        message = entry.get("MESSAGE")
        if isinstance(message, list):
            message = bytes(message).decode(errors="replace")
        if message is None or "__REALTIME_TIMESTAMP" not in entry:
            continue
        identifier = entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or ""
        stamp = entry.get("_SOURCE_REALTIME_TIMESTAMP") or entry["__REALTIME_TIMESTAMP"]
        lines.append(JournalLine(int(stamp) / 1e6, identifier, message))
    return lines


def find_phases(
    lines: list[JournalLine], kind: str, guest_fault: float, guest_until: float | None = None
) -> dict[str, float | None]:
    """Seconds from the fault to the first line after it that marks each
    phase; None where no line does. Lines after guest_until (the end of the
    failover, when the caller knows it) are not this failover's: after a
    link cut the journal read also holds the fenced node's return a minute
    later, whose scheduler run was once taken for the failover's."""
    end = math.inf if guest_until is None else guest_until
    found: dict[str, float | None] = {}
    for phase in PATTERNS[kind]:
        identifier, message = re.compile(phase.identifier), re.compile(phase.message)
        found[phase.key] = next(
            (
                round(line.at - guest_fault, 3)
                for line in lines
                if guest_fault <= line.at <= end
                and identifier.search(line.identifier)
                and message.search(line.message)
            ),
            None,
        )
    return found


def journal_command(since: float, until: float, identifiers: tuple[str, ...] = IDENTIFIERS) -> str:
    """journalctl for the lines of these identifiers between two guest times."""
    matches = " + ".join(f"SYSLOG_IDENTIFIER={shlex.quote(i)}" for i in identifiers)
    return (
        f"sudo journalctl --no-pager -o json --output-fields=MESSAGE,SYSLOG_IDENTIFIER,_SOURCE_REALTIME_TIMESTAMP "
        f"--since=@{since:.6f} --until=@{until:.6f} {matches} | head -n {MAX_LINES}"
    )


def fetch_journal(
    lab: "LabStack", node: str, since: float, until: float, identifiers: tuple[str, ...] = IDENTIFIERS
) -> str:
    out = lab.ssh(node, journal_command(since, until, identifiers), timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"{node}: journalctl failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return out.stdout
