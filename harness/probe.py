"""Probe a TCP service at a fixed rate and measure how long a fault kept its
clients from being served.

    python -m harness.probe --target 192.168.4.20:6443 [--interval-ms 20]
        [--duration-s 60] [--timeout-ms 500] [--confirm-s 1] [--ready-after 5]
        [--stop-after-recovery [--min-after-fault-s 15]]

Each request opens a connection, sends one HTTP request line and reads the
reply (the lab's stand-in backends answer with their name and the address of
the haproxy node that relayed it, so the probe sees the VIP move). The loop
is bounded by --duration-s. Run it inside the lab's network namespace
(`ip netns exec hapx-lab .venv/bin/python -m harness.probe ...` from the
clone); it only connects to --target. Standard library only.

How it talks to its caller (`ProbeProcess` below is the caller's side):

- once --ready-after requests in a row were answered it prints `ready` on
  stderr: the service answers and the probe is armed;
- SIGUSR1 marks the fault. The caller sends it the instant before it causes
  the fault (kills a process, cuts a link), so no failure the fault caused
  can come before the mark. Only the first mark counts;
- SIGTERM ends the loop early; the report is still printed.

It prints one JSON object on stdout. F is the instant the fault mark
arrived; a request is "after the fault" when its outcome was known after F
(so one already under way at F that fails counts as after it):

- `failuresBeforeFault`, `failuresBeforeFaultAtS`: requests that failed
  before F, and when they began (seconds relative to F, so negative). They
  are never part of the window.
- `unavailableS`, the window: from F to the start of the recovering request
  R, the first request begun after F that was answered and after which every
  request was answered for --confirm-s (from R's start to the end of an
  answered request at least that much later). A failure during that
  confirmation voids R; the next answered request is the new candidate.
  0.0 when no request failed after F and --confirm-s of answers followed.
  None (with `recoveryConfirmed` false) when the fault was never marked or
  the run ended before recovery was confirmed; then `unavailableAtLeastS`
  is a lower bound if requests had failed after F.
- `firstFailureAfterFaultS`: from F to the start of the first request that
  failed after F (slightly negative when that request was under way at F).
- `failuresAfterFault`: every failure after F, including
  `failuresAfterRecovery` (`failuresAfterRecoveryAtS`, relative to F):
  failures after the recovery was confirmed, a later blip. They are counted
  and listed, not folded into the window.
- `vipMovedS`: from F to the first answer relayed by a node other than the
  one that relayed the last answer before F.
- `firstAnsweredAfterOutageS`: from F to the start of the first request
  answered after the first failure after F (the first client served
  again; R, the recovering request, is this one or a later one).
- `viaChanges`: every change of the node that relays the answers (the VIP
  moved), `[startS, address]`, relative like the timeline (first 200).
- `viaBeforeFault`: the node address that relayed the last answer before F
  (the node a fault must hit to be a fault of the VIP holder).
- `timeline`: every request, run-length encoded: `[startS, endS, ok,
  count]` per stretch of requests with the same outcome (ok 1 answered, 0
  failed), from the start of its first request to the end of its last,
  in seconds relative to F (or to the probe's start when no fault was
  marked: `timelineZero` says which). A stretch never spans F. At most
  TIMELINE_SEGMENTS stretches are kept (`timelineTruncated` then true);
  the counts above are complete either way.

--overlap begins a request every interval even while earlier ones still
wait for their answer (at most timeout / interval of them at once). One at
a time (the default), a request to an address that answers nothing holds
the next one back for the whole timeout, so a window that ends in such a
stretch is only known to the timeout (0.3 s in the lab); overlapping, to
the interval. The outcomes are counted in the order the requests began, so
every time above means the same either way (the counts are of more
requests: one per interval while requests time out); `overlap` in the
report says which loop ran.

--stop-after-recovery ends the run once the fault was marked, a request
failed after it, recovery was confirmed, and --min-after-fault-s have
passed since F (so failures after a recovery can still be seen); never
before the fault.
"""

from __future__ import annotations

import argparse
import collections
import errno
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

