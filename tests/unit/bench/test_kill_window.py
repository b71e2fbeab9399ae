"""kill-haproxy's window starts at the kill on the node (its clock converted to the host's), not at the mark the
line to the node left at; never later than the clocks allow, never shorter than the probe saw from the kill."""

from bench import results
from bench.failover import PROBE_TIMEOUT_MS, kill_window_start
from harness.clock import ClockOffset

MARK = 1_800_000_000.0
# The node's clock runs 5 s ahead of the host's, known within 20 ms (and 30 ms after the run).
BEFORE = ClockOffset(offset_s=5.0, uncertainty_s=0.02, round_trip_s=0.04, samples=5, measured_at=MARK - 3)
AFTER = ClockOffset(offset_s=5.0, uncertainty_s=0.03, round_trip_s=0.06, samples=5, measured_at=MARK + 9)


def _report(first_failure=0.31, recovered=1.62, timeline=None):
    return {
        "faultAt": MARK,
        "firstFailureAfterFaultS": first_failure,
        "unavailableS": recovered,
        "timeline": timeline if timeline is not None else [[-2.0, 0.3, 1, 90], [0.31, 1.6, 0, 40], [1.62, 3.0, 1, 60]],
    }


def test_the_window_starts_at_the_kill_as_early_as_the_clocks_allow():
    # The kill landed 0.3 s after the mark on the node's clock: the window starts 0.3 s - 30 ms after the mark.
    start = kill_window_start(_report(), MARK + 5.0 + 0.3, BEFORE, AFTER)
    assert start == {"killLandedS": 0.3, "killLandedUncertaintyS": 0.03, "windowStartS": 0.27, "windowStartNote": None}


def test_the_row_window_is_from_the_kill_and_keeps_the_one_from_the_mark():
    record = {"probe": {**_report(), "probes": 200}, **kill_window_start(_report(), MARK + 5.3, BEFORE, AFTER)}
    row = results.run_row(1, record)
    assert row["unavailableS"] == 1.35 and row["scenario"]["unavailableFromMarkS"] == 1.62
    assert row["scenario"]["windowStartS"] == 0.27


def test_never_before_the_mark():
    # The clocks put the kill 10 ms before the mark (within their uncertainty): the window starts at the mark.
    assert kill_window_start(_report(), MARK + 5.0 - 0.01, BEFORE, AFTER)["windowStartS"] == 0.0


def test_a_failure_between_the_mark_and_the_kill_keeps_the_window_at_the_mark():
    timeline = [[-2.0, 0.05, 1, 90], [0.05, 0.1, 0, 1], [0.1, 0.3, 1, 10], [0.31, 1.6, 0, 40], [1.62, 3.0, 1, 60]]
    start = kill_window_start(_report(timeline=timeline), MARK + 5.3, BEFORE, AFTER)
    assert start["windowStartS"] == 0.0 and "before the kill" in start["windowStartNote"]
    assert results.run_row(1, {"probe": _report(timeline=timeline), **start})["unavailableS"] == 1.62


def test_clocks_that_put_the_kill_after_the_failures_it_caused_keep_the_window_at_the_mark():
    late = MARK + 5.0 + 0.31 + PROBE_TIMEOUT_MS / 1000 + 0.2
    start = kill_window_start(_report(), late, BEFORE, AFTER)
    assert start["windowStartS"] == 0.0 and "after the first failure" in start["windowStartNote"]


def test_a_kill_that_failed_no_request_leaves_a_zero_window():
    record = {"probe": _report(first_failure=None, recovered=0.0, timeline=[[-2.0, 3.0, 1, 150]])}
    record.update(kill_window_start(record["probe"], MARK + 5.3, BEFORE, AFTER))
    assert results.run_row(1, record)["unavailableS"] == 0.0
