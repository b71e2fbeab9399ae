"""The VIP probe's accounting (harness/probe.py), run as the lab runs it (a
process, marked through ProbeProcess) against a real TCP service on
127.0.0.1 that the test stops and starts: refused while stopped."""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
import time

import pytest

from harness.paths import REPO
from harness.probe import ProbeProcess


class _Reply(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(4096)
        silent_for = self.server.silent_until - time.monotonic()
        if silent_for > 0:
            # Like a holder that answers nothing: the client waits out its own timeout.
            time.sleep(silent_for + 1.0)
            return
        self.request.sendall(f"HTTP/1.0 200 OK\r\n\r\nstand-in via {self.server.via}\n".encode())


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class StandIn:
    """A service that answers like the lab's stand-ins, on one port, and can
    be stopped (connections refused) and started again."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server: _Server | None = None

    def start(self, via: str = "node-a") -> None:
        self.server = _Server(("127.0.0.1", self.port), _Reply)
        self.server.via = via
        self.server.silent_until = 0.0
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def silence(self, seconds: float) -> None:
        """Accept but answer nothing for `seconds` (requests begun then time out), then answer again."""
        self.server.silent_until = time.monotonic() + seconds
        time.sleep(seconds)

    def outage(self, seconds: float, via: str = "node-a") -> None:
        self.stop()
        time.sleep(seconds)
        self.start(via)


@pytest.fixture
def service():
    stand_in = StandIn()
    stand_in.start()
    yield stand_in
    stand_in.stop()


def start_probe(port: int, *extra: str, duration_s: float = 30) -> ProbeProcess:
    args = [sys.executable, "-m", "harness.probe", "--target", f"127.0.0.1:{port}",
            "--interval-ms", "20", "--timeout-ms", "300", "--duration-s", str(duration_s), *extra]  # fmt: skip
    probe = ProbeProcess(args, cwd=REPO)
    probe.wait_ready(timeout_s=20)
    return probe


def test_a_failure_before_the_fault_is_not_the_window(service):
    with start_probe(service.port, "--stop-after-recovery") as probe:
        # A blip before the fault, and a recovery from it: the run must not
        # end here, nor measure this.
        service.outage(0.3)
        time.sleep(0.5)
        probe.fault()
        service.outage(1.0, via="node-b")
        result = probe.finish(timeout_s=30)
    assert result["faultMarked"], result
    assert result["failuresBeforeFault"] >= 3, result
    assert all(t < 0 for t in result["failuresBeforeFaultAtS"]), result
    # The window runs from the fault over the whole second-long outage.
    assert result["recoveryConfirmed"], result
    assert 0.95 <= result["unavailableS"] < 2.0, result
    assert result["firstFailureAfterFaultS"] < 0.3, result
    assert result["failuresAfterFault"] >= 10, result
    assert result["failuresAfterRecovery"] == 0, result
    # Stopped after the confirmation (1 s of answers), not before (each
    # figure is rounded to the millisecond).
    assert result["elapsedS"] - result["faultS"] >= result["unavailableS"] + 1.0 - 0.002, result
    # The answers after the outage came through the other node.
    assert result["vipMovedS"] == pytest.approx(result["unavailableS"], abs=0.1), result


def test_a_blip_within_confirmation_extends_the_window_one_after_it_is_counted(service):
    with start_probe(service.port) as probe:
        probe.fault()
        service.outage(0.4)
        time.sleep(0.3)  # answered again, but not for long enough
        service.outage(0.4)
        time.sleep(1.6)  # recovered and confirmed
        service.outage(0.3)  # a later blip
        time.sleep(0.3)
        result = probe.stop()
    assert result["recoveryConfirmed"], result
    # Both outages and the short answered gap between them are the window.
    assert 1.05 <= result["unavailableS"] < 2.2, result
    assert result["failuresAfterRecovery"] >= 3, result
    assert all(t >= result["unavailableS"] + 1.0 - 0.002 for t in result["failuresAfterRecoveryAtS"]), result
    assert result["failuresAfterFault"] > result["failuresAfterRecovery"], result


def test_without_a_marked_fault_there_is_no_window(service):
    with start_probe(service.port, "--stop-after-recovery") as probe:
        service.outage(0.3)
        time.sleep(1.5)
        # Recovered from a failure, but no fault was marked: still running.
        assert probe.proc.poll() is None
        result = probe.stop()
    assert result["failures"] >= 3, result
    assert not result["faultMarked"], result
    assert result["unavailableS"] is None and result["failuresBeforeFault"] is None, result


def test_a_run_that_ends_before_recovery_reports_no_window(service):
    with start_probe(service.port) as probe:
        probe.fault()
        service.stop()
        time.sleep(0.5)
        result = probe.stop()
    assert not result["recoveryConfirmed"], result
    assert result["unavailableS"] is None, result
    assert result["unavailableAtLeastS"] >= 0.4, result


def test_a_fault_that_costs_nothing_is_a_zero_window(service):
    with start_probe(service.port) as probe:
        probe.fault()
        time.sleep(1.5)
        result = probe.stop()
    assert result["recoveryConfirmed"] and result["failuresAfterFault"] == 0, result
    assert result["unavailableS"] == 0.0, result


def test_the_probe_is_armed_only_once_answered(service):
    service.stop()  # nothing listens: refused
    args = [sys.executable, "-m", "harness.probe", "--target", f"127.0.0.1:{service.port}", "--duration-s", "5"]
    probe = ProbeProcess(args, cwd=REPO)
    with pytest.raises(RuntimeError, match="not armed"):
        probe.fault()
    with pytest.raises(RuntimeError, match="not answered"):
        probe.wait_ready(timeout_s=1)
    assert probe.proc.poll() is not None  # and it was ended


def test_the_timeline_holds_every_request_split_at_the_fault(service):
    with start_probe(service.port) as probe:
        time.sleep(0.3)
        probe.fault()
        service.outage(0.5, via="node-b")
        time.sleep(1.5)
        result = probe.stop()
    timeline = result["timeline"]
    assert result["timelineZero"] == "fault" and not result["timelineTruncated"], result
    # Every request is in exactly one stretch, in order, none spanning the fault.
    assert sum(n for *_, n in timeline) == result["probes"], timeline
    assert all(a <= b for a, b, _, _ in timeline), timeline
    assert all(b1 <= a2 for (_, b1, _, _), (a2, _, _, _) in zip(timeline, timeline[1:])), timeline
    assert sum(n for _, _, ok, n in timeline if not ok) == result["failures"], timeline
    # Answered before the fault, then failed from about the fault, then answered again.
    outcomes = [ok for _, _, ok, _ in timeline]
    assert outcomes == [1, 1, 0, 1] or outcomes == [1, 0, 1], timeline
    (failed,) = [seg for seg in timeline if not seg[2]]
    assert failed[0] == result["firstFailureAfterFaultS"], (failed, result)
    assert timeline[0][0] < -0.2 and timeline[-1][1] > 1.4, timeline
    # The first answered request after the outage began where the failed stretch ended.
    assert result["firstAnsweredAfterOutageS"] == timeline[-1][0], result
    assert result["firstAnsweredAfterOutageS"] >= failed[1] - 0.001, result
    assert result["unavailableS"] == result["firstAnsweredAfterOutageS"], result


def test_without_a_fault_the_timeline_counts_from_the_start(service):
    with start_probe(service.port) as probe:
        service.outage(0.2)
        time.sleep(0.3)
        result = probe.stop()
    assert result["timelineZero"] == "start", result
    assert result["timeline"][0][0] >= 0 and [ok for *_, ok, _ in result["timeline"]] == [1, 0, 1], result
    assert result["firstAnsweredAfterOutageS"] is None, result


def test_the_probe_keeps_watching_after_recovery_when_asked(service):
    with start_probe(service.port, "--stop-after-recovery", "--min-after-fault-s", "3") as probe:
        probe.fault()
        service.outage(0.3)
        time.sleep(1.8)  # recovered and confirmed, yet still probing
        assert probe.proc.poll() is None
        service.outage(0.2)  # a blip after the recovery: seen, counted
        result = probe.finish(timeout_s=30)
    assert result["recoveryConfirmed"] and result["failuresAfterRecovery"] >= 2, result
    assert 3.0 <= result["elapsedS"] - result["faultS"] < 4.5, result


@pytest.mark.parametrize("overlap", [False, True])
def test_a_silent_service_is_timed_to_the_interval_only_when_requests_overlap(service, overlap):
    """A service that answers nothing for 1 s (a dead holder's address): one request at a time, each waits out
    its 300 ms timeout, so the recovery is seen up to a timeout late; overlapping, a request begins every 20 ms
    and the first one begun after the silence is answered. The requests begun late in the silence time out
    after that answer; counted in the order they began, they do not void it."""
    extra = ("--overlap",) if overlap else ()
    with start_probe(service.port, "--stop-after-recovery", *extra) as probe:
        time.sleep(0.3)
        probe.fault()
        service.silence(1.0)
        result = probe.finish(timeout_s=30)
    assert result["overlap"] is overlap, result
    assert result["recoveryConfirmed"] and result["failuresAfterRecovery"] == 0, result
    assert result["unavailableS"] >= 0.98, result
    if overlap:
        assert result["unavailableS"] < 1.1, result
        # A request every 20 ms through the silence, every one of them failed.
        assert result["failuresAfterFault"] >= 40, result
    else:
        # Whole timeouts: about three of them and the one under way at the end of the silence.
        assert 3 <= result["failuresAfterFault"] <= 5, result
