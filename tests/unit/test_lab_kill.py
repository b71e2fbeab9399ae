"""The lab's haproxy kill (harness.lab.KILL_UNIT_PROCESSES), run here on stand-in processes: the unit's processes are
read at the kill, one that exited in between does not fail it, and a unit with nothing left to kill does."""

from __future__ import annotations

import subprocess

from harness.lab import KILL_UNIT_PROCESSES


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
