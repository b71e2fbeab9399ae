"""The lab's haproxy kill (harness.lab.KILL_UNIT_PROCESSES), run here on stand-in processes: the unit's processes are
read at the kill, one that exited in between does not fail it, and a unit with nothing left to kill does. Its
priming check (UNIT_HAS_PROCESSES) runs on a kernel-made file, which like a cgroup file has size 0. The primed
session (LabStack.primed_haproxy_kill) runs as a local shell in place of the SSH login: it kills only when fired,
after the mark."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from harness.lab import KILL_UNIT_PROCESSES, UNIT_HAS_PROCESSES, LabStack


def _kill(procs_file) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"procs={procs_file}; {KILL_UNIT_PROCESSES}"], capture_output=True, text=True, timeout=30)


def test_a_process_gone_before_the_kill_does_not_fail_it(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        procs = tmp_path / "cgroup.procs"
        procs.write_text(f"{gone.pid}\n{alive.pid}\n")
        result = _kill(procs)
        assert result.returncode == 0, result.stderr
        assert alive.wait(timeout=10) == -9
    finally:
        if alive.poll() is None:
            alive.kill()


def test_nothing_left_to_kill_fails(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    procs = tmp_path / "cgroup.procs"
    procs.write_text(f"{gone.pid}\n")
    assert _kill(procs).returncode == 1


def _primed(procs_file) -> bool:
    return subprocess.run(["sh", "-c", f"procs={procs_file}; {UNIT_HAS_PROCESSES}"], timeout=30).returncode == 0


def test_a_kernel_made_file_of_size_zero_with_content_primes(tmp_path):
    # cgroup.procs reports size 0 like this procfs file: `[ -s ]` never primed.
    kernel_made = f"/proc/{os.getpid()}/status"
    assert os.stat(kernel_made).st_size == 0
    assert _primed(kernel_made)
    empty = tmp_path / "cgroup.procs"
    empty.write_text("")
    assert not _primed(empty)


class _LocalKillLab(LabStack):
    """The primed kill's script as the lab's nodes run it, with a stand-in for the unit's cgroup.procs, in a local
    shell instead of an SSH login."""

    procs_file: Path

    def ssh_command(self, node, command, options=()):
        return ["bash", "-c", f"procs={self.procs_file} && {UNIT_HAS_PROCESSES} && echo primed && read _ && {KILL_UNIT_PROCESSES}"]


def _local_kill_lab(procs_file: Path) -> _LocalKillLab:
    lab = _LocalKillLab(workspace=None, stack="t", namespace="t", state_dir=Path("/nonexistent"), config={})
    lab.procs_file = procs_file
    return lab


def test_a_primed_kill_kills_only_when_fired_and_after_the_mark(tmp_path):
    haproxy = subprocess.Popen(["sleep", "60"])
    try:
        procs = tmp_path / "cgroup.procs"
        procs.write_text(f"{haproxy.pid}\n")
        seen_at_mark = []
        with _local_kill_lab(procs).primed_haproxy_kill("hapx-node01") as fire:
            time.sleep(0.3)  # primed, not fired: the process lives
            assert haproxy.poll() is None
            killed_at = fire(lambda: seen_at_mark.append((haproxy.poll(), time.time())))
            returned_at = time.time()
        assert seen_at_mark[0][0] is None  # alive at the mark
        assert haproxy.wait(timeout=10) == -9
        # The "node's" clock at the kill (this host's here): after the mark, before fire returned.
        assert seen_at_mark[0][1] <= killed_at <= returned_at
    finally:
        if haproxy.poll() is None:
            haproxy.kill()


def test_a_primed_kill_left_unfired_kills_nothing_and_says_so(tmp_path):
    haproxy = subprocess.Popen(["sleep", "60"])
    try:
        procs = tmp_path / "cgroup.procs"
        procs.write_text(f"{haproxy.pid}\n")
        with pytest.raises(RuntimeError, match="never fired"):
            with _local_kill_lab(procs).primed_haproxy_kill("hapx-node01"):
                pass
        with pytest.raises(ValueError):
            with _local_kill_lab(procs).primed_haproxy_kill("hapx-node01"):
                raise ValueError("the probe did not start")
        time.sleep(0.3)
        assert haproxy.poll() is None
    finally:
        haproxy.kill()
        haproxy.wait()


def test_a_unit_with_no_process_cannot_be_primed(tmp_path):
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    with pytest.raises(RuntimeError, match="could not get ready to kill haproxy"):
        with _local_kill_lab(procs).primed_haproxy_kill("hapx-node01"):
            pass