FAULT_SIGNAL = signal.SIGUSR1
READY_LINE = "ready"
TIMES_LISTED = 200  # failure times kept per list (the counts are complete)
# Stretches of equal outcome kept in the timeline: a failover is a handful;
# only a service flapping at the probe's rate would reach this.
TIMELINE_SEGMENTS = 2000

# Set from signal handlers: SIGTERM ends the loop early but still reports
# (a benchmark stops the probe when the change it measures is done);
# SIGUSR1 records when the fault happened (time.monotonic()).
_stop = False
_fault_at: Optional[float] = None


def _request_stop(*_: object) -> None:
    global _stop
    _stop = True


def _mark_fault(*_: object) -> None:
    global _fault_at
    if _fault_at is None:
        _fault_at = time.monotonic()


REQUEST = b"GET / HTTP/1.0\r\n\r\n"
# A reply longer than this is no stand-in's answer: a failure, not a memory sink.
MAX_REPLY = 65536


def parse_reply(reply: bytes) -> str | None:
    """The body of a 200 reply (the backend's name and the relaying node), else None."""
    head, _, body = reply.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200"):
        return None
    return body.decode(errors="replace").strip() or None


def probe_once(host: str, port: int, timeout_s: float) -> str | None:
    """The backend's reply on success, None on any failure."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(REQUEST)
            reply = b""
            while len(reply) <= MAX_REPLY:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                reply += chunk
            else:
                return None
    except OSError:
        return None
    return parse_reply(reply)


class _Request:
    """One request of the overlapping loop, on a non-blocking socket: connect, send, read to the end."""

    def __init__(self, host: str, port: int, started: float, timeout_s: float):
        self.started, self.deadline = started, started + timeout_s
        self.ended: float | None = None
        self.reply: str | None = None
        self.sent = False
        self.received = b""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        error = self.sock.connect_ex((host, port))
        if error not in (0, errno.EINPROGRESS):
            self.finish(time.monotonic(), None)

    @property
    def done(self) -> bool:
        return self.ended is not None

    def advance(self, now: float) -> None:
        """The socket is ready: finish connecting and send, or read what came."""
        try:
            if not self.sent:
                error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    return self.finish(now, None)
                self.sock.sendall(REQUEST)  # 18 bytes: a fresh socket's buffer takes them at once
                self.sent = True
                return None
            chunk = self.sock.recv(4096)
        except OSError:
            return self.finish(now, None)
        if chunk:
            self.received += chunk
            if len(self.received) > MAX_REPLY:
                self.finish(now, None)
            return None
        return self.finish(now, parse_reply(self.received))

    def finish(self, now: float, reply: str | None) -> None:
        if self.ended is None:
            self.ended, self.reply = now, reply
            self.sock.close()


def split_reply(reply: str) -> tuple[str, str]:
    """'kube-mast01 via 192.168.4.21' -> (backend, relaying node address)."""
    name, _, via = reply.partition(" via ")
    return name, via


class Ledger:
    """What the probe saw, split at the fault (the module docstring defines
    each figure). Times are time.monotonic() values."""

    def __init__(self, confirm_s: float):
        self.confirm_s = confirm_s
        self.probes = 0
        self.failures = 0
        self.good_in_a_row = 0
        self.backends: dict[str, int] = {}
        # Which node relayed the answers: the first, when another first
        # answered, and the last before the fault.
        self.first_via: str | None = None
        self.moved_at: float | None = None
        self.moved_to: str | None = None
        self.via_before_fault: str | None = None
        self.other_node_at: float | None = None
        # Every change of the relaying node: [start of the first answer via the new one, its address].
        self.via_changes: list[list] = []
        self.last_via: str | None = None
        # Split at the fault.
        self.failed_before: list[float] = []
        self.failures_after = 0
        self.first_failure_after: float | None = None
        self.candidate: float | None = None  # start of the request that may be R
        self.recovered: float | None = None  # start of R, once confirmed
        self.failed_after_recovery: list[float] = []
        self.first_answered_after_outage: float | None = None
        # [first start, last end, answered, count, after the fault]
        self.segments: list[list] = []
        self.segments_dropped = 0

    @property
    def outage_failures(self) -> int:
        """Failures after the fault and before the confirmed recovery."""
        return self.failures_after - len(self.failed_after_recovery)

    def _extend_timeline(self, started: float, ended: float, answered: bool, after: bool) -> None:
        last = self.segments[-1] if self.segments else None
        if last is not None and last[2] == answered and last[4] == after:
            last[1] = ended
            last[3] += 1
        elif len(self.segments) < TIMELINE_SEGMENTS:
            self.segments.append([started, ended, answered, 1, after])
        else:
            self.segments_dropped += 1

    def record(self, started: float, ended: float, reply: str | None, fault_at: float | None) -> None:
        self.probes += 1
        after = fault_at is not None and ended > fault_at
        self._extend_timeline(started, ended, reply is not None, after)
        if reply is None:
            self.failures += 1
            self.good_in_a_row = 0
            if not after:
                self.failed_before.append(started)
            elif self.recovered is not None:
                self.failures_after += 1
                self.failed_after_recovery.append(started)
            else:
                self.failures_after += 1
                if self.first_failure_after is None:
                    self.first_failure_after = started
                self.candidate = None
            return
        self.good_in_a_row += 1
        name, via = split_reply(reply)
        self.backends[name] = self.backends.get(name, 0) + 1
        if self.last_via is not None and via != self.last_via and len(self.via_changes) < TIMES_LISTED:
            self.via_changes.append([started, via])
        self.last_via = via
        if self.first_via is None:
            self.first_via = via
        elif via != self.first_via and self.moved_at is None:
            self.moved_at, self.moved_to = started, via
        if not after:
            self.via_before_fault = via
            return
        if self.first_answered_after_outage is None and self.first_failure_after is not None:
            self.first_answered_after_outage = started
        if self.other_node_at is None and self.via_before_fault is not None and via != self.via_before_fault:
            self.other_node_at = started
        if self.recovered is None and started >= fault_at:
            if self.candidate is None:
                self.candidate = started
            if ended - self.candidate >= self.confirm_s:
                self.recovered = self.candidate

    def recovered_after_outage(self) -> bool:
        """What --stop-after-recovery waits for (then --min-after-fault-s)."""
        return self.recovered is not None and self.outage_failures > 0

    def report(self, start: float, end: float, fault_at: float | None) -> dict:
        def since_start(t: float | None) -> float | None:
            return None if t is None else round(t - start, 3)

        def since_fault(t: float | None) -> float | None:
            return None if t is None or fault_at is None else round(t - fault_at, 3)

        zero = start if fault_at is None else fault_at
        timeline = [[round(a - zero, 3), round(b - zero, 3), int(ok), n] for a, b, ok, n, _ in self.segments]

        result = {
            "probes": self.probes,
            "failures": self.failures,
            "elapsedS": round(end - start, 3),
            "backends": self.backends,
            "servedVia": self.first_via,
            "movedS": since_start(self.moved_at),
            "movedTo": self.moved_to,
            "faultMarked": fault_at is not None,
            "faultS": since_start(fault_at),
            "failuresBeforeFault": None,
            "failuresBeforeFaultAtS": None,
            "failuresAfterFault": None,
            "firstFailureAfterFaultS": None,
            "unavailableS": None,
            "recoveryConfirmed": False,
            "unavailableAtLeastS": None,
            "failuresAfterRecovery": None,
            "failuresAfterRecoveryAtS": None,
            "vipMovedS": None,
            "firstAnsweredAfterOutageS": None,
            "timelineZero": "start" if fault_at is None else "fault",
            "timeline": timeline,
            "timelineTruncated": self.segments_dropped > 0,
            "viaChanges": [[round(t - zero, 3), via] for t, via in self.via_changes],
        }
        if fault_at is None:
            return result
        result.update(
            failuresBeforeFault=len(self.failed_before),
            failuresBeforeFaultAtS=[since_fault(t) for t in self.failed_before[:TIMES_LISTED]],
            failuresAfterFault=self.failures_after,
            firstFailureAfterFaultS=since_fault(self.first_failure_after),
            recoveryConfirmed=self.recovered is not None,
            failuresAfterRecovery=len(self.failed_after_recovery),
            failuresAfterRecoveryAtS=[since_fault(t) for t in self.failed_after_recovery[:TIMES_LISTED]],
            vipMovedS=since_fault(self.other_node_at),
            firstAnsweredAfterOutageS=since_fault(self.first_answered_after_outage),
            viaBeforeFault=self.via_before_fault,
        )
        if self.recovered is not None:
            result["unavailableS"] = since_fault(self.recovered) if self.outage_failures else 0.0
        elif self.outage_failures:
            result["unavailableAtLeastS"] = since_fault(self.candidate if self.candidate is not None else end)
        return result


def run(
    host: str,
    port: int,
    interval_s: float,
    duration_s: float,
    timeout_s: float,
    stop_after_recovery: bool,
    confirm_s: float = 1.0,
    ready_after: int = 5,
    min_after_fault_s: float = 0.0,
    overlap: bool = False,
) -> dict:
    start = time.monotonic()
    started_at = time.time()
    ledger = Ledger(confirm_s)
    said_ready = False

    def after_each() -> bool:
        """Say ready once armed; True when the run may end (recovered, and long enough after the fault)."""
        nonlocal said_ready
        if not said_ready and ledger.good_in_a_row >= ready_after:
            print(READY_LINE, file=sys.stderr, flush=True)
            said_ready = True
        return (
            stop_after_recovery
            and ledger.recovered_after_outage()
            and time.monotonic() - _fault_at >= min_after_fault_s
        )

    if overlap:
        _run_overlapping(host, port, interval_s, duration_s, timeout_s, start, ledger, after_each)
    else:
        next_at = start
        while time.monotonic() - start < duration_s and not _stop:
            began = time.monotonic()
            reply = probe_once(host, port, timeout_s)
            ledger.record(began, time.monotonic(), reply, _fault_at)
            if after_each():
                break
            next_at += interval_s
            if not _stop:
                time.sleep(max(0.0, next_at - time.monotonic()))
    result = ledger.report(start, time.monotonic(), _fault_at)
    return {"target": f"{host}:{port}", "startedAt": round(started_at, 3), "overlap": overlap, **result}


def _run_overlapping(
    host: str, port: int, interval_s: float, duration_s: float, timeout_s: float, start: float, ledger: Ledger,
    after_each: Callable[[], bool],
) -> None:
    """A request begins every interval whether or not the ones before it have ended (at most timeout / interval of
    them wait at once), so while requests time out (a dead holder's address answers nothing) the first answer
    after the recovery is seen within an interval, not after the timeout of the request under way. The ledger
    takes the outcomes in the order the requests began, as the one-at-a-time loop gives them, so every figure
    means what it means there."""
    selector = selectors.DefaultSelector()
    waiting: collections.deque[_Request] = collections.deque()  # by start, until recorded
    next_at = start
    try:
        while not _stop:
            now = time.monotonic()
            if now >= next_at and now - start < duration_s:
                request = _Request(host, port, now, timeout_s)
                waiting.append(request)
                if not request.done:
                    selector.register(request.sock, selectors.EVENT_WRITE, request)
                next_at += interval_s
            elif now - start >= duration_s and not waiting:
                break
            pending = [r for r in waiting if not r.done]
            launching = time.monotonic() - start < duration_s
            wake = min(([next_at] if launching else []) + [r.deadline for r in pending], default=next_at)
            events = selector.select(max(0.0, wake - time.monotonic())) if pending else []
            for key, _ in events:
                request = key.data
                request.advance(time.monotonic())
                if request.done:
                    selector.unregister(key.fileobj)
                elif request.sent and key.events != selectors.EVENT_READ:
                    selector.modify(request.sock, selectors.EVENT_READ, request)
            now = time.monotonic()
            for request in pending:
                if not request.done and now >= request.deadline:
                    selector.unregister(request.sock)
                    request.finish(now, None)
            finished = False
            while waiting and waiting[0].done:
                request = waiting.popleft()
                ledger.record(request.started, request.ended, request.reply, _fault_at)
                finished = after_each() or finished
            if finished:
                break
            if not pending and not waiting and launching:
                time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        # Requests still under way when the run ends (stopped, or ended after a recovery) have no outcome: not counted.
        for request in waiting:
            if not request.done:
                request.finish(time.monotonic(), None)
        selector.close()


class ProbeProcess:
    """The caller's side of a running probe (`LabStack.start_probe` starts
    one in the lab's namespace): wait until it is armed, mark the fault,
    collect its report. A context manager: leaving it ends the probe."""

    def __init__(self, args: list[str], cwd: Path | str | None = None):
        self.args = args
        self.fault_at: float | None = None  # time.time() of the mark
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._ready = threading.Event()
        self.proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self._stdout, False), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self._stderr, True), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, lines: list[str], says_ready: bool) -> None:
        for line in stream:
            lines.append(line)
            if says_ready and line.strip() == READY_LINE:
                self._ready.set()

    def __enter__(self) -> "ProbeProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout_s: float = 30) -> None:
        """Until the probe has been answered --ready-after times in a row."""
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(
                    f"the probe was not answered {timeout_s:.0f} s after it started ({' '.join(self.args)}): "
                    f"{''.join(self._stderr)[-2000:] or 'no output'}"
                )

    def fault(self) -> float:
        """Mark the fault: call it the instant before causing it. Returns the
        wall-clock time of the mark."""
        if not self._ready.is_set():
            raise RuntimeError("the probe is not armed yet: wait_ready() before marking the fault")
        self.fault_at = time.time()
        os.kill(self.proc.pid, FAULT_SIGNAL)
        return self.fault_at

    def finish(self, timeout_s: float) -> dict:
        """Wait for the probe to end on its own; its report."""
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.close()
            raise RuntimeError(f"the probe did not end within {timeout_s:.0f} s") from None
        for reader in self._readers:
            reader.join(timeout=10)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the probe failed ({self.proc.returncode}): {''.join(self._stderr)[-2000:]}")
        result = json.loads("".join(self._stdout))
        result["faultAt"] = self.fault_at
        return result

    def stop(self, timeout_s: float = 30) -> dict:
        """End the probe now (SIGTERM); its report."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.finish(timeout_s)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT")
    parser.add_argument("--interval-ms", type=int, default=20)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--timeout-ms", type=int, default=500)
    parser.add_argument("--confirm-s", type=float, default=1.0, help="answers needed after a recovery before it counts")
    parser.add_argument("--ready-after", type=int, default=5, help="answers in a row before it prints 'ready'")
    parser.add_argument(
        "--stop-after-recovery", action="store_true", help="end once the fault was marked and recovery after it confirmed"
    )
    parser.add_argument(
        "--min-after-fault-s", type=float, default=0.0, help="with --stop-after-recovery: keep probing at least this long after the fault"
    )
    parser.add_argument(
        "--overlap", action="store_true",
        help="begin a request every interval even while earlier ones wait (the window's resolution is then the "
        "interval, not the timeout)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.duration_s > 3600 or args.interval_ms < 1:
        parser.error("keep the loop bounded: --duration-s at most 3600, --interval-ms at least 1")
    if args.confirm_s < 0 or args.ready_after < 1 or args.min_after_fault_s < 0:
        parser.error("--confirm-s and --min-after-fault-s must not be negative and --ready-after at least 1")
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(FAULT_SIGNAL, _mark_fault)
    host, _, port = args.target.rpartition(":")
    result = run(
        host,
        int(port),
        args.interval_ms / 1000,
        args.duration_s,
        args.timeout_ms / 1000,
        args.stop_after_recovery,
        confirm_s=args.confirm_s,
        ready_after=args.ready_after,
        min_after_fault_s=args.min_after_fault_s,
        overlap=args.overlap,
    )
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
