"""The agents step's node script (templates/node/install-agents.sh.j2), run here with stand-ins for the node's tools
under a scratch root: every file is installed once, a re-run changes nothing, systemd is reloaded only when a unit
file changed, and a unit is enabled and started, restarted when it changed. The unit that turns address-space
randomisation off under pure emulation is checked by the real systemd-analyze, and its condition says where it runs.
On the lab's nodes: tests/e2e/test_lab_scale.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from components.rendering import EMULATED_NO_ASLR_UNIT, NodeAgentFile, node_agent_files, render_agents_install

from .conftest import require_tool, run, stand_in_path


@pytest.fixture
def node(tmp_path) -> dict:
    """Stand-ins: `sudo` runs its command; `cmp` and `install` work under `root`; `systemctl` is logged, and its
    `is-enabled` says "masked" while the file `masked` exists."""
    root, bin_dir, log = tmp_path / "root", tmp_path / "bin", tmp_path / "calls.log"
    root.mkdir()
    fakes = {
        "sudo": 'exec "$@"',
        "cmp": f'[ "$1" = -s ] && shift; exec /usr/bin/cmp -s "$1" "{root}$2"',
        # install -D -m MODE -o U -g G SRC DEST
        "install": f'mkdir -p "$(dirname "{root}$9")" && cp "$8" "{root}$9" && chmod "$3" "{root}$9"',
        "systemctl": (
            f'if [ "$1" = is-enabled ]; then [ -e {tmp_path}/masked ] && echo masked; exit 0; fi\n'
            f'echo "systemctl $*" >> {log}'
        ),
    }
    path = stand_in_path(bin_dir, fakes)
    return {"env": {**os.environ, "PATH": path}, "root": root, "log": log, "tmp": tmp_path}


def install(node: dict, files: tuple[NodeAgentFile, ...]) -> tuple[subprocess.CompletedProcess, list[str]]:
    node["log"].write_text("")
    result = run(["sh", "-c", render_agents_install(files)], env=node["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    return result, node["log"].read_text().splitlines()


def test_files_are_installed_once_and_the_units_are_enabled_started_and_restarted_on_change(node):
    files = node_agent_files(None, 60)
    units = [f.unit for f in files if f.unit]
    assert units == ["hapx-emulated-no-aslr.service", "hapx-settled.service"]
    first, calls = install(node, files)
    for f in files:
        placed = node["root"] / f.path.lstrip("/")
        assert placed.read_text() == f.content and oct(placed.stat().st_mode & 0o777) == oct(int(f.mode, 8)), f.path
    assert calls == ["systemctl daemon-reload"] + [c for u in units for c in (f"systemctl enable --quiet {u}", f"systemctl restart {u}")]

    again, calls = install(node, files)
    assert "installed" not in again.stdout
    assert calls == [c for u in units for c in (f"systemctl enable --quiet {u}", f"systemctl start {u}")]

    changed = tuple(
        NodeAgentFile(f.path, f.content + "# changed\n", f.mode, f.starts_unit) if f.path == EMULATED_NO_ASLR_UNIT else f
        for f in files
    )
    _, calls = install(node, changed)
    no_aslr, settled = units
    assert calls == [
        "systemctl daemon-reload",
        f"systemctl enable --quiet {no_aslr}", f"systemctl restart {no_aslr}",
        f"systemctl enable --quiet {settled}", f"systemctl start {settled}",
    ]  # fmt: skip


def test_a_changed_drop_in_reloads_systemd_without_restarting_anything(node):
    files = node_agent_files(None, 60)
    install(node, files)
    changed = tuple(
        NodeAgentFile(f.path, f.content + "# changed\n", f.mode, f.starts_unit) if f.path.endswith("haproxy.service.d/hapx-cpu.conf") else f
        for f in files
    )
    _, calls = install(node, changed)
    assert calls[0] == "systemctl daemon-reload" and not any("restart" in c for c in calls), calls


def test_a_unit_the_admin_masked_is_left_alone(node):
    files = node_agent_files(None, 60)
    install(node, files)
    (node["tmp"] / "masked").touch()
    again, calls = install(node, files)
    assert calls == [] and "hapx-emulated-no-aslr.service masked: left alone" in again.stdout


def test_the_no_aslr_unit_is_valid_and_runs_only_under_pure_emulation(tmp_path):
    require_tool("systemd-analyze")
    (unit,) = [f for f in node_agent_files(None, 60) if f.path == EMULATED_NO_ASLR_UNIT]
    path = tmp_path / Path(unit.path).name
    path.write_text(unit.content)
    verify = run(["systemd-analyze", "verify", str(path)])
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    lines = unit.content.splitlines()
    # QEMU without KVM only: "qemu" is what systemd-detect-virt says under TCG (KVM says "kvm").
    assert "ConditionVirtualization=qemu" in lines
    assert "ExecStart=/usr/sbin/sysctl -q -w kernel.randomize_va_space=0" in lines
    assert "ExecStop=/usr/sbin/sysctl -q -w kernel.randomize_va_space=2" in lines
