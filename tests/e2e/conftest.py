"""End-to-end tests on the QEMU lab: real VMs, real Pulumi, real cluster.

They need root (network namespaces, taps), QEMU and the base image that
`make test` builds first (`make image`); without them they fail, they do
not skip: a green run means the lab really ran.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.lab import LabStack
from harness.workspace import PulumiWorkspace

# HAPX_IMAGE_DIR: try the tests on an image built elsewhere (make image writes the default).
IMAGE_DIR = Path(os.path.expanduser(os.environ.get("HAPX_IMAGE_DIR", "~/.cache/hapx/images/current")))


@pytest.fixture(scope="session", autouse=True)
def lab_prerequisites():
    problems = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (network namespaces and taps)")
    if not (IMAGE_DIR / "image.json").exists():
        problems.append(f"no base image in {IMAGE_DIR}: run `make image`")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
    print(f"\nbase image: {json.loads((IMAGE_DIR / 'image.json').read_text())['key']}")


# Figures the e2e tests measure, printed at the end of the run (CI log).
FIGURES: dict[str, float] = {}

# The client that watches the VIP during a day-2 `pulumi up` (rolling replacement, scale) asks every 100 ms, not
# every 20 ms like a failover probe: at 20 ms its own requests (haproxy ~9 ms of emulated CPU each, and a journal
# line) kept the VIP holder's single emulated CPU busy (its QEMU at 110 % of a host core against 34 % idle, 54 % at
# 100 ms), so every step on that node ran two to three times slower than without it. The tests' bar, no stretch
# of failed requests of 2 s or more, is seen as well at 100 ms; failover windows are measured by `make bench`.
DAY2_PROBE_INTERVAL_MS = 100


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("lab figures")
        for key, value in FIGURES.items():
            terminalreporter.write_line(f"{key}: {value}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> PulumiWorkspace:
    return PulumiWorkspace(tmp_path_factory.mktemp("pulumi"))


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """The one lab the lifecycle, services and drift tests share (one `pulumi up` for all): its tests run in the order
    pytest_collection_modifyitems sets, destroy last; teardown removes whatever a failure left."""
    workspace = PulumiWorkspace(tmp_path_factory.mktemp("pulumi-lab"))
    # Built all at once (a rolling first build waits for each node in turn, about 2 minutes more here);
    # test_lab_rolling turns rolling on for the replacement it tests (the interrupted up builds all at once too).
    lab = LabStack.create(workspace, "e2e", tmp_path_factory.mktemp("lab-state"), port_start=24200, rollout="all-at-once")
    yield lab
    lab.teardown()


@pytest.fixture(scope="module")
def lab_up(lab):
    """The shared lab, up (when a module of ON_THE_SHARED_LAB runs on its own, it is brought up here)."""
    if not lab.workspace.export(lab.stack)["deployment"].get("resources"):
        lab.up()
    return lab


# The shared lab's story: up and the checks on a fresh stack (lifecycle up to the
# backend change), then the services (they move the VIP and put it back), then
# drift (hand edits put back by refresh and up), then the rolling replacement
# (both VMs replaced one at a time), then scale (a third node added and
# removed), then the faults, destroy last.
SERVICES_AFTER = "test_backend_change_updates_in_place"
# In this order, after SERVICES_AFTER.
ON_THE_SHARED_LAB = ("test_lab_services", "test_lab_drift", "test_lab_rolling", "test_lab_scale")


def pytest_collection_modifyitems(session, config, items):
    moved = [item for module in ON_THE_SHARED_LAB for item in items if item.module.__name__.endswith(module)]
    if not moved:
        return
    rest = [item for item in items if item not in moved]
    anchor = next((i for i, item in enumerate(rest) if item.name == SERVICES_AFTER), None)
    if anchor is None:  # run on their own: the services and drift tests bring the lab up themselves
        return
    items[:] = rest[: anchor + 1] + moved + rest[anchor + 1 :]
