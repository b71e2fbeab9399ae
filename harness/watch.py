"""Who holds the VIP, sampled in the background while a fault plays out."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from typing import Protocol

# The session of a node that went away (reset, powered off) ends within this many seconds of silence, so the watch
# logs in again once the node is back.
SERVER_ALIVE = ("-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3")

# Run by each node's python3: argv = VIP, count, interval. In /proc/net/fib_trie a local address is a leaf line
# "|-- ADDRESS" followed by "/32 host LOCAL".
REPORT_LOOP = """
import sys, time
vip, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
for _ in range(count):
    lines = [line.strip() for line in open("/proc/net/fib_trie")]
    held = any(a == "|-- " + vip and b.startswith("/32 host LOCAL") for a, b in zip(lines, lines[1:]))
    print(1 if held else 0, flush=True)
    time.sleep(interval)
"""


class WatchedLab(Protocol):
    config: dict

    @property
    def nodes(self) -> list[str]: ...

    def ssh_command(self, node: str, command: str, options: tuple[str, ...] = ()) -> list[str]: ...


class HolderWatch:
    """Samples which nodes hold the VIP, in the background, until stopped.

    Each node reports for itself, every `interval_s`, whether it holds the VIP, over one SSH session that stays open
    (the node's management port, not the cluster link). One login per node, not one per sample: under emulation a
    login costs a guest about 0.7 s of CPU, and a fresh login every 2 s took a third of the survivor's CPU in the
    very seconds it was taking over. A node that has not reported for
    `stale_s` (down, rebooting: its session has ended and is opened again, at most once a second) counts as not
    holding the VIP, as a node that did not answer did before."""

    def __init__(self, lab: WatchedLab, interval_s: float = 0.5, max_s: float = 1800, ready_timeout_s: float = 60):
        self.lab = lab
        self.interval_s = interval_s
        self.max_s = max_s
        self.ready_timeout_s = ready_timeout_s
        # A report holds until the next one is due, and a little longer (a report may come late; a gap shows as no
        # holder, never as two). Not much longer: a reset node's last "1" must no longer count when the survivor's
        # first "1" comes, which is at least the fencing's confirmation and the VIP's start after the reset (0.69 s
        # and more between the fence agent's return and the started VIP, in the link cuts of docs/benchmarks.md).
        self.stale_s = interval_s + max(0.15, 0.2 * interval_s)
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self.logins: dict[str, int] = {n: 0 for n in lab.nodes}
        self._latest: dict[str, tuple[float, bool]] = {}
        self._sessions: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._followers = [threading.Thread(target=self._follow, args=(n,), daemon=True) for n in lab.nodes]
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def report_command(self) -> str:
        """What runs on each node: a bounded Python loop (one interpreter start, then a file read per interval;
        `ip` and `sleep` forked each time cost about 90 ms of emulated CPU) that prints 1 when the VIP is one of the
        node's own addresses (a `/32 host LOCAL` entry in the kernel's routing trie) and 0 otherwise."""
        count = int(self.max_s / self.interval_s) + 1
        return f"python3 -c {shlex.quote(REPORT_LOOP)} {self.lab.config['hapx:vip']} {count} {self.interval_s}"

    def __enter__(self) -> "HolderWatch":
        for follower in self._followers:
            follower.start()
        # Sampling starts once every node has reported (or the wait ran out): a first sample before any report
        # would show no holder, and a soak would count the first report as a move.
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            with self._lock:
                if all(n in self._latest for n in self.lab.nodes):
                    break
            time.sleep(0.1)
        self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            if session.poll() is None:
                # Its own process group (started so): whatever it started goes with it.
                os.killpg(session.pid, signal.SIGTERM)
        for thread in (*self._followers, self._sampler):
            if thread.is_alive():
                thread.join(timeout=30)

    def _follow(self, node: str) -> None:
        deadline = time.monotonic() + self.max_s
        command = self.lab.ssh_command(node, self.report_command(), options=SERVER_ALIVE)
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self._stop.is_set():
                    return
                session = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    start_new_session=True,
                )
                self._sessions[node] = session
                self.logins[node] += 1
            assert session.stdout is not None
            for line in session.stdout:
                with self._lock:
                    self._latest[node] = (time.monotonic(), line.strip() == "1")
            session.wait()
            self._stop.wait(1.0)

    def _sample(self) -> None:
        while not self._stop.is_set():
            at, now = time.time(), time.monotonic()
            with self._lock:
                latest = dict(self._latest)
            holders = tuple(
                n for n in self.lab.nodes if n in latest and latest[n][1] and now - latest[n][0] <= self.stale_s
            )
            self.samples.append((at, holders))
            self._stop.wait(self.interval_s)

    @property
    def max_holders(self) -> int:
        return max((len(h) for _, h in self.samples), default=0)

    def dual_seconds(self) -> float:
        """Time covered by samples in which more than one node held the VIP."""
        total = 0.0
        for (at, holders), (nxt, _) in zip(self.samples, self.samples[1:]):
            if len(holders) > 1:
                total += nxt - at
        return round(total, 2)
