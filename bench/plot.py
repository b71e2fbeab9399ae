"""Pictures of the failover benchmark, drawn from its own JSON.

    python -m bench.plot docs/bench/failover.json --out docs/bench/

One PNG per scenario (failover-<scenario>.png), WIDTH_PX x HEIGHT_PX:

- top: one row per run, grouped by profile: each stretch of answered
  requests green, of failed requests red, nothing drawn where the probe was
  not running; the fault at x = 0; markers where the survivor's journal
  shows a phase (membership, fencing done, VIP address added, VIP started,
  VRRP master) and where the probe was first answered again. A failed run is a row too, labelled "failed".
- bottom: per profile, the share of its runs whose requests in each
  BIN_S-long slot were all answered (runs with no request in a slot do not
  count there): one line per profile, where each run's recovery shows as a
  step.

x runs from X_FROM_S to X_TO_S seconds around the fault for the scenarios
with a fault; for backend-change and idle-soak it covers the whole run.
matplotlib (Agg backend) is imported here only, so the benchmark itself
runs without it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from bench.results import READABLE_VERSIONS

WIDTH_PX, HEIGHT_PX, DPI = 1200, 800, 100
X_FROM_S, X_TO_S = -2.0, 15.0
FAULT_WINDOW_SCENARIOS = ("power-off", "kill-haproxy", "link-cut")
BIN_S = 0.1
OK_COLOUR, FAILED_COLOUR = "#2e9d4f", "#d62728"
PROFILE_COLOURS = {"reference": "#7f7f7f", "hapx": "#1f77b4", "keepalived": "#ff7f0e"}
# Variants (hapx-NAME) in the order they ran: none is one of the named profiles' colours.
VARIANT_COLOURS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def profile_colours(profiles: list[str]) -> dict[str, str]:
    """A colour per profile of a document, no two alike: the named profiles keep theirs, variants take the next free
    one (before, a variant got matplotlib's first colour, hapx's own blue)."""
    colours = {p: PROFILE_COLOURS[p] for p in profiles if p in PROFILE_COLOURS}
    others = [p for p in profiles if p not in PROFILE_COLOURS]
    for index, profile in enumerate(others):
        colours[profile] = VARIANT_COLOURS[index % len(VARIANT_COLOURS)]
    return colours
# Phases marked on each run's row: key, marker, label.
PHASE_MARKERS = (
    ("membershipS", "^", "new membership"),
    ("fencingEndS", "s", "fencing done"),
    ("vipAddressS", "v", "VIP address added (IPaddr2)"),
    ("vipStartedS", "o", "VIP started (Pacemaker)"),
    ("masterS", "D", "VRRP master (keepalived)"),
    ("firstAnsweredS", "|", "first answered (probe)"),
)


def runs_of(document: dict, scenario: str) -> list[tuple[str, dict]]:
    return [(profile, row) for profile, section in document["profiles"].items() for row in section["scenarios"].get(scenario, [])]


def scenarios_of(document: dict) -> list[str]:
    seen: list[str] = []
    for section in document["profiles"].values():
        seen += [s for s in section["scenarios"] if s not in seen]
    return seen


def x_range(scenario: str, rows: list[tuple[str, dict]]) -> tuple[float, float]:
    if scenario in FAULT_WINDOW_SCENARIOS:
        return X_FROM_S, X_TO_S
    ends = [seg[1] for _, row in rows for seg in (row.get("timeline") or [])]
    starts = [seg[0] for _, row in rows for seg in (row.get("timeline") or [])]
    return (min(starts, default=0.0), max(ends, default=1.0))


def drawn_stretches(timeline: list[list]) -> list[tuple[float, float, int]]:
    """A row's stretches as drawn: each from its first request's start to its last one's end, but never past the
    next stretch's start. One request at a time that changes nothing; when requests overlap (the probe's
    --overlap) the failed stretch of an outage ends when its last request timed out, up to a timeout after the
    first answer, and drawn to that end it would hide the recovery."""
    stretches = []
    for index, (first, last, ok, _count) in enumerate(timeline):
        following = timeline[index + 1][0] if index + 1 < len(timeline) else None
        if following is not None and last >= following:
            # Its requests all began before the next stretch's first (the timeline is to the millisecond).
            last = max(first, following - 0.001)
        stretches.append((first, last, ok))
    return stretches


def served_share(rows: list[dict], start: float, end: float, bin_s: float = BIN_S) -> tuple[list[float], list[float]]:
    """Slot centres and, per slot, the share of runs whose requests that
    began in the slot were all answered (NaN where no run had a request)."""
    slots = max(1, math.ceil((end - start) / bin_s))
    centres = [start + (i + 0.5) * bin_s for i in range(slots)]
    served = [0] * slots
    counted = [0] * slots
    for row in rows:
        state: list[bool | None] = [None] * slots
        for first, last, ok in drawn_stretches(row.get("timeline") or []):
            # A stretch covers the slots from its first request's start to
            # its end as drawn; any failure in a slot makes it unserved.
            lo = max(0, int((first - start) // bin_s))
            hi = min(slots - 1, int((last - start) // bin_s))
            for i in range(lo, hi + 1):
                state[i] = bool(ok) if state[i] is None else state[i] and bool(ok)
        for i, s in enumerate(state):
            if s is not None:
                counted[i] += 1
                served[i] += s
    share = [served[i] / counted[i] if counted[i] else math.nan for i in range(slots)]
    return centres, share


def draw_scenario(document: dict, scenario: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = runs_of(document, scenario)
    colours = profile_colours(list(document["profiles"]))
    x_from, x_to = x_range(scenario, rows)
    figure, (raster, share) = pyplot.subplots(
        2, 1, figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    labels = []
    for y, (profile, row) in enumerate(reversed(rows)):
        for first, last, ok in drawn_stretches(row.get("timeline") or []):
            if last < x_from or first > x_to:
                continue
            # A stretch of one quick request is still drawn a few ms wide.
            raster.broken_barh([(first, max(last - first, 0.01))], (y - 0.35, 0.7),
                               facecolors=OK_COLOUR if ok else FAILED_COLOUR, linewidth=0)  # fmt: skip
        for key, marker, _ in PHASE_MARKERS:
            at = (row.get("phases") or {}).get(key)
            if at is not None and x_from <= at <= x_to:
                raster.plot([at], [y], marker=marker, color="black", markersize=6 if marker != "|" else 12,
                            markerfacecolor="white" if marker != "|" else "black", linestyle="none")  # fmt: skip
        label = f"{profile} #{row['run']}"
        if not row.get("ok", True):
            label += " (failed)"
        elif row.get("faultAt") is not None and not row.get("recoveryConfirmed"):
            label += " (not recovered)"
        if not row.get("timeline"):
            raster.text(x_from + 0.1, y, "no probe data" + (f": {row['error'][:60]}" if row.get("error") else ""),
                        va="center", fontsize=8, color=FAILED_COLOUR)  # fmt: skip
        labels.append((label, profile))
    raster.set_yticks(range(len(labels)), [label for label, _ in labels], fontsize=8)
    for tick, (_, profile) in zip(raster.get_yticklabels(), labels):
        tick.set_color(colours.get(profile, "black"))
    # A thin rule between profiles.
    for y, ((_, below), (_, above)) in enumerate(zip(labels, labels[1:])):
        if below != above:
            raster.axhline(y + 0.5, color="#999999", linewidth=0.8)
    raster.set_ylim(-0.7, max(len(labels), 1) - 0.3)
    zero = "the fault" if scenario in FAULT_WINDOW_SCENARIOS or scenario in ("backend-change", "rolling-replace", "scale") else "the probe's start"
    raster.axvline(0, color="black", linewidth=1)
    figure.suptitle(f"{scenario}: every request of every run, seconds from {zero}", fontsize=12)
    legend = [Patch(color=OK_COLOUR, label="answered"), Patch(color=FAILED_COLOUR, label="failed")]
    used = {k for _, row in rows for k, v in (row.get("phases") or {}).items() if v is not None}
    legend += [
        Line2D([], [], marker=m, color="black", markerfacecolor="white" if m != "|" else "black", linestyle="none", label=label)
        for key, m, label in PHASE_MARKERS
        if key in used
    ]
    # Above the rows, at most four to a line, so it never runs off the figure.
    raster.legend(handles=legend, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(4, len(legend)), fontsize=8,
                  frameon=False)  # fmt: skip
    for profile in document["profiles"]:
        profile_rows = [row for p, row in rows if p == profile and row.get("timeline")]
        if not profile_rows:
            continue
        centres, shares = served_share(profile_rows, x_from, x_to)
        share.step(centres, shares, where="mid", linewidth=2, color=colours[profile],
                   label=f"{profile} ({len(profile_rows)} run{'s' if len(profile_rows) != 1 else ''})")  # fmt: skip
    share.axvline(0, color="black", linewidth=1)
    share.set_ylim(-0.05, 1.05)
    share.set_ylabel("runs served", fontsize=9)
    share.set_xlabel(f"seconds from {zero}", fontsize=9)
    share.set_xlim(x_from, x_to)
    share.legend(loc="lower right", fontsize=8)
    share.grid(True, alpha=0.3)
    figure.text(0.5, 0.005, _subtitle(document), ha="center", va="bottom", fontsize=7, color="#555555")
    figure.tight_layout(rect=(0, 0.015, 1, 1))
    figure.savefig(path, dpi=DPI)
    pyplot.close(figure)
    return path


def _subtitle(document: dict) -> str:
    machine = document.get("machine") or {}
    commit = (document.get("gitCommit") or "?")[:10] + (" (dirty)" if document.get("gitDirty") else "")
    return (
        f"hapx failover bench {document.get('startedAt') or ''}, commit {commit}; {machine.get('nproc')} CPUs "
        f"({machine.get('cpuModel')}), QEMU accel {machine.get('qemuAccel')}"
    )


def draw_all(document: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [draw_scenario(document, s, out_dir / f"failover-{s}.png") for s in scenarios_of(document)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the JSON bench.failover wrote")
    parser.add_argument("--out", type=Path, default=None, help="directory for the PNGs (default: beside the JSON)")
    args = parser.parse_args(argv)
    document = json.loads(args.results.read_text())
    if document.get("schemaVersion") not in READABLE_VERSIONS:
        versions = ", ".join(map(str, READABLE_VERSIONS))
        parser.error(f"{args.results}: schemaVersion {document.get('schemaVersion')!r}, this plots {versions}")
    for path in draw_all(document, args.out or args.results.parent):
        print(f"[bench] picture: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
