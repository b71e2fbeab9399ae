"""`make bench` needs the lab harness, not the test suite: nothing under
bench/ or harness/ imports tests/ or pytest, and the benchmark starts with
pytest made unimportable."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from harness.paths import REPO

FORBIDDEN = ("tests", "pytest", "_pytest")
PACKAGES = ("bench", "harness")


def imported_modules(path) -> set[str]:
    """Top-level names of every module a file imports (at any depth)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


SOURCES = sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def test_the_scan_sees_the_packages_and_an_import_of_tests(tmp_path):
    assert {p.name for p in SOURCES} >= {"failover.py", "keepalived.py", "lab.py", "probe.py", "workspace.py"}
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from tests.conftest import REPO\n    import pytest\n")
    assert imported_modules(sample) >= {"tests", "pytest"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_imports_tests_or_pytest(path):
    assert not imported_modules(path) & set(FORBIDDEN)


# Run in a fresh interpreter: an import hook refuses tests/, pytest and
# _pytest, then the harness and the benchmark are imported and the bench's
# command line is parsed, as `make bench` runs it.
BLOCKED_RUN = f"""
import importlib.abc, runpy, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {FORBIDDEN!r}:
            raise ImportError(f"blocked for this test: {{name}}")
        return None

sys.meta_path.insert(0, Refuse())
for name in ("harness", "harness.lab", "harness.probe", "harness.paths", "harness.wait", "harness.watch",
             "harness.workspace", "harness.clock", "bench.keepalived", "bench.phases", "bench.results",
             "bench.failover", "bench.plot"):
    __import__(name)
# The pictures need matplotlib; running the benchmark does not.
if "matplotlib" in sys.modules:
    raise SystemExit("importing the bench imported matplotlib")
try:
    import pytest
except ImportError:
    pass
else:
    raise SystemExit("the blocker let pytest through")
sys.argv = ["bench.failover", "--help"]
runpy.run_module("bench.failover", run_name="__main__", alter_sys=True)
"""


def test_only_the_plot_imports_matplotlib_and_only_when_it_draws():
    importers = [p for p in SOURCES if "matplotlib" in imported_modules(p)]
    assert [p.relative_to(REPO).as_posix() for p in importers] == ["bench/plot.py"]
    tree = ast.parse((REPO / "bench" / "plot.py").read_text())
    top_level = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top_level |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert "matplotlib" not in top_level


def test_bench_runs_with_pytest_unimportable():
    proc = subprocess.run([sys.executable, "-c", BLOCKED_RUN], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout and "--scenarios" in proc.stdout, proc.stdout
