"""Helpers shared by the packaging tests: where things are, and a copy of the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PB_DIR = ROOT / "kvstore" / "pb"

# What a wheel must hold for `import kvstore` and type checking to work with no extra step.
WHEEL_MUST_HOLD = (
    "kvstore/py.typed",
    "kvstore/pb/kvstore_pb2.py",
    "kvstore/pb/kvstore_pb2.pyi",
    "kvstore/pb/kvstore_pb2_grpc.py",
    "kvstore/pb/kvstore_pb2_grpc.pyi",
)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus whatever would point Python at this checkout or its venv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env | extra


def run(
    cmd: list[str], cwd: Path, *, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """Runs `cmd` (with `env` added), failing the test with its output on a non-zero exit."""
    proc = subprocess.run(
        cmd, cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def git_files() -> list[str] | None:
    """Files git tracks or would add (not ignored) in the checkout; None if not a checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return [name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def copy_tree(files: list[str], dest: Path) -> Path:
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return dest


def build_wheel(source: Path, out: Path, *, isolated: bool) -> Path:
    """Builds the wheel of `source` into `out` with pip, as a user's `pip install` would."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out)]
    if not isolated:  # the running venv's setuptools, offline
        cmd += ["--no-build-isolation", "--no-index"]
    run([*cmd, str(source)], cwd=out.parent)
    wheels = list(out.glob("kvstore-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())
