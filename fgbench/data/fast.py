"""Fast image loading for the many small JPEGs of fine-grained sets (engine zone: PIL, torch).

Three tools, used by the trainer's loaders and by ``fgbench data verify --deep``:

* :func:`load_rgb` decodes with a JPEG *draft*: libjpeg can scale by 1/2, 1/4 or 1/8 while it
  decodes, which skips most of the inverse DCT work. The scale is chosen from a
  :class:`DecodeNeed`, what the transform's first resampling step needs of the image: a draft is
  used only when every output the transform can produce still comes from at least as many source
  pixels as it has (for RandomResizedCrop: its smallest crop at the extreme aspect ratio; for
  Resize then CenterCrop: the resize target): no crop is upsampled that full decoding would not
  have upsampled. It is NOT lossless: the pixels differ from a full decode (libjpeg's scaled IDCT
  is another filter than the transform's antialiased resize), so the trainer asks for it only
  with the opt-in ``data.decode = "reduced"``. With the usual
  RandomResizedCrop scale (0.08, 1) this rules drafts out for training on photos below about
  2,600 x 2,000 px at 224; it helps evaluation (Resize 255 then crop 224 of a 1000 x 700 photo
  decodes at 1/2) and small targets. It also crops the FGVC-Aircraft copyright banner
  (``crop_bottom``) in original-image pixels, scaled with the draft.
* :class:`CachedImageDataset` decodes every image once, exactly as :func:`load_rgb` does for the
  same need (full size, or the reduced draft), and stores all of them in one uint8 file that later
  epochs, runs and DataLoader workers memory-map: no JPEG decode after the first pass, and the
  same pixels the standard loader would hand to the transform. The price is disk: raw pixels,
  width x height x 3 bytes per image (0.56 MB at 500x375; CUB's 11,788 images at that size: 6.6 GB).
* :func:`find_corrupt_images` decodes every file fully and returns the ones that fail.

Decisions:

* The cache key hashes every path with its size and mtime plus the decode need, so an edited
  dataset or another scale gets a new cache instead of silently stale pixels. It is built under a
  file lock (two DDP ranks do not build it twice) into temporary files that are renamed into
  place, the index last: an interrupted build is never mistaken for a finished one.
* The memory map is opened lazily and dropped when pickled, so DataLoader workers (fork or
  spawn) each map the file themselves instead of receiving a copy of it.
* A corrupt image stops the build with :class:`CorruptImageError` naming the file, unless
  ``skip_corrupt``; then its pixels are left out (``skipped``, ``skipped_paths``) but the item keeps
  its position and label: ``len`` and ``labels`` are the list's, so a split drawn over them does not
  depend on which images decoded, and reading a skipped item raises :class:`CorruptImageError`, as
  decoding it would (the trainer's loaders skip and count it when they meet it, as with any loader).
  The files on disk hold only the decoded images (the format did not change for this).
* ``__getitem__`` returns a PIL image, so the recipe's torchvision transforms apply unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch.utils.data
from PIL import Image

from fgbench.data.images import CorruptImageError, _default_workers, find_corrupt_images, require_regular_file  # noqa: F401

CACHE_FORMAT = 2  # 2: a decode need (full size, or the reduced draft) instead of a resized short side
AIRCRAFT_BANNER_PX = 20


@dataclass(frozen=True)
class DecodeNeed:
    """The least a transform needs of a decoded image (after the banner crop), in decoded pixels:
    ``short`` for the shorter side, ``width`` and ``height`` for each side, ``area`` for width x
    height (RandomResizedCrop: its smallest crop at the extreme aspect ratio). A need of zeros
    allows any scale; :meth:`fraction` says how far an image may be scaled down."""

    short: float = 0
    width: float = 0
    height: float = 0
    area: float = 0

    def fraction(self, w: int, h: int) -> float:
        """The smallest scale factor of a ``w`` x ``h`` image that still meets the need (1 or
        more: decode at full size)."""
        if w <= 0 or h <= 0:
            return 1.0
        return max(self.short / min(w, h), self.width / w, self.height / h, math.sqrt(self.area / (w * h)))

    def union(self, other: "DecodeNeed | None") -> "DecodeNeed | None":
        """What both need (None, full size, wins)."""
        if other is None:
            return None
        return DecodeNeed(max(self.short, other.short), max(self.width, other.width),
                          max(self.height, other.height), max(self.area, other.area))

    def key(self) -> list[float]:
        return [self.short, self.width, self.height, self.area]


def as_need(need: "DecodeNeed | int | None") -> DecodeNeed | None:
    """A bare int is a shorter side."""
    if need is None or isinstance(need, DecodeNeed):
        return need
    return DecodeNeed(short=int(need)) if need else None


def draft_request(size: tuple[int, int], need: "DecodeNeed | int", crop_bottom: int = 0) -> tuple[int, int]:
    """The size to pass to ``Image.draft`` so that the image *after* the bottom ``crop_bottom``
    rows (original pixels) are cut away still meets ``need`` (an int: a shorter side). Pillow
    picks the largest scale 1/k whose ``ceil(side / k)`` is at least the request on both axes."""
    want = as_need(need)
    w, h = size
    hc = h - crop_bottom if 0 < crop_bottom < h else h
    f = want.fraction(w, hc) if want is not None else 1.0
    if f >= 1:
        return w, h
    return max(1, math.ceil(w * f - 1e-9)), max(1, math.ceil(h * f - 1e-9))


def load_rgb(path: str | os.PathLike[str], need: "DecodeNeed | int | None" = None, *,
             crop_bottom: int = 0) -> Image.Image:
    """Decode ``path`` as an RGB image.

    For a JPEG and a ``need`` (:class:`DecodeNeed`; an int is a shorter side), decoding happens
    at the smallest libjpeg scale (1, 1/2, 1/4, 1/8) that still meets it; other formats, and
    JPEGs without a need, are decoded at full size. ``crop_bottom`` removes that many rows of
    the *original* image from the bottom (20 for the FGVC-Aircraft banner). Any decoding failure
    raises :class:`CorruptImageError` naming the file; so does a file that is not a regular file (a
    FIFO named ``x.jpg`` would block the reader forever), which is never opened.
    """
    require_regular_file(path)
    try:
        with Image.open(path) as im:
            orig_w, orig_h = im.size
            if need and im.format == "JPEG":
                req = draft_request(im.size, need, crop_bottom)
                if req != im.size:
                    im.draft("RGB", req)
            rgb = im.convert("RGB")  # forces the decode inside the try
    except Exception as err:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, ValueError...)
        raise CorruptImageError(path, f"{type(err).__name__}: {err}") from None
    if crop_bottom:
        px = int(round(crop_bottom * rgb.height / orig_h))
        if 0 < px < rgb.height:
            rgb = rgb.crop((0, 0, rgb.width, rgb.height - px))
    return rgb




class DraftImageDataset(torch.utils.data.Dataset):
    """(path, label) items decoded on every access with :func:`load_rgb` (no cache)."""

    def __init__(self, items: Sequence[tuple[str, int]], need: DecodeNeed | int | None = None, *,
                 crop_bottom: int = 0, transform: Callable | None = None):
        self.items = list(items)
        self.need = as_need(need)
        self.crop_bottom = crop_bottom
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        im = load_rgb(path, self.need, crop_bottom=self.crop_bottom)
        return (self.transform(im) if self.transform else im), label


def cache_key(items: Sequence[tuple[str, int]], need: DecodeNeed | None, crop_bottom: int = 0) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([CACHE_FORMAT, need.key() if need is not None else None, crop_bottom]).encode())
    for path, label in items:
        try:
            st = os.stat(path)
            sig = f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n"
        except OSError:
            sig = f"{path}\0{label}\0missing\n"
        h.update(sig.encode())
    return h.hexdigest()[:20]


class CachedImageDataset(torch.utils.data.Dataset):
    """Images decoded once, as :func:`load_rgb` decodes them for ``need``, into a memory-mapped
    uint8 file.

    ``items``: (path, label) pairs. ``need``: what every transform that will read the cache needs
    (:meth:`DecodeNeed.union` of them; an int is a shorter side; None: full size). A JPEG is
    stored at the draft scale for it, never resized otherwise, so a transform receives
    exactly the pixels it would receive from :func:`load_rgb`.
    ``cache_dir`` holds ``<key>.u8`` (pixels), ``<key>.rows.npy`` (offset, height, width, label)
    and ``<key>.json`` (written last). ``skip_corrupt``: leave undecodable images' pixels out (counted
    in ``skipped``; reading one raises :class:`CorruptImageError`) instead of refusing to build.
    """

    def __init__(self, items: Sequence[tuple[str, int]], need: DecodeNeed | int | None,
                 cache_dir: str | os.PathLike[str], *, skip_corrupt: bool = False, crop_bottom: int = 0,
                 transform: Callable | None = None, workers: int | None = None, progress: Callable | None = None):
        self.need = as_need(need)
        self.crop_bottom = crop_bottom
        self.transform = transform
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        items = [(str(p), int(y)) for p, y in items]
        self.key = cache_key(items, self.need, crop_bottom)
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
        # Every item keeps its position (and its label, from ``items``): a skipped one maps to no row
        # and raises when it is read, so a split drawn over the positions is the same with or
        # without the images that failed to decode.
        skipped_index = set(meta["skipped_index"])
        self.row_of = np.full(len(items), -1, dtype=np.int64)
        kept = [i for i in range(len(items)) if i not in skipped_index]
        self.row_of[kept] = np.arange(len(kept))
        self.items = items
        self.targets = [y for _, y in items]
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
            im = load_rgb(path, self.need, crop_bottom=self.crop_bottom)
        except CorruptImageError as err:
            return err
        return np.asarray(im, dtype=np.uint8)

    def _build(self, items, skip_corrupt, workers, progress) -> None:
        from fgbench.data.progress import ProgressMeter

        t0 = time.perf_counter()
        suffix = f".tmp-{os.getpid()}"
        tmp_data = self.data_path.with_name(self.data_path.name + suffix)
        tmp_rows = self.rows_path.with_name(self.rows_path.name + suffix)
        rows: list[tuple[int, int, int, int]] = []
        skipped_paths: list[str] = []
        skipped_index: list[int] = []
        meter = ProgressMeter(progress, "prepare", "caching decoded images", len(items), unit="images")
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
                "need": self.need.key() if self.need is not None else None,
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
        return len(self.items)

    def _open(self) -> np.memmap:
        self._data = np.memmap(self.data_path, dtype=np.uint8, mode="r")
        return self._data

    def image(self, i: int) -> np.ndarray:
        """Item ``i``'s pixels; :class:`CorruptImageError` for an item left out as undecodable."""
        row = int(self.row_of[i])
        if row < 0:
            raise CorruptImageError(self.items[i][0], "left out of the cache as undecodable")
        data = self._data if self._data is not None else self._open()
        off, h, w, _label = (int(v) for v in self.rows[row])
        return np.asarray(data[off : off + h * w * 3]).reshape(h, w, 3)

    def __getitem__(self, i: int):
        im = Image.fromarray(self.image(i))
        return (self.transform(im) if self.transform else im), self.targets[i]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_data"] = None  # each worker maps the file itself
        return state
