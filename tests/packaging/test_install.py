"""From a fresh clone of the committed HEAD to a working `kvstore` in a new venv.

What `pip install git+URL` does: clone, build a wheel (in an isolated build environment
with only [build-system].requires), install it with its runtime dependencies from the
package registry. The venv lives in tmp_path, outside the checkout, and is made without
the running venv's packages, so a missing runtime dependency or an uncommitted generated
module fails here. Then `kvstore check` must give the known verdict of two reference
histories (exit 0 linearizable, 1 not), and the generated gRPC modules must import.

About 12 s on the project's 2-core machine (whose pip finds most wheels in a local
wheelhouse; longer from the registry alone), and it needs the registry for the build
environment and the dependencies: marked `packaging`, deselect with `-m "not packaging"`.
The clone is of HEAD, so uncommitted work is not what is tested.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging._tree import (
    ROOT,
    WHEEL_MUST_HOLD,
    build_wheel,
    clean_env,
    run,
    wheel_names,
)

pytestmark = pytest.mark.packaging

# In CI the corpus is at ../shared beside the clone, as on a developer's machine.
CORPUS = ROOT.parent / "shared" / "corpus" / "porcupine"
VERDICTS = CORPUS / "verdicts.tsv"
# Two small histories, one of each verdict, one per reader (Jepsen log, EDN lines).
HISTORIES = ("jepsen/etcd_002.log", "kv/c01-bad.txt")
EXIT = {"linearizable": 0, "not-linearizable": 1}

IMPORT_CHECK = """
import importlib.util, sys
import kvstore, kvstore.cli, kvstore.pb.kvstore_pb2, kvstore.pb.kvstore_pb2_grpc
assert kvstore.pb.kvstore_pb2.DESCRIPTOR.name == "kvstore/pb/kvstore.proto"
assert kvstore.__file__.startswith(sys.prefix), kvstore.__file__
assert importlib.util.find_spec("grpc_tools") is None, "a build tool was installed"
"""


def _verdicts() -> dict[str, str]:
    rows = (line.split("\t") for line in VERDICTS.read_text().splitlines()[1:] if line)
    return {name: verdict for name, verdict in rows}


@pytest.mark.timeout(900)  # a cold pip cache downloads grpcio, matplotlib, numpy...
def test_fresh_clone_installs_a_working_kvstore(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout (or git is missing): nothing to clone")
    if not VERDICTS.exists():
        pytest.skip(f"reference corpus not found at {CORPUS}")
    verdicts = _verdicts()

    clone = tmp_path / "clone"
    run(["git", "clone", "--quiet", "--depth", "1", ROOT.as_uri(), str(clone)], tmp_path)
    wheel = build_wheel(clone, tmp_path / "dist", isolated=True)
    missing = [n for n in WHEEL_MUST_HOLD if n not in wheel_names(wheel)]
    assert not missing, f"the wheel of a fresh clone lacks {missing}: are they committed?"

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    # The running venv's pip installs into the new one: no pip bootstrap in each run.
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    run([*pip, str(wheel)], tmp_path, timeout=840)

    run([str(python), "-I", "-c", IMPORT_CHECK], tmp_path)
    for name in HISTORIES:
        expected = EXIT[verdicts[name]]
        proc = subprocess.run(
            [str(venv / "bin" / "kvstore"), "check", str(CORPUS / name)],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == expected, (
            f"kvstore check {name}: exit {proc.returncode}, expected {expected} "
            f"({verdicts[name]})\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
