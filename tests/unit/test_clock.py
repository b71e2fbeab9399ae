"""The guest-host clock offset (harness/clock.py): the arithmetic on
hand-made exchanges, and measure_offset over a real pipe to a local
"guest" whose clock is the host's, or the host's shifted."""

from __future__ import annotations

import sys

import pytest

from harness.clock import GUEST_CLOCK_LOOP, ClockOffset, ClockSample, best_offset, combined_uncertainty, measure_offset


def test_the_offset_is_taken_at_the_midpoint_of_the_round_trip():
    # Sent at 100.0, answered 0.2 s later; the guest said 150.3 (its clock
    # read somewhere in [100.0, 100.2] of the host's).
    sample = ClockSample(host_sent=100.0, guest=150.3, host_received=100.2)
    assert sample.round_trip_s == pytest.approx(0.2)
    assert sample.offset_s == pytest.approx(50.2)


def test_the_shortest_round_trip_wins_and_sets_the_uncertainty():
    slow = ClockSample(100.0, 150.9, 101.0)  # the guest was busy: 1 s
    fast = ClockSample(102.0, 152.05, 102.02)
    offset = best_offset([slow, fast])
    assert offset.offset_s == pytest.approx(50.04)
    assert offset.uncertainty_s == pytest.approx(0.01)
    assert offset.round_trip_s == pytest.approx(0.02)
    assert offset.samples == 2 and offset.measured_at == pytest.approx(102.01)
    # A guest time converts to the host's clock by taking the offset off.
    assert offset.to_host(160.04) == pytest.approx(110.0)


def test_an_impossible_or_missing_sample_is_refused():
    with pytest.raises(ValueError, match="no clock samples"):
        best_offset([])
    with pytest.raises(ValueError, match="before it was sent"):
        best_offset([ClockSample(100.0, 100.0, 99.0)])


def test_drift_between_two_measurements_widens_the_uncertainty():
    before = ClockOffset(offset_s=50.0, uncertainty_s=0.01, round_trip_s=0.02, samples=5, measured_at=0.0)
    after = ClockOffset(offset_s=50.03, uncertainty_s=0.02, round_trip_s=0.04, samples=5, measured_at=20.0)
    assert combined_uncertainty(before, None) == pytest.approx(0.01)
    assert combined_uncertainty(before, after) == pytest.approx(0.05)


def test_a_guest_on_the_hosts_clock_measures_zero_within_its_uncertainty():
    offset = measure_offset(["sh", "-c", GUEST_CLOCK_LOOP], samples=5)
    assert offset.samples == 5
    assert 0 < offset.uncertainty_s < 0.1, offset
    assert abs(offset.offset_s) <= offset.uncertainty_s + 0.002, offset  # date's own start-up


SHIFTED_GUEST = "import sys, time\nfor _ in sys.stdin:\n    print(f'{time.time() - 37.5:.6f}', flush=True)\n"


def test_a_guest_37_5_s_behind_is_measured_so():
    offset = measure_offset([sys.executable, "-c", SHIFTED_GUEST], samples=4)
    assert offset.offset_s == pytest.approx(-37.5, abs=offset.uncertainty_s + 0.001), offset
    assert offset.as_json() == {"offsetS": round(offset.offset_s, 6), "uncertaintyS": round(offset.uncertainty_s, 6),
                                "roundTripS": round(offset.round_trip_s, 6), "samples": 4,
                                "measuredAt": round(offset.measured_at, 6)}  # fmt: skip


def test_a_guest_that_never_answers_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="did not answer within 1 s"):
        measure_offset(["sleep", "30"], samples=2, timeout_s=1)
    with pytest.raises(RuntimeError, match="clock session ended"):
        measure_offset(["sh", "-c", "echo refused >&2"], samples=2)
