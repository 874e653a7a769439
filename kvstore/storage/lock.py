"""A node's data dir: private to its owner, and used by one process at a time.

``prepare_data_dir(path)`` makes the dir (mode 0o700) before a node opens its engine;
``DataDirLock(path)`` (a context manager, or ``acquire()`` / ``release()``) makes sure no
second process opens the same store: two writers on one SQLite store, or one node's files
mixed into another's, lose data without any error.

Rules and invariants:
- The lock is an exclusive, non-blocking ``fcntl.flock`` on ``<data_dir>/LOCK``. A second
  holder fails at once (never waits) with ``DataDirLocked``, a ``ConfigError`` whose
  message names the dir and the PID written in the LOCK file by the holder.
- ``flock`` locks belong to an open file description, not to a process: a second
  ``DataDirLock`` on the same dir in the same process is refused just as another process
  is (POSIX ``fcntl``/``lockf`` locks would let the same process "lock" twice).
- The kernel drops the lock when the holder's descriptor closes, also when the process
  dies (even by SIGKILL): a LOCK file left behind by a dead process never blocks. The
  file's contents are informative only (the holder's PID); the lock is the flock.
- The LOCK file is never deleted: unlinking it while another process has it open would
  let two processes each lock a different inode of "the same" file.
- The descriptor is opened with O_CLOEXEC, so programs the holder executes do not
  inherit (and keep) the lock. A child created by ``fork`` without ``exec`` does share it.
- The PID is the holder's in its own PID namespace; ``flock`` on network file systems
  may not be exclusive across machines (keep data dirs on local disks).
- ``prepare_data_dir`` creates missing parents with the default mode and the dir itself
  with 0o700; an existing dir owned by this user and open to group or others is narrowed
  to 0o700. A dir owned by someone else is left as it is (it cannot be changed anyway).
- Problems with the dir itself (not a dir, no permission) raise ``ConfigError`` naming it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType

from kvstore.errors import ConfigError

LOCK_FILENAME = "LOCK"
DATA_DIR_MODE = 0o700

__all__ = ["DATA_DIR_MODE", "LOCK_FILENAME", "DataDirLock", "DataDirLocked", "prepare_data_dir"]


class DataDirLocked(ConfigError):
    """Another process (or another ``DataDirLock`` in this one) holds the data dir."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process (PID unknown)"
        super().__init__(
            f"data dir {data_dir} is locked by {holder}: another node is using it "
            f"(each node needs its own data dir; stop that process first)"
        )
        self.data_dir = data_dir
        self.pid = pid


def prepare_data_dir(path: Path) -> None:
    """Create ``path`` with mode 0o700, or narrow an existing one we own to 0o700."""
    path = Path(path)
    try:
        path.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        info = path.stat()
    except FileExistsError:
        raise ConfigError(f"data dir {path}: exists and is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"data dir {path}: cannot create: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"data dir {path}: exists and is not a directory")
    # mkdir's mode is filtered by the umask and ignored for an existing dir: check both.
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & ~DATA_DIR_MODE:
        try:
            path.chmod(DATA_DIR_MODE)
        except OSError as exc:
            raise ConfigError(f"data dir {path}: cannot chmod to 0o700: {exc.strerror}") from None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class DataDirLock:
    """An exclusive lock on a data dir, held from ``acquire()`` until ``release()``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILENAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock now, or raise ``DataDirLocked`` at once; write our PID into it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this DataDirLock")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"data dir {self.data_dir}: cannot open LOCK: {exc.strerror}"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise ConfigError(
                        f"data dir {self.data_dir}: cannot lock LOCK: {exc.strerror}"
                    ) from None
                raise DataDirLocked(self.data_dir, _read_pid(fd)) from None
            # Ours now: whatever PID a dead holder left is replaced.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)  # closing drops the flock too, if it was taken
            raise
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent). The LOCK file stays; it no longer names a PID."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # while still holding it: no reader sees our stale PID
        except OSError:
            pass  # informative only; closing below is what releases the lock
        finally:
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"DataDirLock({str(self.data_dir)!r}, held={self.held})"
