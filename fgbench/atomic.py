"""Atomic file writes (pure, stdlib only: imported by the CLI's fast paths).

Write to a temporary file beside the target, fsync, then rename over it: a crash leaves either the old
file or the new one, never half of one. Used for recipes, summaries, indexes and checkpoints.

The temporary file is ``.<name>.<random>.tmp`` (:func:`stale_temps` finds those a kill left). A
full disk is reported as :class:`DiskFullError`, one line naming the file and the free space,
also when the writer (``torch.save``) turned the ``ENOSPC`` into an error of its own.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


class DiskFullError(OSError):
    """A write failed for lack of space: ``str()`` is one line naming the file and the free space."""

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def __str__(self) -> str:
        return f"{self.filename}: disk full ({free_text(Path(str(self.filename)).parent)} free)"


def free_text(path: str | os.PathLike[str]) -> str:
    """Free space on the disk holding ``path`` (the nearest existing folder), for messages."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        n = float(shutil.disk_usage(p).free)
    except OSError:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "unknown"  # pragma: no cover


def disk_full_cause(err: BaseException | None) -> OSError | None:
    """The ``ENOSPC`` error in ``err``'s chain (cause or context), if there is one."""
    seen = 0
    while err is not None and seen < 20:
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return err
        err = err.__cause__ or err.__context__
        seen += 1
    return None


def stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files that interrupted :func:`atomic_write` calls for ``path`` left beside it."""
    p = Path(path)
    try:
        return sorted(p.parent.glob(f".{p.name}.*.tmp"))
    except OSError:
        return []


def temp_target(name: str) -> str | None:
    """The file name an :func:`atomic_write` temporary named ``name`` is for (``.launch.json.k3x9.tmp``
    -> ``launch.json``), or None when ``name`` is not one."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    target, dot, _random = name[1:-len(".tmp")].rpartition(".")
    return target if dot and target else None


def _umask() -> int:
    # os.umask can only be read by setting it; put it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(f)`` on a binary temporary file, then move it over ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise DiskFullError(p) from err
        raise
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would (0666 minus umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if disk_full_cause(err) is not None and not isinstance(err, DiskFullError):
            raise DiskFullError(p) from err
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
