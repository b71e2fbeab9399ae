"""Engine tests: the real Pulumi CLI, language host and command provider,
on a throwaway local file backend. Nothing here creates a VM."""

from __future__ import annotations

import pytest

from harness.workspace import PulumiWorkspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> PulumiWorkspace:
    return PulumiWorkspace(tmp_path_factory.mktemp("pulumi"))
