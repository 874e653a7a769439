"""The core stays pure: no module under kvstore/core imports I/O, time or randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import kvstore.core

FORBIDDEN = {
    "asyncio",
    "grpc",
    "sqlite3",
    "socket",
    "time",
    "random",
    "os",
    "subprocess",
    "threading",
    "datetime",
    "uvloop",
    "msgpack",
    "kvstore.net",
    "kvstore.node",
    "kvstore.storage",
    "kvstore.client",
    "kvstore.cluster",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def is_forbidden(module: str) -> bool:
    return any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)


def test_core_imports_nothing_impure() -> None:
    core_dir = Path(kvstore.core.__file__).parent
    files = sorted(core_dir.glob("*.py"))
    assert len(files) >= 6, "the core package moved or shrank unexpectedly"
    offenders = {
        f"{path.name}: {module}"
        for path in files
        for module in imported_modules(path)
        if is_forbidden(module)
    }
    assert not offenders, f"impure imports in kvstore.core: {sorted(offenders)}"


def test_scanner_catches_an_impure_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom asyncio import sleep\nfrom kvstore.net.peer import X\n")
    found = {m for m in imported_modules(bad) if is_forbidden(m)}
    assert found == {"time", "asyncio", "kvstore.net.peer"}
