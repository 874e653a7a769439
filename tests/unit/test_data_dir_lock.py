"""The data dir lock: one holder at a time, refused at once, freed by the holder's death.

Every subprocess a test starts is stopped by its PID in a ``finally``, even on failure.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kvstore.errors import ConfigError
from kvstore.storage.lock import DataDirLock, DataDirLocked, prepare_data_dir

ROOT = Path(__file__).resolve().parents[2]

HOLD = """
import sys, time
from pathlib import Path
from kvstore.storage.lock import DataDirLock
DataDirLock(Path(sys.argv[1])).acquire()
while True:
    time.sleep(60)
"""
TRY = """
import sys
from pathlib import Path
from kvstore.storage.lock import DataDirLock, DataDirLocked
try:
    DataDirLock(Path(sys.argv[1])).acquire()
except DataDirLocked as exc:
    print(exc)
    sys.exit(3)
print("acquired")
"""


@contextmanager
def spawn(code: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def lock_file_pid(data_dir: Path) -> str:
    try:
        return (data_dir / "LOCK").read_text().strip()
    except FileNotFoundError:
        return ""


def wait_until_held_by(proc: subprocess.Popen[bytes], data_dir: Path) -> None:
    """The holder writes its PID only once it has the flock."""
    deadline = time.monotonic() + 20
    while lock_file_pid(data_dir) != str(proc.pid):
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"the holder exited with {proc.returncode}: {err}")
        if time.monotonic() > deadline:
            pytest.fail("the holder did not take the lock in time")
        time.sleep(0.02)


def test_same_process_twice_is_refused(tmp_path: Path) -> None:
    with DataDirLock(tmp_path) as first:
        assert first.held and lock_file_pid(tmp_path) == str(os.getpid())
        second = DataDirLock(tmp_path)
        with pytest.raises(DataDirLocked) as info:
            second.acquire()
        assert isinstance(info.value, ConfigError)
        assert not second.held
        assert f"data dir {tmp_path} is locked by process {os.getpid()}" in str(info.value)
        assert info.value.pid == os.getpid() and info.value.data_dir == tmp_path
        with pytest.raises(RuntimeError, match="already held"):
            first.acquire()
    assert not first.held
    assert (tmp_path / "LOCK").exists()  # never deleted, and it names no holder now
    assert lock_file_pid(tmp_path) == ""
    second.acquire()  # free again
    second.release()
    second.release()  # idempotent


def test_lock_is_released_when_the_with_block_fails(tmp_path: Path) -> None:
    with pytest.raises(KeyError), DataDirLock(tmp_path):
        raise KeyError("boom")
    with DataDirLock(tmp_path) as again:
        assert again.held


def test_a_second_process_is_refused_and_told_the_holders_pid(tmp_path: Path) -> None:
    with DataDirLock(tmp_path), spawn(TRY, str(tmp_path)) as proc:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 3, err.decode()
        message = out.decode()
        assert f"data dir {tmp_path} is locked by process {os.getpid()}" in message
    # once released, the other process gets it
    with spawn(TRY, str(tmp_path)) as proc:
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out.decode().strip()) == (0, "acquired"), err.decode()


def test_a_killed_holder_leaves_a_stale_file_that_does_not_block(tmp_path: Path) -> None:
    with spawn(HOLD, str(tmp_path)) as holder:
        wait_until_held_by(holder, tmp_path)
        lock = DataDirLock(tmp_path)
        with pytest.raises(DataDirLocked) as info:
            lock.acquire()
        assert f"data dir {tmp_path} is locked by process {holder.pid}" in str(info.value)
        assert info.value.pid == holder.pid
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        assert lock_file_pid(tmp_path) == str(holder.pid)  # stale: names the dead holder
        with lock:
            assert lock_file_pid(tmp_path) == str(os.getpid())


def test_prepare_data_dir_is_private(tmp_path: Path) -> None:
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    fresh = tmp_path / "a" / "b" / "data"
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        prepare_data_dir(fresh)
    finally:
        os.umask(old_umask)
    assert fresh.is_dir() and mode(fresh) == 0o700
    wide = tmp_path / "wide"
    wide.mkdir()
    wide.chmod(0o755)
    prepare_data_dir(wide)
    assert mode(wide) == 0o700
    narrow = tmp_path / "narrow"
    narrow.mkdir(mode=0o700)
    prepare_data_dir(narrow)
    assert mode(narrow) == 0o700
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        prepare_data_dir(tmp_path / "file")
