"""The phases of a failover, read from the survivor's journal.

After a power-off or a link cut the benchmark reads the survivor's journal
around the fault (`journalctl -o json`, over SSH) and finds, for each phase,
the first line after the fault that marks it. Times in the journal are the
guest's wall clock (__REALTIME_TIMESTAMP, microseconds); the caller passes
the fault on the guest's clock (the host's fault mark plus the measured
offset, harness/clock.py) and gets seconds from the fault back. A phase
with no matching line is None: not found is not guessed.

The patterns match what the tools on the lab's image (Debian 12: corosync
3.1, Pacemaker 2.1, resource-agents 4.12, keepalived 2.2) print;
tests/fixtures/journal/ holds lines read from a lab run, and the unit tests
parse those.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from components.rendering import VIP_ID

if TYPE_CHECKING:
    from harness.lab import LabStack

# The journal is read from this long before the fault (a line there is not
# a phase, but shows the clock and the read are right).
BEFORE_FAULT_S = 5.0
# Whose lines are read: the cluster's daemons and the VIP agents.
IDENTIFIERS = (
    "corosync", "pacemaker-controld", "pacemaker-schedulerd", "pacemaker-fenced", "pacemaker-execd",
    "pacemaker-attrd", "pacemakerd", "Keepalived_vrrp", "Keepalived",
)  # fmt: skip
# The journal read is bounded: a failover writes a few hundred lines.
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


# Per pair kind, in the order a failover goes through them.
PATTERNS: dict[str, tuple[Phase, ...]] = {
    "pacemaker": (
        Phase("lossNoticedS", "loss noticed", r"^corosync$",
              r"Token has not been received|A processor failed, forming new configuration|link: \d+ is down"),
        Phase("membershipS", "new membership", r"^corosync$", r"A new membership \(.*\) was formed"),
        Phase("electionS", "election", r"^pacemaker-controld$", r"State transition \S+ -> S_ELECTION"),
        Phase("dcS", "DC (integration)", r"^pacemaker-controld$", r"State transition \S+ -> S_INTEGRATION"),
        Phase("scheduledS", "transition computed", r"^pacemaker-schedulerd$", r"Calculated transition \d+"),
        Phase("fencingStartS", "fencing start", r"^pacemaker-(fenced|controld)$",
              r"Requesting fencing \(\w+\)|Requesting peer fencing|wants to fence"),
        Phase("fencingEndS", "fencing done", r"^pacemaker-(fenced|controld)$",
              r"Operation '\w+' targeting \S+ (on|by) \S+ for .*: OK|Operation '\w+' .*succeeded|was terminated \(\w+\) by \S+ .*: OK"),
        Phase("vipStartS", "VIP start", r"^pacemaker-controld$",
              rf"Initiating start operation {re.escape(VIP_ID)}_start_0"),
        Phase("vipStartedS", "VIP started", r"^pacemaker-controld$",
              rf"Result of start operation for {re.escape(VIP_ID)} on \S+: (ok|OK)"),
    ),
    "keepalived": (
        Phase("lossNoticedS", "loss noticed", r"^Keepalived_vrrp$", r"Receive advertisement timeout"),
        Phase("masterS", "MASTER state", r"^Keepalived_vrrp$", r"Entering MASTER STATE"),
        Phase("garpS", "gratuitous ARP", r"^Keepalived_vrrp$", r"Sending gratuitous ARP"),
    ),
}  # fmt: skip
# Every phase a run row may carry, in a sensible column order, with its heading.
PHASE_LABELS: dict[str, str] = {
    **{p.key: p.label for kind in PATTERNS.values() for p in kind},
    "firstAnsweredS": "first answered (probe)",
}


def parse_journal_json(text: str) -> list[JournalLine]:
    """`journalctl -o json` output (one object a line) as JournalLines,
    in the journal's order. MESSAGE may be an array of bytes (journald
    does that for non-UTF-8 text)."""
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
        lines.append(JournalLine(int(entry["__REALTIME_TIMESTAMP"]) / 1e6, identifier, message))
    return lines


def find_phases(lines: list[JournalLine], kind: str, guest_fault: float) -> dict[str, float | None]:
    """Seconds from the fault to the first line after it that marks each
    phase; None where no line does."""
    found: dict[str, float | None] = {}
    for phase in PATTERNS[kind]:
        identifier, message = re.compile(phase.identifier), re.compile(phase.message)
        found[phase.key] = next(
            (
                round(line.at - guest_fault, 3)
                for line in lines
                if line.at >= guest_fault and identifier.search(line.identifier) and message.search(line.message)
            ),
            None,
        )
    return found


def journal_command(since: float, until: float) -> str:
    """journalctl for the cluster's lines between two guest times."""
    matches = " + ".join(f"SYSLOG_IDENTIFIER={shlex.quote(i)}" for i in IDENTIFIERS)
    return (
        f"sudo journalctl --no-pager -o json --output-fields=MESSAGE,SYSLOG_IDENTIFIER "
        f"--since=@{since:.6f} --until=@{until:.6f} {matches} | head -n {MAX_LINES}"
    )


def fetch_journal(lab: "LabStack", node: str, since: float, until: float) -> str:
    out = lab.ssh(node, journal_command(since, until), timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"{node}: journalctl failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return out.stdout
