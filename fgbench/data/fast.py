"""Fast image loading for the many small JPEGs of fine-grained sets (engine zone: PIL, torch).

Three tools, used by the trainer's loaders and by ``fgbench data verify --deep``:

* :func:`load_rgb` decodes with a JPEG *draft*: libjpeg can scale by 1/2, 1/4 or 1/8 while it
  decodes, which skips most of the inverse DCT work. We ask for the smallest scale whose shorter
  side is still at least the size the pipeline needs, so no detail the model would see is lost.
  With CUB-like ~500x375 images that only kicks in for targets of 187 px or less; larger photos
  (Aircraft, Cars, user folders) gain at 224 and 448 too. It also crops the FGVC-Aircraft
  copyright banner (``crop_bottom``) in original-image pixels, scaled with the draft.
* :class:`CachedImageDataset` decodes every image once, resizes it so its shorter side is at most
  ``short_side`` (never upscaled), and stores all of them in one uint8 file that later epochs,
  runs and DataLoader workers memory-map: no JPEG decode after the first pass. The price is disk:
  raw pixels take several times the JPEG bytes (CUB at short side 256: about 3 GB).
* :func:`find_corrupt_images` decodes every file fully and returns the ones that fail.

Decisions:

* The cache key hashes every path with its size and mtime plus the resize settings, so an edited
  dataset or another scale gets a new cache instead of silently stale pixels. It is built under a
  file lock (two DDP ranks do not build it twice) into temporary files that are renamed into
  place, the index last: an interrupted build is never mistaken for a finished one.
* The memory map is opened lazily and dropped when pickled, so DataLoader workers (fork or
  spawn) each map the file themselves instead of receiving a copy of it.
* A corrupt image stops the build with :class:`CorruptImageError` naming the file, unless
  ``skip_corrupt``; then it is left out and counted in ``skipped`` (the trainer reports it).
* ``__getitem__`` returns a PIL image, so the recipe's torchvision transforms apply unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch.utils.data
from PIL import Image

from fgbench.data.images import CorruptImageError, _default_workers, find_corrupt_images, require_regular_file  # noqa: F401

CACHE_FORMAT = 1
AIRCRAFT_BANNER_PX = 20


def draft_request(size: tuple[int, int], target_short_side: int, crop_bottom: int = 0) -> tuple[int, int]:
    """The size to pass to ``Image.draft`` so that the shorter side stays >= target *after* the
    bottom ``crop_bottom`` rows (original pixels) are cut away."""
    w, h = size
    short = min(w, h - crop_bottom) if 0 < crop_bottom < h else min(w, h)
    if target_short_side >= short:
        return w, h
    t = int(target_short_side)
    return max(1, -(-w * t // short)), max(1, -(-h * t // short))  # integer ceil: no float rounding


def load_rgb(path: str | os.PathLike[str], target_short_side: int | None = None, *, crop_bottom: int = 0) -> Image.Image:
    """Decode ``path`` as an RGB image.

    For a JPEG and a ``target_short_side``, decoding happens at the smallest libjpeg scale
    (1, 1/2, 1/4, 1/8) whose shorter side is still >= ``target_short_side``; other formats are
    decoded at full size. ``crop_bottom`` removes that many rows of the *original* image from
    the bottom (20 for the FGVC-Aircraft banner). Any decoding failure raises
    :class:`CorruptImageError` naming the file; so does a file that is not a regular file (a
    FIFO named ``x.jpg`` would block the reader forever), which is never opened.
    """
    require_regular_file(path)
    try:
        with Image.open(path) as im:
            orig_w, orig_h = im.size
            if target_short_side and im.format == "JPEG":
                im.draft("RGB", draft_request(im.size, target_short_side, crop_bottom))
            rgb = im.convert("RGB")  # forces the decode inside the try
    except Exception as err:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, ValueError...)
        raise CorruptImageError(path, f"{type(err).__name__}: {err}") from None
    if crop_bottom:
        px = int(round(crop_bottom * rgb.height / orig_h))
        if 0 < px < rgb.height:
            rgb = rgb.crop((0, 0, rgb.width, rgb.height - px))
    return rgb


def resize_short_side(im: Image.Image, short_side: int) -> Image.Image:
    """Downscale so the shorter side is ``short_side`` (aspect kept); smaller images unchanged."""
    w, h = im.size
    short = min(w, h)
    if short <= short_side:
        return im
    scale = short_side / short
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if w <= h:
        size = (short_side, size[1])
    else:
        size = (size[0], short_side)
    return im.resize(size, Image.BILINEAR)


class DraftImageDataset(torch.utils.data.Dataset):
    """(path, label) items decoded on every access with :func:`load_rgb` (no cache)."""

    def __init__(self, items: Sequence[tuple[str, int]], target_short_side: int | None = None, *,
                 crop_bottom: int = 0, transform: Callable | None = None):
        self.items = list(items)
        self.target_short_side = target_short_side
        self.crop_bottom = crop_bottom
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        im = load_rgb(path, self.target_short_side, crop_bottom=self.crop_bottom)
        return (self.transform(im) if self.transform else im), label


def cache_key(items: Sequence[tuple[str, int]], short_side: int, crop_bottom: int = 0) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([CACHE_FORMAT, short_side, crop_bottom]).encode())
    for path, label in items:
        try:
            st = os.stat(path)
            sig = f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n"
        except OSError:
            sig = f"{path}\0{label}\0missing\n"
        h.update(sig.encode())
    return h.hexdigest()[:20]


class CachedImageDataset(torch.utils.data.Dataset):
    """Images resized to the recipe's scale, decoded once into a memory-mapped uint8 file.

    ``items``: (path, label) pairs. ``short_side``: images are downscaled so their shorter side
    is at most this (use the largest size the pipeline reads, e.g. ``int(test_size * 1.14)``).
    ``cache_dir`` holds ``<key>.u8`` (pixels), ``<key>.rows.npy`` (offset, height, width, label)
    and ``<key>.json`` (written last). ``skip_corrupt``: leave undecodable images out (counted in
    ``skipped``) instead of raising :class:`CorruptImageError`.
    """

    def __init__(self, items: Sequence[tuple[str, int]], short_side: int, cache_dir: str | os.PathLike[str], *,
                 skip_corrupt: bool = False, crop_bottom: int = 0, transform: Callable | None = None,
                 workers: int | None = None, progress: Callable | None = None):
        self.short_side = int(short_side)
        self.crop_bottom = crop_bottom
        self.transform = transform
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        items = [(str(p), int(y)) for p, y in items]
        self.key = cache_key(items, self.short_side, crop_bottom)
        self.data_path = self.cache_dir / f"{self.key}.u8"
        self.rows_path = self.cache_dir / f"{self.key}.rows.npy"
        self.meta_path = self.cache_dir / f"{self.key}.json"
        self.built_now = False
        if not self.meta_path.is_file():
            self._build_locked(items, skip_corrupt, workers, progress)
        meta = json.loads(self.meta_path.read_text())
        if meta["skipped_paths"] and not skip_corrupt:
            # built earlier with skip_corrupt; this caller wants corrupt images to be errors
            raise CorruptImageError(meta["skipped_paths"][0], "left out of the cache as corrupt")
        self.skipped_paths: list[str] = meta["skipped_paths"]
        self.skipped = len(self.skipped_paths)
        self.rows = np.load(self.rows_path)
        kept = set(range(len(items))) - set(meta["skipped_index"])
        self.items = [items[i] for i in sorted(kept)]
        self.targets = [int(y) for y in self.rows[:, 3]]
        self.labels = self.targets  # the trainer's name for it
        self.build_seconds = meta["build_seconds"]
        self._data: np.memmap | None = None

    # -- building -------------------------------------------------------------------------

    def _build_locked(self, items, skip_corrupt, workers, progress) -> None:
        lock_path = self.cache_dir / f"{self.key}.lock"
        with open(lock_path, "a+") as lock:
            try:
                import fcntl

                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # waits while another process builds it
            except ImportError:  # pragma: no cover
                pass
            if not self.meta_path.is_file():
                self._build(items, skip_corrupt, workers, progress)
                self.built_now = True

    def _decode(self, item: tuple[str, int]):
        path, _label = item
        try:
            im = load_rgb(path, self.short_side, crop_bottom=self.crop_bottom)
        except CorruptImageError as err:
            return err
        return np.asarray(resize_short_side(im, self.short_side), dtype=np.uint8)

    def _build(self, items, skip_corrupt, workers, progress) -> None:
        from fgbench.data.progress import ProgressMeter

        t0 = time.perf_counter()
        suffix = f".tmp-{os.getpid()}"
        tmp_data = self.data_path.with_name(self.data_path.name + suffix)
        tmp_rows = self.rows_path.with_name(self.rows_path.name + suffix)
        rows: list[tuple[int, int, int, int]] = []
        skipped_paths: list[str] = []
        skipped_index: list[int] = []
        meter = ProgressMeter(progress, "prepare", f"caching images at short side {self.short_side}", len(items), unit="images")
        offset = 0
        try:
            with open(tmp_data, "wb") as out, ThreadPoolExecutor(workers or _default_workers()) as pool:
                for i, result in enumerate(pool.map(self._decode, items, chunksize=8)):
                    if isinstance(result, CorruptImageError):
                        if not skip_corrupt:
                            raise result
                        skipped_paths.append(result.path)
                        skipped_index.append(i)
                        continue
                    h, w, _c = result.shape
                    out.write(result.tobytes())
                    rows.append((offset, h, w, items[i][1]))
                    offset += result.nbytes
                    meter.update(i + 1)
            if not rows:
                raise CorruptImageError(items[0][0] if items else "<no images>", "no image could be decoded")
            with open(tmp_rows, "wb") as f:
                np.save(f, np.asarray(rows, dtype=np.int64))
            os.replace(tmp_data, self.data_path)
            os.replace(tmp_rows, self.rows_path)
            meta = {
                "format": CACHE_FORMAT,
                "short_side": self.short_side,
                "crop_bottom": self.crop_bottom,
                "images": len(rows),
                "bytes": offset,
                "skipped_paths": skipped_paths,
                "skipped_index": skipped_index,
                "build_seconds": round(time.perf_counter() - t0, 3),
            }
            tmp_meta = self.meta_path.with_name(self.meta_path.name + suffix)
            tmp_meta.write_text(json.dumps(meta))
            os.replace(tmp_meta, self.meta_path)  # last: the cache exists from here on
        finally:
            for p in (tmp_data, tmp_rows):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
        meter.update(len(items), force=True)

    # -- reading --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.rows)

    def _open(self) -> np.memmap:
        self._data = np.memmap(self.data_path, dtype=np.uint8, mode="r")
        return self._data

    def image(self, i: int) -> np.ndarray:
        data = self._data if self._data is not None else self._open()
        off, h, w, _label = (int(v) for v in self.rows[i])
        return np.asarray(data[off : off + h * w * 3]).reshape(h, w, 3)

    def __getitem__(self, i: int):
        im = Image.fromarray(self.image(i))
        label = int(self.rows[i, 3])
        return (self.transform(im) if self.transform else im), label

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_data"] = None  # each worker maps the file itself
        return state
