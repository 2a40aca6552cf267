"""The one guarded way to read a run-directory file (pure zone: stdlib only).

A run directory is written by a trainer, but anything can end up in it: a FIFO in place of
``summary.json`` (which blocks ``open()`` until a writer appears, forever), a symlink to
``/dev/zero`` (which never ends), a gigabyte of JSON, ten thousand nested brackets (a
``RecursionError`` in the parser, or later in whatever walks the result). One bad file must not
hang or crash a reader of the whole runs root: the CLI's ``runs list``, the TUI's run store and
``--resume`` list every other run as usual and show this one as *damaged*, with the reason.

So every read of a file in a run directory goes through :func:`read_bytes` (and its JSON and TOML
wrappers here, and :func:`open_regular` for the incremental readers), which:

* refuses anything but a regular file, before opening it (``stat`` follows a symlink, so a link
  to a device is refused too) and again through the open descriptor (``fstat``), so a path swapped
  for a FIFO in between cannot block either; the file is opened with ``O_NONBLOCK`` (and
  ``O_NOCTTY``: a terminal device can never become ours);
* reads at most the cap of the file's kind (:data:`CAPS`) plus one byte, whatever the file claims;
* refuses JSON nested deeper than :data:`MAX_JSON_DEPTH` before parsing it;
* raises only :class:`RunFileError`, whose text is one line: ``FILE: why``.

Symlinks to regular files are followed (a run directory copied with links stays readable); a link
out of the root is read like any other file, under the same caps, and displayed only after
:func:`fgbench.textsafe.safe` has made it printable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fgbench.textfile import file_kind, size_text
from fgbench.tomlread import tomllib

KB, MB = 1 << 10, 1 << 20

CAPS: dict[str, int] = {
    "recipe.toml": 1 * MB,
    "launch.toml": 1 * MB,
    "run.json": 1 * MB,
    "summary.json": 4 * MB,
    "launch.json": 256 * KB,
    "exit.json": 64 * KB,
    ".lock": 64 * KB,
    "classes.json": 64 * MB,
    "confusion.json": 512 * MB,
    "confusion.npy": 512 * MB,
    "predictions.json": 512 * MB,
    "metrics.jsonl": 4096 * MB,
}
"""Largest accepted size, per file name. The small records are a few hundred bytes when the
trainer writes them; the per-class files grow with the number of classes (10,000 classes: a
confusion matrix of 10^8 counts); ``metrics.jsonl`` grows with the run (a million step events is
about 200 MB) and is read incrementally, a line of it at most :data:`MAX_LINE_BYTES`."""

DEFAULT_CAP = 16 * MB
"""The cap of a run-directory file not named in :data:`CAPS`."""

MAX_LINE_BYTES = 1 * MB
"""The longest ``metrics.jsonl`` line read as an event (the trainer's longest, ``run_started``
with the resolved recipe and the class names of a large data set, is far below)."""

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in any run-directory JSON (the trainer writes
at most 5 levels)."""

class RunFileError(Exception):
    """A run-directory file exists but cannot be used; ``str()`` is ``FILE: why`` on one line."""


def cap_for(name: str) -> int:
    return CAPS.get(name, DEFAULT_CAP)


