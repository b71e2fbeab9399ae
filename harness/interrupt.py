"""A `pulumi up` stopped midway, the hard way, and the re-run that finishes it (the e2e tests' interruptions)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time

from harness.lab import LabStack
from harness.paths import REPO

# What Pulumi prints when the first Ctrl-C reached it (pkg/backend/cancellation_scope.go).
CANCELLING = "^C received; cancelling"
# Its exit status for a cancelled operation, printed as "error: update
# cancelled" (cmd/pulumi/cmd/exit_codes.go: ExitCancelled).
EXIT_CANCELLED = 8


def _pump(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)  # end of output


def interrupt_up_when(lab: LabStack, marker: str, timeout_s: float = 600) -> tuple[int, str]:
    """Start `pulumi up`, and once its output shows `marker`, stop it the hard
    way: Ctrl-C twice (the second one does not wait for running steps), the
    second once Pulumi said it is cancelling. Its exit status and output."""
    cmd = ["pulumi", "up", "--yes", "--skip-preview", "--non-interactive",
           "--stack", lab.stack, "--config-file", str(lab.workspace.config_file(lab.stack))]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=lab.workspace.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group: plugins and running commands with it
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []

    def read_until(text: str | None, within_s: float) -> bool:
        """Collect output until a line has `text` (None: the end); whether it came."""
        deadline = time.monotonic() + within_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                return False
            if line is None:
                return text is None
            seen.append(line)
            if text is not None and text in line:
                return True
        return False

    try:
        read_until(marker, timeout_s)
        os.killpg(proc.pid, signal.SIGINT)
        assert read_until(CANCELLING, 60), "".join(seen)[-3000:]
        os.killpg(proc.pid, signal.SIGINT)
        read_until(None, 120)
        proc.wait(timeout=30)
    finally:
        # Whatever of that run is still alive (plugins, half-run commands):
        # all in the process group this test started.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.returncode, "".join(seen)


def rerun_to_convergence(lab: LabStack, *extra: str) -> tuple[subprocess.CompletedProcess, bool]:
    """`pulumi up` after an interrupted one, and whether it took a second run: Pulumi warns about operations it saw
    start but not finish, and a run that fails with that warning is followed, as Pulumi documents, by a refresh that
    drops them and a second up. Returned: the last run, its stdout preceded by the first run's when there were two
    (the first did part of the work; `pulumi_events.step_windows` reads engine timestamps, so both read as one)."""
    rerun = lab.up(*extra, check=False)
    if rerun.returncode == 0:
        return rerun, False
    # What the failed run printed, for a test that fails later (pytest shows a failed test's output).
    print(f"[rerun] first re-run exited {rerun.returncode}; its output's end:\n{rerun.stdout[-6000:]}\n{rerun.stderr[-3000:]}")
    assert "pending" in (rerun.stdout + rerun.stderr).lower(), rerun.stdout[-3000:] + rerun.stderr[-3000:]
    lab.pulumi("refresh", "--yes", "--skip-preview", "--clear-pending-creates")
    last = lab.up(*extra)
    return subprocess.CompletedProcess(last.args, last.returncode, rerun.stdout + last.stdout, last.stderr), True
