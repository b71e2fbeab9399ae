"""The scripts `pulumi up` runs on a node to put a file in place (templates/node/push-*.sh.j2), on this host.

Each rendered script runs with real coreutils on files under the test's directory; `sudo` runs the command as
is (the tests run as root, as on the nodes), `systemctl` and `haproxy` are stand-ins that record their calls.
What matters on a node that can be reset at any moment (fenced during a push): the destination holds the old
file or the new one, whole; never a partial or empty one, never a `.hapx-new` left behind by a push that ended.
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.rendering import render_template

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the scripts install files owned by root, as on a node")


@dataclass(frozen=True)
class Push:
    template: str
    name: str  # the destination's file name, under the test's directory
    mode: int
    reloads: bool  # a changed file reloads an active haproxy


PUSHES = (
    Push("node/push-haproxy-cfg.sh.j2", "haproxy.cfg", 0o644, True),
    Push("node/push-stats-env.sh.j2", "hapx-stats.env", 0o600, True),
    Push("node/push-tls-certificate.sh.j2", "certs/web.pem", 0o600, True),
    Push("node/push-fence-credential.sh.j2", "hapx/fence-credential", 0o600, False),
)


@pytest.fixture
def node(tmp_path):
    """A stand-in node: a bin directory first on PATH, and a log of the stand-ins' calls."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    stand_ins = {
        "sudo": 'exec "$@"',
        "systemctl": f'echo "systemctl $*" >> {log}; exit 0',  # haproxy is active
        "haproxy": f'echo "haproxy $*" >> {log}; exit 0',  # every config passes -c
        # Records what was flushed, then flushes it.
        "sync": f'echo "sync $*" >> {log}; exec /bin/sync "$@"',
    }
    for name, body in stand_ins.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return tmp_path


def render(push: Push, root: Path) -> tuple[str, Path]:
    dest = root / "etc" / push.name
    stats_env = root / "etc" / "hapx-stats.env"
    values = {
        "node/push-haproxy-cfg.sh.j2": {"stats_env_path": stats_env, "haproxy_cfg_path": dest},
        "node/push-stats-env.sh.j2": {"stats_env_path": dest},
        "node/push-tls-certificate.sh.j2": {
            "path": dest, "service": "web", "stats_env_path": stats_env, "haproxy_cfg_path": root / "etc" / "haproxy.cfg"
        },
        "node/push-fence-credential.sh.j2": {"path": dest},
    }[push.template]
    return render_template(push.template, **values), dest


def run_push(script: str, content: str, root: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    path = f"{root / 'bin'}:" + (f"{extra_path}:" if extra_path else "") + os.environ["PATH"]
    (root / "etc").mkdir(exist_ok=True)
    stats_env = root / "etc" / "hapx-stats.env"
    if not stats_env.exists():
        stats_env.write_text("HAPX_STATS_USER=admin\n")
    return subprocess.run(
        ["bash", "-c", script], input=content, env={**os.environ, "PATH": path}, capture_output=True, text=True, timeout=60
    )


def calls(root: Path) -> list[str]:
    log = root / "calls"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("push", PUSHES, ids=lambda p: p.name)
def test_a_push_installs_whole_then_leaves_an_equal_file_alone(push, node):
    script, dest = render(push, node)
    first = run_push(script, "new content\n", node)
    assert first.returncode == 0, first.stderr
    assert "installed" in first.stdout
    assert dest.read_text() == "new content\n"
    assert stat.S_IMODE(dest.stat().st_mode) == push.mode
    assert not dest.with_name(dest.name + ".hapx-new").exists()
    # Flushed under its temporary name, before the rename made it the file.
    assert f"sync {dest}.hapx-new" in calls(node)
    assert any(c.startswith("systemctl reload") for c in calls(node)) is push.reloads

    (node / "calls").unlink()
    again = run_push(script, "new content\n", node)
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout
    assert not any(c.startswith(("systemctl reload", "sync")) for c in calls(node))


@pytest.mark.parametrize("push", PUSHES, ids=lambda p: p.name)
def test_a_push_cut_short_before_the_rename_leaves_the_old_file_whole(push, node):
    # The node dies after the new file was written and flushed, before the rename: here `mv` fails in its place.
    script, dest = render(push, node)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("old content, whole\n")
    failing = node / "failing-mv"
    failing.mkdir()
    (failing / "mv").write_text("#!/bin/sh\nexit 1\n")
    (failing / "mv").chmod(0o755)
    cut = run_push(script, "new content\n", node, extra_path=failing)
    assert cut.returncode != 0
    assert dest.read_text() == "old content, whole\n"
    # The next push (the next `pulumi up`) finishes the job over the leftover.
    finished = run_push(script, "new content\n", node)
    assert finished.returncode == 0, finished.stderr
    assert dest.read_text() == "new content\n"
    assert not dest.with_name(dest.name + ".hapx-new").exists()
