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


# The sans-I/O cores (STYLE.md): time is ticks, ids and randomness are injected.
CORE_MODULES = ("storage/membership/core.py", "storage/membership/planner.py",
                "storage/replication/core.py")
CORE_FORBIDDEN = ("asyncio", "socket", "time", "random", "uuid", "os", "lmdb", "pyverbs",
                  "threading", "selectors")


@pytest.mark.parametrize("module", CORE_MODULES)
def test_cores_do_no_io(module: str) -> None:
    path = ROOT / module
    if not path.exists():
        pytest.skip(f"{module} is not written yet")
    imported = set(_imports(path))
    assert not [name for name in imported
                if any(name == bad or name.startswith(bad + ".") for bad in CORE_FORBIDDEN)]
