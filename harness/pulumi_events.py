"""What `pulumi up --json` says about when each step ran (its engine events)."""

from __future__ import annotations

import json

# The ops of a step that does the resource's work. Not "delete-replaced": a replaced resource's old copy is deleted
# at the end of the up, or (delete-before-replace, and whatever goes with such a resource) before its replacement is
# created, which for most of them deletes nothing on the node.
WORK_OPS = ("create", "create-replacement", "update", "refresh")


def step_windows(up_json: str, since: float = 0.0) -> dict[str, tuple[float, float]]:
    """Each resource's step in an `up --json` output: (start, end), engine timestamps (whole seconds) minus `since`,
    by resource name: the events of its create, update or replacement's create. Resources the up did nothing to
    are left out."""
    times: dict[str, list[float]] = {}
    for line in up_json.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        for kind in ("resourcePreEvent", "resOutputsEvent"):
            if kind in event and event[kind]["metadata"].get("op") in WORK_OPS:
                name = event[kind]["metadata"]["urn"].rsplit("::", 1)[-1]
                times.setdefault(name, []).append(event["timestamp"] - since)
    return {name: (min(ts), max(ts)) for name, ts in times.items()}
