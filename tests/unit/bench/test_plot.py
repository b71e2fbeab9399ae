"""The failover pictures (bench/plot.py) from a small synthetic JSON: one
PNG per scenario of the documented size, drawn by the command line; the
served-share arithmetic on its own."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys

import pytest

from bench import plot
from harness.paths import REPO
from tests.unit.bench import synthetic


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_the_command_draws_one_png_per_scenario_of_the_documented_size(tmp_path):
    doc = synthetic.document({"reference": [12.9, 13.2], "hapx": [7.2, 6.3, None], "keepalived": [3.3, 3.0]})
    doc["profiles"]["hapx"]["scenarios"]["link-cut"] = synthetic.document({"hapx": [8.2]}, "link-cut")["profiles"]["hapx"]["scenarios"]["link-cut"]
    results = tmp_path / "failover.json"
    results.write_text(json.dumps(doc))
    proc = subprocess.run([sys.executable, "-m", "bench.plot", str(results), "--out", str(tmp_path / "pictures")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    pictures = sorted((tmp_path / "pictures").glob("*.png"))
    assert [p.name for p in pictures] == ["failover-link-cut.png", "failover-power-off.png"], proc.stdout
    for picture in pictures:
        assert png_size(picture) == (plot.WIDTH_PX, plot.HEIGHT_PX)
        assert picture.stat().st_size > 20_000  # drawn, not blank


def test_a_document_of_another_schema_is_refused(tmp_path):
    results = tmp_path / "old.json"
    results.write_text(json.dumps({"hapx": {"power-off": [{"unavailableS": 7.2}]}}))
    proc = subprocess.run([sys.executable, "-m", "bench.plot", str(results)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "schemaVersion None" in proc.stderr, proc.stderr


def test_served_share_counts_runs_served_per_slot():
    quick = {"timeline": [[-1.0, -0.01, 1, 50], [0.0, 0.99, 0, 10], [1.0, 3.0, 1, 100]]}
    slow = {"timeline": [[-1.0, -0.01, 1, 50], [0.0, 2.49, 0, 25], [2.5, 3.0, 1, 25]]}
    centres, share = plot.served_share([quick, slow], -1.0, 3.0, bin_s=0.5)
    assert centres[0] == pytest.approx(-0.75) and len(share) == 8
    assert share[:2] == [1.0, 1.0]  # before the fault both served
    assert share[2:4] == [0.0, 0.0]  # both failing
    assert share[4:7] == [0.5, 0.5, 0.5]  # the quick one back
    assert share[7] == 1.0  # and the slow one
    # A slot in which no run sent a request is no figure, not a zero.
    assert math.isnan(plot.served_share([{"timeline": [[0.0, 0.4, 1, 20]]}], 0.0, 1.0, bin_s=0.5)[1][1])


def test_overlapping_requests_show_the_recovery_where_it_was():
    """With the probe's --overlap the outage's failed stretch ends when its last request timed out (0.3 s after
    the first answer at 1.0 s); drawn and counted to that end, the run would look served only from 1.5 s."""
    overlapping = {"timeline": [[-1.0, -0.01, 1, 50], [0.0, 1.28, 0, 50], [1.0, 3.0, 1, 100]]}
    assert plot.drawn_stretches(overlapping["timeline"]) == [(-1.0, -0.01, 1), (0.0, 0.999, 0), (1.0, 3.0, 1)]
    centres, share = plot.served_share([overlapping], -1.0, 3.0, bin_s=0.5)
    assert share[2:4] == [0.0, 0.0] and share[4] == 1.0  # served again from the slot of 1.0 s
    # One request at a time, nothing is cut: each stretch ends before the next begins.
    sequential = [[-1.0, -0.01, 1, 50], [0.0, 0.99, 0, 10], [1.0, 3.0, 1, 100]]
    assert plot.drawn_stretches(sequential) == [(a, b, ok) for a, b, ok, _ in sequential]


def test_the_window_around_the_fault_and_whole_runs_otherwise():
    long_up = {"timeline": synthetic.probe_report(0.5, after_s=60.0)["timeline"]}
    rows = [("hapx", long_up)]
    assert plot.x_range("power-off", rows) == (plot.X_FROM_S, plot.X_TO_S) == (-2.0, 15.0)
    assert plot.x_range("backend-change", rows) == (-2.0, 60.0)


def test_every_profile_of_a_run_has_its_own_colour():
    # A variant was drawn in matplotlib's first colour, hapx's own blue, so their lines could not be told apart.
    profiles = ["reference", "hapx", "hapx-fast", "hapx-token600", "keepalived"]
    colours = plot.profile_colours(profiles)
    assert set(colours) == set(profiles)
    assert len(set(colours.values())) == len(profiles)
    assert colours["hapx"] == plot.PROFILE_COLOURS["hapx"] and colours["keepalived"] == plot.PROFILE_COLOURS["keepalived"]
