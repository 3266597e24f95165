"""The layering rules of docs/architecture.md, checked on every import statement."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Per package: module prefixes its code must never import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "gateway": ("storage.engine", "storage.node", "storage.client", "storage.transport",
                "storage.replication", "storage.membership", "storage.placement",
                "storage.versions", "lmdb", "pyverbs", "tensorflow", "triggers", "squall"),
    "storage": ("gateway", "triggers", "squall", "starlette", "uvicorn"),
    "triggers": ("gateway", "storage.engine", "storage.node", "storage.client",
                 "storage.transport", "lmdb", "squall"),
}


# The protocol cores do no I/O (STYLE.md, docs/replication.md): time is ticks, ids and
# randomness are injected, so a seeded simulation can drive them. Checked through every
# in-repo module they import, too.
SANS_IO_CORES = ("storage/replication/core.py", "storage/membership/core.py")
SANS_IO_FORBIDDEN = ("asyncio", "socket", "time", "random", "uuid", "os", "lmdb", "pyverbs",
                     "threading", "selectors", "subprocess", "concurrent")


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            # 'from storage import engine' imports storage.engine
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in _imports(path):
            if any(module == bad or module.startswith(bad + ".") for bad in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_layering(package: str) -> None:
    assert _violations(package, FORBIDDEN[package]) == []


def test_the_check_sees_imports() -> None:
    """The checker itself works: the gateway does import storage.api."""
    assert "storage.api" in set(_imports(ROOT / "gateway" / "app.py")) | set(
        _imports(ROOT / "gateway" / "s3" / "objects.py")
    )


def _module_path(module: str) -> Path | None:
    """The in-repo file of a module name (None: not ours, e.g. the standard library)."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports_through(path: Path) -> set[str]:
    """Every module ``path`` imports, directly or through in-repo modules."""
    seen: set[str] = set()
    todo = [path]
    visited: set[Path] = set()
    while todo:
        current = todo.pop()
        if current in visited:
            continue
        visited.add(current)
        for module in _imports(current):
            seen.add(module)
            inner = _module_path(module)
            if inner is not None:
                todo.append(inner)
    return seen


@pytest.mark.parametrize("core", SANS_IO_CORES)
def test_protocol_cores_do_no_io(core: str) -> None:
    path = ROOT / core
    if not path.exists():
        pytest.skip(f"{core} is not written yet")
    bad = sorted(m for m in _imports_through(path)
                 if any(m == b or m.startswith(b + ".") for b in SANS_IO_FORBIDDEN))
    assert bad == [], f"{core} imports {bad}"


def test_the_sans_io_check_sees_imports() -> None:
    """The simulation next to the replication core does use randomness: the check sees it."""
    found = _imports_through(ROOT / "storage" / "replication" / "sim.py")
    assert "random" in found and "storage.replication.core" in found
