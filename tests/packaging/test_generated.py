"""The committed gRPC code is current, and the wheel ships it with its type information.

kvstore/pb/*_pb2*.py(i) are generated from proto/ by scripts/gen_proto.sh and committed, so
that an install runs no code generation (see pyproject.toml). These tests are cheap and
network-free: they regenerate into a temporary folder and build a wheel offline with the
running venv's setuptools.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.packaging._tree import (
    PB_DIR,
    ROOT,
    WHEEL_MUST_HOLD,
    build_wheel,
    copy_tree,
    git_files,
    run,
    wheel_names,
)

BIN = Path(sys.executable).parent
PLUGINS = [BIN / "protoc-gen-mypy", BIN / "protoc-gen-mypy_grpc"]


def _generated(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*_pb2*.py*"))}


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None or not all(p.exists() for p in PLUGINS),
    reason="grpcio-tools and mypy-protobuf (the dev extra) are not installed in this venv",
)
def test_committed_modules_match_the_proto(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    script = str(ROOT / "scripts" / "gen_proto.sh")
    run(["bash", script, str(out)], tmp_path, VENV_PYTHON=sys.executable)
    fresh = _generated(out / "kvstore" / "pb")
    committed = _generated(PB_DIR)
    assert set(fresh) == {Path(n).name for n in WHEEL_MUST_HOLD if "_pb2" in n}
    hint = "kvstore/pb is stale: run scripts/gen_proto.sh and commit the result"
    assert set(committed) == set(fresh), hint
    stale = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not stale, f"{hint} ({', '.join(stale)} differ)"


def test_wheel_ships_py_typed_and_the_generated_modules(tmp_path: Path) -> None:
    files = git_files()
    if files is None:
        pytest.skip("not a git checkout: cannot tell which files a clone would have")
    source = copy_tree(files, tmp_path / "src")
    wheel = build_wheel(source, tmp_path / "dist", isolated=False)
    names = wheel_names(wheel)
    missing = [n for n in WHEEL_MUST_HOLD if n not in names]
    assert not missing, f"{wheel.name} lacks {missing}"
    assert not any(n.startswith(("tests/", "bench/")) for n in names), "only kvstore/ ships"
