"""Rendered files for the dev stack (and an IP-backend variant), from the real renderer."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from harness.paths import REPO


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run `make setup` (it installs the real tools the tests use)")
    return path


def stand_in_path(bin_dir: Path, tools: dict[str, str]) -> str:
    """Writes each stand-in tool (name: the body of its sh script) into `bin_dir` and returns a PATH that finds them
    before the real ones."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in tools.items():
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture(scope="session")
def rendered_dev(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("render-dev")
    result = run([str(REPO / ".venv/bin/python"), "-m", "tools.render", "--stack", "dev", "--out", str(out)], cwd=REPO)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def netns():
    """A throwaway network namespace, removed also on failure."""
    require_tool("ip")
    name = f"hapx-t-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
