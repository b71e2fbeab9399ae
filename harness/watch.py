"""Who holds the VIP, sampled in the background while a fault plays out."""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from harness.lab import LabStack


class HolderWatch:
    """Samples which nodes hold the VIP (over each node's SSH, which does not
    use the cluster link) in the background, until stopped."""

    def __init__(self, lab: LabStack, interval_s: float = 0.5):
        self.lab = lab
        self.interval_s = interval_s
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "HolderWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _holds(self, node: str) -> bool:
        try:
            out = self.lab.ssh(node, "ip -o -4 addr show", timeout=8)
        except subprocess.TimeoutExpired:
            return False
        return out.returncode == 0 and f" {self.lab.config['hapx:vip']}/" in out.stdout

    def _run(self) -> None:
        with ThreadPoolExecutor(len(self.lab.nodes)) as pool:
            while not self._stop.is_set():
                at = time.time()
                holds = list(pool.map(self._holds, self.lab.nodes))
                self.samples.append((at, tuple(n for n, h in zip(self.lab.nodes, holds) if h)))
                self._stop.wait(max(0.0, self.interval_s - (time.time() - at)))

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
