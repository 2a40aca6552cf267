"""Checking image files without torch: what ``fgbench data verify --deep`` (also from the TUI,
which never imports torch) and the loaders share.

A file named like an image that is not a regular file (a FIFO, a device, a folder) is never
opened: reading a FIFO would block forever.
"""

from __future__ import annotations

import os
import stat
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from PIL import Image


class CorruptImageError(Exception):
    """An image file that cannot be decoded. ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str | os.PathLike[str], reason: str = ""):
        self.path = str(path)
        # the line names the file once: Pillow's own message often quotes it again
        # ("cannot identify image file '/data/x.png'")
        reason = reason.replace(f" {self.path!r}", "").replace(f" {self.path}", "")
        self.reason = reason
        super().__init__(f"{self.path}: cannot decode image ({reason})" if reason else f"{self.path}: cannot decode image")


def require_regular_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`CorruptImageError` unless ``path`` is a regular file (links to one are fine)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise CorruptImageError(path, f"{type(err).__name__}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "a device or socket"
        raise CorruptImageError(path, f"not a regular file but {kind}; not read")


PICTURE_MAX_PIXELS = 40_000_000
"""A picture shown in the TUI is decoded only up to this size (about 120 MB as RGB)."""
PICTURE_MAX_BYTES = 64 << 20


def open_picture(path: str | os.PathLike[str], *, fit: int = 512, max_pixels: int = PICTURE_MAX_PIXELS) -> Image.Image:
    """One image decoded for display, at most ``fit`` pixels a side, or :class:`CorruptImageError`
    with the reason (a truncated file, a header that claims more pixels than ``max_pixels``, a
    decompression bomb, an oversized text chunk, not a regular file): a picture that cannot be
    shown must never take the program showing it down."""
    require_regular_file(path)
    size = os.stat(path).st_size
    if size > PICTURE_MAX_BYTES:
        raise CorruptImageError(path, f"a {size / 2**20:.0f} MB file, more than {PICTURE_MAX_BYTES >> 20} MB: not read")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise CorruptImageError(path, f"its header claims {w} x {h} pixels, more than "
                                                  f"{max_pixels / 1e6:.0f} megapixels: not decoded")
                im.draft("RGB", (fit, fit))  # JPEG: decode at a reduced scale
                im.load()
                out = im.convert("RGB")
        out.thumbnail((fit, fit))
        return out
    except CorruptImageError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises many kinds for hostile files
        raise CorruptImageError(path, f"{type(err).__name__}: {err}") from None


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _check_one(path: str) -> tuple[str, str] | None:
    try:
        require_regular_file(path)
        with Image.open(path) as im:
            im.load()
    except Exception as err:  # noqa: BLE001
        return path, f"{type(err).__name__}: {err}"
    return None


def find_corrupt_images(paths: Sequence[str], *, progress: Callable | None = None,
                        cancel: threading.Event | None = None, workers: int | None = None) -> list[tuple[str, str]]:
    """Fully decode every image; return (path, reason) for those that fail, in input order.

    Threads, not processes: PIL releases the GIL while it decodes. ``progress`` receives
    ``fgbench.data.progress.Progress`` objects (stage "verify", unit "images").
    """
    from fgbench.data.progress import Cancelled, ProgressMeter

    meter = ProgressMeter(progress, "verify", "decoding images", len(paths), unit="images")
    bad: list[tuple[str, str]] = []
    with ThreadPoolExecutor(workers or _default_workers()) as pool:
        for i, result in enumerate(pool.map(_check_one, paths, chunksize=16), 1):
            if cancel is not None and cancel.is_set():
                pool.shutdown(cancel_futures=True)
                raise Cancelled()
            if result is not None:
                bad.append(result)
            meter.update(i)
    meter.update(len(paths), force=True)
    return bad
