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


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("lab figures")
        for key, value in FIGURES.items():
            terminalreporter.write_line(f"{key}: {value}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> PulumiWorkspace:
    return PulumiWorkspace(tmp_path_factory.mktemp("pulumi"))
