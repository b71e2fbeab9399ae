"""The lab's haproxy kill (harness.lab.KILL_UNIT_PROCESSES), run here on stand-in processes: the unit's processes are
read at the kill, one that exited in between does not fail it, and a unit with nothing left to kill does. Its
priming check (UNIT_HAS_PROCESSES) runs on a kernel-made file, which like a cgroup file has size 0."""

from __future__ import annotations

import subprocess

import os

from harness.lab import KILL_UNIT_PROCESSES, UNIT_HAS_PROCESSES


def _kill(procs_file) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", f"procs={procs_file}; {KILL_UNIT_PROCESSES}"], capture_output=True, text=True, timeout=30)


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
