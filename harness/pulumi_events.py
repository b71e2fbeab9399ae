"""What `pulumi up --json` says about when each step ran (its engine events)."""

from __future__ import annotations

import json


def step_windows(up_json: str, since: float = 0.0) -> dict[str, tuple[float, float]]:
    """Each resource's step in an `up --json` output: (start, end), engine timestamps (whole seconds) minus `since`,
    by resource name. Resources the up only looked at (`same`) are in it too, with a zero-length window."""
    times: dict[str, list[float]] = {}
    for line in up_json.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        for kind in ("resourcePreEvent", "resOutputsEvent"):
            if kind in event:
                name = event[kind]["metadata"]["urn"].rsplit("::", 1)[-1]
                times.setdefault(name, []).append(event["timestamp"] - since)
    return {name: (min(ts), max(ts)) for name, ts in times.items()}
