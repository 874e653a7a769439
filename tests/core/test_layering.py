"""Dependencies point down only: server -> node -> net -> core.

Every module under kvstore/ is parsed (never imported) and its imports checked:
- ``kvstore.net`` imports none of ``kvstore.node``, ``kvstore.server``, ``kvstore.harness``,
  ``kvstore.cluster``;
- ``kvstore.node`` imports none of ``kvstore.server``, ``kvstore.harness``,
  ``kvstore.cluster`` (so the simulator can run a node without its gRPC server);
- ``kvstore.core`` imports no other kvstore package but ``kvstore.errors``. The packages
  ``test_purity.FORBIDDEN`` already names are left to that test, so one bad import
  fails one test.

Imports under ``if TYPE_CHECKING:`` and inside functions count too: they are still
dependencies. Relative imports are resolved, and ``from kvstore import node`` counts as
importing ``kvstore.node``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import kvstore
from tests.core.test_purity import is_forbidden as purity_forbids

# package -> the kvstore packages it must not import (nor anything inside them)
FORBIDDEN_BELOW: dict[str, tuple[str, ...]] = {
    "kvstore.net": ("kvstore.node", "kvstore.server", "kvstore.harness", "kvstore.cluster"),
    "kvstore.node": ("kvstore.server", "kvstore.harness", "kvstore.cluster"),
}
CORE = "kvstore.core"
CORE_MAY_IMPORT = ("kvstore.core", "kvstore.errors")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    line: int
    statement: str  # the import as written
    target: str  # what it imports, resolved to an absolute dotted name


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def module_name(path: Path, root: Path) -> str:
    """``root/kvstore/net/peer.py`` -> ``kvstore.net.peer``; an ``__init__`` is its package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> list[Import]:
    module = module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".")
                if not is_package:
                    package.pop()
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, node.module] if node.module else package)
            else:
                base = node.module or ""
            # ``from X import y`` may import the submodule X.y: count both X and X.y (but
            # not a bare ``kvstore``: ``from kvstore import errors`` imports kvstore.errors).
            names = [f"{base}.{alias.name}" for alias in node.names]
            targets = names if base == "kvstore" else [base, *names]
        else:
            continue
        statement = ast.unparse(node)
        found.extend(Import(module, node.lineno, statement, target) for target in targets)
    return found


def violations(root: Path) -> list[str]:
    """Every import under ``root/kvstore`` that points the wrong way, one line each."""
    bad: set[str] = set()
    for path in sorted((root / "kvstore").rglob("*.py")):
        for imp in imports_of(path, root):
            if not within(imp.target, "kvstore"):
                continue
            why = None
            for package, forbidden in FORBIDDEN_BELOW.items():
                if within(imp.module, package):
                    hit = next((f for f in forbidden if within(imp.target, f)), None)
                    if hit is not None:
                        why = f"{package} must not import {hit}"
            if (
                within(imp.module, CORE)
                and not any(within(imp.target, ok) for ok in CORE_MAY_IMPORT)
                and not purity_forbids(imp.target)  # test_purity reports those
            ):
                why = f"{CORE} imports no kvstore package but kvstore.errors"
            if why is not None:
                bad.add(f"{imp.module} (line {imp.line}): `{imp.statement}`: {why}")
    return sorted(bad)


ROOT = Path(kvstore.__file__).parent.parent


def test_dependencies_point_down_only() -> None:
    scanned = {module_name(p, ROOT) for p in (ROOT / "kvstore").rglob("*.py")}
    for package in ("kvstore.core", "kvstore.net", "kvstore.node", "kvstore.server"):
        assert package in scanned, f"{package} moved or vanished: the layering rules need updating"
    assert "kvstore.server.servicers" in scanned
    offenders = violations(ROOT)
    assert not offenders, "imports that point up the layers (server -> node -> net -> core):\n" + (
        "\n".join(offenders)
    )


def test_scanner_catches_an_upward_import(tmp_path: Path) -> None:
    files = {
        "kvstore/__init__.py": "",
        "kvstore/net/__init__.py": "",
        "kvstore/net/peer.py": (
            "from typing import TYPE_CHECKING\n"
            "from kvstore.net import outbox\n"
            "from kvstore import node\n"
            "if TYPE_CHECKING:\n"
            "    from ..server.main import serve\n"
        ),
        "kvstore/node/__init__.py": "from . import runtime\n",
        "kvstore/node/runtime.py": (
            "import kvstore.net.peer\ndef f() -> None:\n    import kvstore.harness.runner\n"
        ),
        "kvstore/core/__init__.py": "",
        "kvstore/core/ring.py": (
            "from kvstore import errors\n"
            "from kvstore.core.version import Record\n"
            "from kvstore.security import certs\n"
            "from kvstore.net.peer import PeerLink\n"  # test_purity's to report
        ),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert violations(tmp_path) == [
        "kvstore.core.ring (line 3): `from kvstore.security import certs`: "
        "kvstore.core imports no kvstore package but kvstore.errors",
        "kvstore.net.peer (line 3): `from kvstore import node`: "
        "kvstore.net must not import kvstore.node",
        "kvstore.net.peer (line 5): `from ..server.main import serve`: "
        "kvstore.net must not import kvstore.server",
        "kvstore.node.runtime (line 3): `import kvstore.harness.runner`: "
        "kvstore.node must not import kvstore.harness",
    ]