def _why(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def open_regular(path: str | os.PathLike[str], *, name: str | None = None) -> int | None:
    """An open, read-only, non-blocking descriptor on the regular file ``path``; None when the
    file does not exist. :class:`RunFileError` when it is anything else or cannot be opened."""
    name = name or Path(path).name
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as err:  # ELOOP (a symlink loop), EACCES; ValueError: a NUL byte
        raise RunFileError(f"{name}: cannot read: {_why(err)}") from None
    kind = file_kind(st.st_mode)
    if kind:
        raise RunFileError(f"{name}: is {kind}, not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise RunFileError(f"{name}: cannot read: {_why(err)}") from None
    try:
        kind = file_kind(os.fstat(fd).st_mode)
    except OSError as err:
        os.close(fd)
        raise RunFileError(f"{name}: cannot read: {_why(err)}") from None
    if kind:
        os.close(fd)
        raise RunFileError(f"{name}: is {kind}, not a regular file")
    return fd


def read_fd(fd: int, limit: int, name: str, *, offset: int = 0, more_ok: bool = False) -> bytes:
    """At most ``limit`` bytes from ``offset``; :class:`RunFileError` when there are more, unless
    ``more_ok`` (a tail read in slices: the rest is read next time)."""
    chunks, total = [], 0
    want = limit if more_ok else limit + 1
    try:
        while total < want:
            chunk = os.pread(fd, min(1 << 20, want - total), offset + total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as err:
        raise RunFileError(f"{name}: cannot read: {_why(err)}") from None
    if total > limit:
        raise RunFileError(f"{name}: larger than {size_text(limit)}, the most accepted for it")
    return b"".join(chunks)


def read_bytes(path: str | os.PathLike[str], *, limit: int | None = None) -> bytes | None:
    """The bytes of a run-directory file, None when it does not exist; :class:`RunFileError`
    when it is not a regular file, is larger than its cap (``limit``, default by its name) or
    cannot be read."""
    name = Path(path).name
    fd = open_regular(path, name=name)
    if fd is None:
        return None
    try:
        size = os.fstat(fd).st_size
        cap = cap_for(name) if limit is None else limit
        if size > cap:
            raise RunFileError(f"{name}: {size} bytes, larger than {size_text(cap)}, the most accepted for it")
        return read_fd(fd, cap, name)
    finally:
        os.close(fd)


def too_deep(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """The JSON text nests arrays and objects deeper than ``limit``. Cheap for ordinary files:
    only a text with more than ``limit`` brackets is scanned (strings skipped), and the scan stops
    at the first level past the limit."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def loads_json(data: bytes | str, name: str) -> Any:
    """Parse one JSON document of a run-directory file; :class:`RunFileError` when it is not
    UTF-8, not JSON or nested deeper than :data:`MAX_JSON_DEPTH`."""
    if too_deep(data):
        raise RunFileError(f"{name}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as err:
        raise RunFileError(f"{name}: not UTF-8 text (byte {err.start})") from None
    try:
        return json.loads(text)
    except RecursionError:  # pragma: no cover - too_deep refuses these first
        raise RunFileError(f"{name}: JSON nested too deeply") from None
    except ValueError as err:
        raise RunFileError(f"{name}: not JSON ({_why(err)})") from None


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """The JSON of a run-directory file, None when it does not exist; :class:`RunFileError` when
    it cannot be read (see :func:`read_bytes`) or is not JSON (see :func:`loads_json`)."""
    raw = read_bytes(path)
    return None if raw is None else loads_json(raw, Path(path).name)


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The TOML table of a run-directory file, None when it does not exist; :class:`RunFileError`
    when it cannot be read or is not UTF-8 TOML."""
    name = Path(path).name
    raw = read_bytes(path)
    if raw is None:
        return None
    if too_deep(raw):
        raise RunFileError(f"{name}: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RunFileError(f"{name}: not UTF-8 text (byte {err.start})") from None
    except (tomllib.TOMLDecodeError, RecursionError) as err:
        raise RunFileError(f"{name}: not TOML ({_why(err)})") from None


def read_text(path: str | os.PathLike[str]) -> str | None:
    """A run-directory file as text (undecodable bytes replaced), None when it does not exist."""
    raw = read_bytes(path)
    return None if raw is None else raw.decode("utf-8", errors="replace")


def tail_bytes(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The last ``max_bytes`` bytes of a run-directory file (a log), b"" when it is missing or
    cannot be read (a log is extra information)."""
    try:
        fd = open_regular(path)
    except RunFileError:
        return b""
    if fd is None:
        return b""
    try:
        size = os.fstat(fd).st_size
        return read_fd(fd, max_bytes, Path(path).name, offset=max(0, size - max_bytes))
    except (OSError, RunFileError):
        return b""
    finally:
        os.close(fd)
