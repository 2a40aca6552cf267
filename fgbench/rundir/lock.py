"""One process trains in a run directory at a time: an OS file lock, held while training.

Decisions:

* ``flock(LOCK_EX)`` on ``<run>/.lock``, held for the whole life of the trainer. The kernel drops
  it when the process dies, however it dies (SIGKILL, the OOM killer, a power cut of a node on a
  shared file system), so a stale lock is never a problem: the next taker just gets it and
  rewrites the holder record. No pid files to clean up, no timeouts to guess.
* The file's content names the holder (pid, start time, host, command, since) so that a refused
  second ``fgbench run`` can say who has the run. The content is advisory; the lock is the truth.
* Readers ask "is someone training here?" by trying ``LOCK_SH | LOCK_NB`` and letting go at once.
  That works across hosts where the file system supports locks (NFS v4, Lustre, GPFS), where a
  pid check cannot. Because a reader holds the shared lock for microseconds, a trainer taking the
  lock retries for a moment before it reports the run as busy.
* Only the process that took the lock holds it. A child forked without exec (a ``DataLoader``
  worker) would otherwise share the locked descriptor and keep the run locked after its trainer
  was killed, until the worker noticed (seconds during which the run read ``running`` and
  ``--resume`` named a dead pid): each forked child closes its copy at once
  (``os.register_at_fork``), which leaves the lock with the parent. ``O_CLOEXEC`` does the same for
  children that exec.
* ``--nproc`` training: the launcher process holds the lock and tells its workers so through
  ``FGBENCH_RUN_LOCKED`` (the path of the run), so rank 0 does not try to take it a second time.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

from fgbench.rundir import files, procs
from fgbench.rundir.layout import LOCK_FILE

LOCKED_ENV = "FGBENCH_RUN_LOCKED"
"""Set by a process that holds a run's lock for the child processes it starts to train in it."""


class RunBusy(Exception):
    """The run directory is locked by another process."""

    def __init__(self, run_dir: Path, holder: dict[str, Any] | None):
        self.run_dir = Path(run_dir)
        self.holder = holder or {}
        super().__init__(f"{run_dir}: in use by {describe(self.holder)}; wait for it to end or stop it first")


def describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    parts = [f"pid {holder.get('pid', '?')}"]
    if holder.get("host"):
        parts.append(f"on {holder['host']}")
    if holder.get("command"):
        parts.append(f"({holder['command']})")
    if isinstance(holder.get("since"), (int, float)):
        parts.append("since " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"])))
    return " ".join(parts)


def open_lock_file(path: Path, flags: int) -> int:
    """The lock file, opened; OSError when it cannot be, or is not a regular file.

    O_NOFOLLOW: the lock file is ours; a link planted in its place is refused, not followed.
    O_NONBLOCK: a FIFO planted in its place would block ``open()`` until a writer appears."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0), 0o666)
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd


def check(path: str | os.PathLike[str]) -> str | None:
    """Why the lock file at ``path`` is unusable (a FIFO, a device, a symlink), or None when it is
    a regular file or absent."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return None
    kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) \
        else "a directory" if stat.S_ISDIR(st.st_mode) else "a device or socket"
    return f"{LOCK_FILE}: is {kind}, not a regular file"


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 65536)
        value = files.loads_json(data, LOCK_FILE) if data.strip() else {}
    except (OSError, files.RunFileError):
        return {}
    return value if isinstance(value, dict) else {}


_HELD: "set[RunLock]" = set()  # the locks this process holds


def _forget_in_child() -> None:
    """In a forked child: close its copies of the locked descriptors (closing, not unlocking: an
    unlock would release the parent's lock, since both share one open file description)."""
    for lock in list(_HELD):
        fd, lock.fd = lock.fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class RunLock:
    """``with RunLock(run_dir).acquire(): ...`` or ``lock.acquire()`` ... ``lock.release()``."""

    def __init__(self, run_dir: str | os.PathLike[str]):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self, *, command: str | None = None, patience_s: float = 1.0) -> "RunLock":
        """Take the lock or raise :class:`RunBusy` naming the holder."""
        fd = open_lock_file(self.path, os.O_RDWR | os.O_CREAT)
        deadline = time.monotonic() + patience_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise RunBusy(self.run_dir, holder) from None
                time.sleep(0.02)  # a reader's probe holds the shared lock for microseconds
        record = {**procs.identity(), "command": command or " ".join(["fgbench", *sys.argv[1:3]]).strip(),
                  "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        self.fd = fd
        _HELD.add(self)
        return self

    def release(self) -> None:
        if self.fd is not None:
            _HELD.discard(self)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> "RunLock":
        if self.fd is None:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who trains in the run now: the holder record (possibly ``{}``), or None when nobody holds the
    lock. None also when there is no lock file (a run made before locks, or one never started)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = open_lock_file(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return _read_holder(fd)
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def locked_by_parent(run_dir: str | os.PathLike[str]) -> bool:
    """This process was started by one that holds the run's lock for it (``--nproc``)."""
    value = os.environ.get(LOCKED_ENV)
    return value is not None and bool(value) and Path(value).absolute() == Path(run_dir).absolute()
