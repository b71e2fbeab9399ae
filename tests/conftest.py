"""Shared test fixtures: the stack configs as the engine would hand them over."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

# The clone's root on sys.path: the tests import components/ and harness/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.paths import stack_config  # noqa: E402


def cluster_files(cfg, stack: str):
    """The cluster-wide files for a parsed config, with its driver's fence plan."""
    from components.drivers import driver_for
    from components.rendering import render_cluster_files

    return render_cluster_files(cfg, stack, driver_for(cfg, stack).fence_plan())


def fence_plan(cfg, stack: str = "test"):
    from components.drivers import driver_for

    return driver_for(cfg, stack).fence_plan()


def as_engine_config(raw: dict[str, Any]) -> dict[str, str]:
    """How the engine passes config to a program: strings, objects as JSON."""
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v)) for k, v in raw.items()}


@pytest.fixture
def dev_raw() -> dict[str, Any]:
    return copy.deepcopy(stack_config("dev"))


@pytest.fixture
def lab_raw() -> dict[str, Any]:
    return copy.deepcopy(stack_config("lab"))


@pytest.fixture
def ip_backends_raw(dev_raw) -> dict[str, Any]:
    """The dev topology with backends given as IPs and no DNS resolvers."""
    dev_raw["hapx:backends"] = [
        {"name": "kube-mast01", "address": "192.168.4.11", "port": 6443},
        {"name": "kube-mast02", "address": "192.168.4.12", "port": 6443},
        {"name": "kube-mast03", "address": "192.168.4.13", "port": 6443},
    ]
    dev_raw["hapx:haproxy"] = {"frontendPort": 6443, "statsPort": 32700}
    return dev_raw
