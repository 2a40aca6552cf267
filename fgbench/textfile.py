"""Reading a small text file the user named (a recipe, ``settings.toml``) without ever hanging or
running out of memory (pure zone).

The file type is checked before anything is read: a FIFO would block ``open()`` until a writer
appears, and a device such as ``/dev/zero`` never ends. The file is opened with ``O_NONBLOCK`` and
checked again through the open descriptor (``fstat``), so a path swapped for a FIFO between the two
checks cannot block either, and at most ``limit + 1`` bytes are ever read.
"""

from __future__ import annotations

import os
import stat

from fgbench.errors import UserError
from fgbench.textsafe import safe

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is in words ("a FIFO (named pipe)", ...)."""
    if stat.S_ISREG(mode):
        return None
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def size_text(n: int) -> str:
    return f"{n // (1 << 20)} MB" if n >= 1 << 20 else f"{n // 1024} kB"


def read_text_file(path: str | os.PathLike[str], limit: int, what: str = "file") -> str:
    """The UTF-8 text of ``path``, or a UserError ``PATH: why`` (missing, not a regular file,
    larger than ``limit`` bytes, unreadable, not UTF-8)."""
    shown = safe(os.fspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{shown}: file not found") from None
    except NotADirectoryError:
        raise UserError(f"{shown}: file not found (a part of the path is not a directory)") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the path
        why = getattr(err, "strerror", None) or str(err)
        raise UserError(f"{shown}: cannot read the {what}: {safe(why)}") from None
    kind = file_kind(st.st_mode)
    if kind:
        raise UserError(f"{shown}: is {kind}, not a {what} file")
    if st.st_size > limit:
        raise UserError(f"{shown}: {st.st_size} bytes is too large for a {what} (at most {size_text(limit)})")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise UserError(f"{shown}: cannot read the {what}: {safe(err.strerror or str(err))}") from None
    try:
        kind = file_kind(os.fstat(fd).st_mode)
        if kind:
            raise UserError(f"{shown}: is {kind}, not a {what} file")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as err:
        raise UserError(f"{shown}: cannot read the {what}: {safe(err.strerror or str(err))}") from None
    finally:
        os.close(fd)
    if total > limit:
        raise UserError(f"{shown}: too large for a {what} (at most {size_text(limit)})")
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{shown}: not UTF-8 text (byte {err.start}): a {what} is a UTF-8 TOML file") from None
