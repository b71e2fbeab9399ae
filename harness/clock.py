"""How far a guest's clock is from the host's, measured over SSH.

A guest's journal stamps its lines with the guest's wall clock, which is not
the host's: the benchmark marks a fault with the host's clock and reads the
phases of a failover from the survivor's journal, so it needs the offset
between the two, and how well it knows it.

One SSH session stays open on the guest, running a loop that prints the
guest's `date +%s.%N` for each line it reads. The host writes a line at h0,
reads the answer g at h1: the guest read its clock at some host instant in
[h0, h1], so guest - host = g - (h0 + h1) / 2 within ± (h1 - h0) / 2.
Of several such exchanges the one with the shortest round trip is kept (the
others waited on a busy guest or a busy host). Logging in is not part of
any round trip: the session is opened first.
"""

from __future__ import annotations

import select
import subprocess
import time
from dataclasses import dataclass
from typing import Sequence

# Reads lines, answers each with the guest's wall clock; ends with stdin.
GUEST_CLOCK_LOOP = "while read -r _; do date +%s.%N; done"


@dataclass(frozen=True)
class ClockSample:
    """One exchange: host time when the line was sent, the guest's answer,
    host time when the answer was read (seconds since the epoch)."""

    host_sent: float
    guest: float
    host_received: float

    @property
    def round_trip_s(self) -> float:
        return self.host_received - self.host_sent

    @property
    def offset_s(self) -> float:
        """guest - host, taking the host's instant as the round trip's midpoint."""
        return self.guest - (self.host_sent + self.host_received) / 2


@dataclass(frozen=True)
class ClockOffset:
    """guest clock - host clock, within ± uncertainty_s, measured at
    measured_at (host clock) from `samples` exchanges."""

    offset_s: float
    uncertainty_s: float
    round_trip_s: float
    samples: int
    measured_at: float

    def to_host(self, guest_time: float) -> float:
        return guest_time - self.offset_s

    def as_json(self) -> dict:
        return {
            "offsetS": round(self.offset_s, 6),
            "uncertaintyS": round(self.uncertainty_s, 6),
            "roundTripS": round(self.round_trip_s, 6),
            "samples": self.samples,
            "measuredAt": round(self.measured_at, 6),
        }


def best_offset(samples: Sequence[ClockSample]) -> ClockOffset:
    """The offset from the exchange with the shortest round trip."""
    if not samples:
        raise ValueError("no clock samples")
    best = min(samples, key=lambda s: s.round_trip_s)
    if best.round_trip_s < 0:
        raise ValueError(f"a clock sample was received before it was sent: {best}")
    return ClockOffset(
        offset_s=best.offset_s,
        uncertainty_s=best.round_trip_s / 2,
        round_trip_s=best.round_trip_s,
        samples=len(samples),
        measured_at=(best.host_sent + best.host_received) / 2,
    )


def combined_uncertainty(before: ClockOffset, after: ClockOffset | None) -> float:
    """The uncertainty of a guest time converted with `before`'s offset,
    for an instant between the two measurements: the wider half round trip,
    plus however far the offset moved between them (drift, or a step of the
    guest's clock)."""
    if after is None:
        return before.uncertainty_s
    return max(before.uncertainty_s, after.uncertainty_s) + abs(after.offset_s - before.offset_s)


def _exchange(proc: subprocess.Popen, deadline: float, timeout_s: float) -> ClockSample:
    """One line out, one answer back."""
    sent = time.time()
    try:
        proc.stdin.write("\n")
        proc.stdin.flush()
    except BrokenPipeError:  # the session is gone already
        answer = ""
    else:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise RuntimeError(f"the guest's clock did not answer within {timeout_s:.0f} s")
        answer = proc.stdout.readline()
    received = time.time()
    if not answer:
        raise RuntimeError(f"the clock session ended: {proc.stderr.read()[-500:].strip() or 'no output'}")
    return ClockSample(sent, float(answer), received)


def measure_offset(ssh_command: list[str], samples: int = 5, timeout_s: float = 30) -> ClockOffset:
    """Open one SSH session (ssh_command is the full argv running
    GUEST_CLOCK_LOOP on the guest) and exchange `samples` lines over it,
    after a first exchange that only waits for the login."""
    proc = subprocess.Popen(
        ssh_command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    deadline = time.monotonic() + timeout_s
    try:
        _exchange(proc, deadline, timeout_s)
        taken = [_exchange(proc, deadline, timeout_s) for _ in range(samples)]
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    # Closing stdin ends the loop and the session.
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return best_offset(taken)
