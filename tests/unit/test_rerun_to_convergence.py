"""harness.interrupt.rerun_to_convergence with a stand-in lab: what the e2e tests read after an interrupted up."""

import subprocess

import pytest

from harness.interrupt import rerun_to_convergence


class _Lab:
    def __init__(self, ups: list[subprocess.CompletedProcess]):
        self.ups, self.calls = list(ups), []

    def up(self, *extra, check=True):
        self.calls.append(("up", *extra))
        return self.ups.pop(0)

    def pulumi(self, *args, **kwargs):
        self.calls.append(args)


def _run(code: int, out: str) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(["pulumi", "up"], code, out, "")


def test_a_first_run_that_converges_is_returned_as_it_is():
    lab = _Lab([_run(0, "A\n")])
    rerun, second = rerun_to_convergence(lab, "--json")
    assert (rerun.stdout, second, lab.calls) == ("A\n", False, [("up", "--json")])


def test_after_a_failed_run_with_pending_operations_both_runs_output_is_returned():
    # The first run did part of the work before it failed: its events must not be lost to the caller.
    lab = _Lab([_run(255, '{"first": 1}\nwarning: ... 1 pending operations ...\n'), _run(0, '{"second": 2}\n')])
    rerun, second = rerun_to_convergence(lab, "--json")
    assert second is True and rerun.returncode == 0
    assert rerun.stdout == '{"first": 1}\nwarning: ... 1 pending operations ...\n{"second": 2}\n'
    assert lab.calls[1] == ("refresh", "--yes", "--skip-preview", "--clear-pending-creates")


def test_a_failed_run_without_pending_operations_is_an_error():
    with pytest.raises(AssertionError):
        rerun_to_convergence(_Lab([_run(1, "error: something else\n")]))
