"""Probe a TCP service at a fixed rate and report when it was unavailable.

    python tools/vip_probe.py --target 192.168.4.20:6443 [--interval-ms 20]
        [--duration-s 60] [--timeout-ms 500] [--stop-after-recovery]

Each probe opens a connection, sends one HTTP request line and reads the
reply (the lab's stand-in backends answer with their name and the address
of the haproxy node that relayed it, so the probe sees the VIP move). The loop is
bounded by --duration-s. Prints one JSON object: probe count, failures, the
unavailability window (first failure to the first success after it), and
the backends seen. Run it inside the lab's network namespace
(`ip netns exec hapx-lab ...`); it only connects to --target.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time

# SIGTERM ends the loop early but still reports (a benchmark stops the probe
# when the change it measures is done).
_stop = False


def _request_stop(*_: object) -> None:
    global _stop
    _stop = True


def probe_once(host: str, port: int, timeout_s: float) -> str | None:
    """The backend's name on success, None on any failure."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = b""
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return None
    head, _, body = reply.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200"):
        return None
    return body.decode(errors="replace").strip() or None


def split_reply(reply: str) -> tuple[str, str]:
    """'kube-mast01 via 192.168.4.21' -> (backend, relaying node address)."""
    name, _, via = reply.partition(" via ")
    return name, via


def run(host: str, port: int, interval_s: float, duration_s: float, timeout_s: float, stop_after_recovery: bool) -> dict:
    start = time.monotonic()
    started_at = time.time()
    probes = failures = 0
    first_failure = recovered = None
    backends: dict[str, int] = {}
    # Which node relayed each good reply: the first one seen, and when
    # another node first answered (the VIP moved).
    first_via = moved_to = moved = None
    next_at = start
    while time.monotonic() - start < duration_s and not _stop:
        now = time.monotonic()
        name = probe_once(host, port, timeout_s)
        probes += 1
        if name is None:
            failures += 1
            if first_failure is None:
                first_failure = now - start
        else:
            name, via = split_reply(name)
            backends[name] = backends.get(name, 0) + 1
            if first_via is None:
                first_via = via
            elif via != first_via and moved is None:
                moved, moved_to = now - start, via
            if first_failure is not None and recovered is None:
                recovered = now - start
                if stop_after_recovery:
                    break
        next_at += interval_s
        if not _stop:
            time.sleep(max(0.0, next_at - time.monotonic()))
    window = None
    if first_failure is not None and recovered is not None:
        window = round(recovered - first_failure, 3)
    return {
        "target": f"{host}:{port}",
        "probes": probes,
        "failures": failures,
        "firstFailureS": None if first_failure is None else round(first_failure, 3),
        "recoveredS": None if recovered is None else round(recovered, 3),
        "unavailableS": window,
        "elapsedS": round(time.monotonic() - start, 3),
        "startedAt": round(started_at, 3),
        "backends": backends,
        "servedVia": first_via,
        "movedS": None if moved is None else round(moved, 3),
        "movedTo": moved_to,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT")
    parser.add_argument("--interval-ms", type=int, default=20)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--timeout-ms", type=int, default=500)
    parser.add_argument("--stop-after-recovery", action="store_true", help="end at the first success after a failure")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _request_stop)
    host, _, port = args.target.rpartition(":")
    if args.duration_s > 3600 or args.interval_ms < 1:
        parser.error("keep the loop bounded: --duration-s at most 3600, --interval-ms at least 1")
    result = run(host, int(port), args.interval_ms / 1000, args.duration_s, args.timeout_ms / 1000, args.stop_after_recovery)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
