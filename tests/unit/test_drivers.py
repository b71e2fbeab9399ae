"""The shape of the program: one driver per hypervisor behind one interface,
no import cycles, no hypervisor branches outside the drivers, and VM
identities that a refactoring must not change."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from components.config import Hypervisor, parse_config
from components.drivers import DRIVERS, driver_for
from components.drivers.base import HypervisorDriver

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = REPO / "components"


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of `modules` that `path` imports, at any depth (imports inside functions count)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        found |= {t for t in targets if t in modules and t != name}
    return found


def _import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in COMPONENTS.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, done, stack = [], set(), []

    def visit(module: str) -> None:
        if module in stack:
            cycles.append(stack[stack.index(module) :] + [module])
            return
        if module in done:
            return
        stack.append(module)
        for target in sorted(graph[module]):
            visit(target)
        stack.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    return cycles


def test_no_import_cycles_in_components():
    graph = _import_graph()
    assert "components.drivers.qemu.driver" in graph and graph["components.drivers"], "the graph was not read"
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    # The check itself must be able to fail.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycles(graph) == [["a", "b", "c", "a"]]


def test_every_hypervisor_has_a_driver():
    assert set(DRIVERS) == set(Hypervisor)
    for hypervisor, driver in DRIVERS.items():
        assert issubclass(driver, HypervisorDriver) and driver.kind == hypervisor.value


def _hypervisor_branches(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr == "hypervisor":
            found.append(f"{path.name}:{node.lineno} reads .hypervisor")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Hypervisor":
            found.append(f"{path.name}:{node.lineno} names Hypervisor.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module and any(
            part in node.module for part in ("drivers.qemu", "drivers.virtualbox")
        ):
            found.append(f"{path.name}:{node.lineno} imports {node.module}")
    return found


def test_nothing_outside_the_drivers_branches_on_the_hypervisor():
    # config.py validates which sections go with which hypervisor; the
    # drivers package is where the hypervisors are told apart.
    outside = [
        p
        for p in [*COMPONENTS.rglob("*.py"), REPO / "__main__.py", REPO / "tools" / "render.py"]
        if "drivers" not in p.relative_to(REPO).parts and p.name != "config.py"
    ]
    assert len(outside) >= 8
    branches = [b for p in outside for b in _hypervisor_branches(p)]
    assert branches == []


# A VM's fingerprint is one of its replacement triggers: if a change to hapx
# alters it, every running VM is replaced on the next `pulumi up`. These are
# the values hapx has computed since the fencing release; a change here must
# be deliberate (and said in the release notes).
PINNED_FINGERPRINTS = {
    ("dev", "hapx-node01"): "a5c692ee62795cf9d49c34b236549a37cc674e28203194a2e5996469e74182ba",
    ("dev", "hapx-node02"): "86947c705a004e7ad81e169b2886cdd33fafb7f02d581355d9b54162ad39af1f",
}


@pytest.mark.parametrize("stack,node", sorted(PINNED_FINGERPRINTS))
def test_vm_fingerprints_do_not_change(stack, node):
    from harness.paths import stack_config

    cfg = parse_config(stack_config(stack))
    driver = driver_for(cfg, stack)
    index = [n.name for n in cfg.nodes].index(node)
    assert driver.vm_spec(cfg.nodes[index], index).fingerprint() == PINNED_FINGERPRINTS[(stack, node)]
