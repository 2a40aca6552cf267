"""Datasets and loaders for the trainer: splits, per-epoch order, augmentation seeding, device loading.

Decisions:

* **Everything random is a function of its position**, so that a resumed run sees exactly what an
  uninterrupted one would have seen, whatever the number of workers. The training order of an
  epoch is ``randperm`` from a generator seeded by (seed, epoch); the augmentation of one sample is
  drawn after seeding torch's CPU generator with (seed, epoch, sample) (``default_generator.manual_seed``,
  about 1 us; ``torch.manual_seed`` also walks every accelerator backend and cost 60-90 us a sample). The batch sampler therefore yields
  ``(epoch, position)`` pairs instead of bare indices, which also works with persistent workers
  (the dataset copy inside a worker never needs to be told the epoch). In the main process
  (``workers = 0``) the seeding happens inside ``fork_rng`` so it never disturbs the global stream
  that MixUp/CutMix and dropout draw from (and that the checkpoint saves).
* One pool of persistent workers per stage serves the training epochs and the stage's evaluation
  splits (``StageDataset`` keys are ``(epoch, position)`` or ``(split, position)``; the batch
  sampler, which runs in the main process, is switched between them), so workers start once per
  stage, not once per epoch and evaluation.
* ``data.loader = "auto"`` (:func:`choose_loader`) picks ``device``, ``cached`` or ``standard`` for
  the data; with full-size decoding (``data.decode = "full"``, the default) every choice hands the
  model the same images: the cache stores the full decode, the device
  loader stacks what the standard transform's deterministic steps give and normalises with the
  same arithmetic, and the transform's tensor tail is fused with the same operations
  (:class:`ToNormalizedTensor`).
* Resuming in the middle of an epoch is skipping the first ``start_batch`` batches of that epoch's
  permutation: no sample is decoded twice.
* The validation split is stratified (per class, ``round(n * fraction)``, at least one image when
  the class has two or more) and seeded by ``data.val_seed`` alone, so changing the training seed
  never moves images between train and validation. It uses the test transform.
* Undecodable images never raise inside a worker (the DataLoader would re-wrap the exception into
  a multi-line message). The dataset returns a ``Corrupt`` marker; the collate function drops it
  and hands the path to the training loop, which stops with a one-line error naming the file, or
  counts it when ``data.skip_corrupt`` is set.
* ``loader = "device"`` holds a whole split as uint8 tensors on the training device and does
  pad-and-random-crop and flips in batches there, with no DataLoader and no worker processes (the
  airbench approach). It is for small images; other augmentations are refused with the field name.
* Workers ignore SIGINT/SIGTERM: a Ctrl-C reaches the whole process group, and only the trainer
  should react to it (it finishes the step and checkpoints), not die of a dead worker. Because
  they ignore SIGTERM, Python's multiprocessing exit handler (SIGTERM, then wait) would wait for
  them forever when a script exits without ``close()``; an exit handler of ours, which runs
  before it, shuts down every live worker pool the clean way first. A parent that dies without
  exit handlers (SIGKILL) is noticed by PyTorch's worker watchdog within seconds. (Not
  ``PR_SET_PDEATHSIG``: it fires when the forking *thread* ends, which would kill the workers of
  a loader first iterated in a short-lived thread.)
* The device loader honours ``data.skip_corrupt`` like the others: undecodable images are left
  out of the stacked split and reported (once) with the first batch.
* Under DDP (``shard = (rank, world)``) every process draws the same global permutation and
  batch as a single process with the global batch size would, and keeps positions
  ``rank::world`` of each batch: the union of one step's shards is exactly the single-process
  batch, and per-sample augmentation seeds make each image's crop the same too. The device
  loader draws its crop/flip numbers for the whole global batch and keeps its share. Evaluation
  splits are sharded the same way (``rank::world`` of the split); the trainer sums the counts.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import math
import os
import random
import signal
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from fgbench.data import transforms
from fgbench.data.index import DatasetIndex
from fgbench.errors import BadImage, UserError

if TYPE_CHECKING:
    from fgbench.recipe import DataConfig

MASK64 = (1 << 64) - 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 over the parts): nearby inputs give unrelated seeds."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & MASK64)) & MASK64
        h = (h + 0x9E3779B97F4A7C15) & MASK64
        z = h
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        h = z ^ (z >> 31)
    return h & ((1 << 63) - 1)


# ------------------------------------------------------------------------------------ decoding

DECODE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError)


def _fast():
    try:
        from fgbench.data import fast
    except ImportError:
        return None
    return fast


def decode_image(path: str, draft=None, crop_bottom: int = 0):
    """PIL RGB image, JPEGs decoded at a reduced scale only where ``draft`` (a
    ``fgbench.data.fast.DecodeNeed``, or an int shorter side; ``data.decode = "reduced"``) allows it;
    ``crop_bottom`` rows of the original image are cut off (the FGVC Aircraft banner). Raises one
    of ``decode_errors()`` when the file cannot be decoded."""
    fast = _fast()
    if fast is not None and hasattr(fast, "load_rgb"):
        return fast.load_rgb(path, draft, crop_bottom=crop_bottom)
    from PIL import Image

    with Image.open(path) as im:
        orig_h = im.size[1]
        if isinstance(draft, int) and draft and im.format == "JPEG":
            im.draft("RGB", (draft, draft))
        img = im.convert("RGB")
    if crop_bottom:
        # crop_bottom counts rows of the original image; a draft decode is smaller by its scale
        w, h = img.size
        img = img.crop((0, 0, w, max(1, h - round(crop_bottom * h / orig_h))))
    return img


def decode_errors() -> tuple[type[BaseException], ...]:
    """What decoding one image may raise for a bad file: Pillow's errors, its decompression-bomb
    refusal (a header claiming billions of pixels; not an OSError) and the data helper's own."""
    from PIL import Image

    fast = _fast()
    extra = (fast.CorruptImageError,) if fast is not None and hasattr(fast, "CorruptImageError") else ()
    return DECODE_ERRORS + (Image.DecompressionBombError,) + extra


def is_missing(described: str) -> bool:
    """A sample reported bad (by the path a ``Source`` describes it with) whose file is gone: deleted
    or moved after the dataset was indexed, which is told apart from an undecodable file."""
    return os.sep in described and not os.path.lexists(described)


@dataclass(frozen=True)
class Corrupt:
    """Returned by a dataset in place of a sample that could not be decoded."""

    path: str


# -------------------------------------------------------------------------------------- sources


class Source:
    """Random access to the images of one split: ``len``, ``labels``, ``load(i) -> PIL``."""

    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int, draft=None):
        raise NotImplementedError

    def describe(self, i: int) -> str:
        return f"image {i}"


class FileSource(Source):
    def __init__(self, items: Sequence[tuple[str, int]], crop_bottom: int = 0):
        self.paths = [p for p, _ in items]
        self.labels = [int(y) for _, y in items]
        self.crop_bottom = crop_bottom

    def load(self, i: int, draft=None):
        return decode_image(self.paths[i], draft, self.crop_bottom)

    def describe(self, i: int) -> str:
        return self.paths[i]


class ArraySource(Source):
    """uint8 HxWx3 arrays in memory (torchvision's CIFAR pickles)."""

    def __init__(self, images: Any, labels: Sequence[int], name: str = "array"):
        self.images = images
        self.labels = [int(y) for y in labels]
        self.name = name

    def load(self, i: int, draft=None):
        from PIL import Image

        return Image.fromarray(self.images[i])

    def describe(self, i: int) -> str:
        return f"{self.name}[{i}]"


class CachedSource(Source):
    """Images from the data helper's uint8 memmap cache (``data.loader = "cached"``). Every indexed
    image keeps its position and label, so the splits are drawn over the same list as with the other
    loaders; one left out of the cache as undecodable (``data.skip_corrupt``) raises a decode error
    when it is loaded, and is skipped and counted where it is met, as the standard loader does."""

    def __init__(self, items: Sequence[tuple[str, int]], need, cache_dir: Path, skip_corrupt: bool,
                 crop_bottom: int = 0):
        fast = _fast()
        if fast is None or not hasattr(fast, "CachedImageDataset"):
            raise UserError("data.loader: \"cached\" needs fgbench.data.fast, which is not available here; "
                            "use \"standard\"")
        try:
            self.ds = fast.CachedImageDataset(list(items), need, cache_dir, skip_corrupt=skip_corrupt,
                                              crop_bottom=crop_bottom)
        except decode_errors() as err:
            path = getattr(err, "path", None)
            why = getattr(err, "reason", None) or err
            line = f"{path or err}: cannot decode image ({why}); set data.skip_corrupt = true to skip such files"
            if path:
                raise BadImage(line, str(path), missing=is_missing(str(path))) from None
            raise UserError(line) from None
        self.paths = [str(p) for p, _ in items]
        self.labels = [int(y) for _, y in items]

    def load(self, i: int, draft=None):
        return self.ds[i][0]

    def describe(self, i: int) -> str:
        return self.paths[i]


def cifar_sources(index: DatasetIndex) -> tuple[ArraySource, ArraySource]:
    import torchvision

    cls = torchvision.datasets.CIFAR100 if index.num_classes == 100 else torchvision.datasets.CIFAR10
    name = "cifar100" if index.num_classes == 100 else "cifar10"
    try:
        train = cls(index.root, train=True, download=False)
        test = cls(index.root, train=False, download=False)
    except RuntimeError:
        raise UserError(f"{index.root}: {name} is not downloaded; run `fgbench data download {name}`") from None
    return ArraySource(train.data, train.targets, f"{name}/train"), ArraySource(test.data, test.targets, f"{name}/test")


# --------------------------------------------------------------------------------------- splits


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, val indices); per class ``round(n * fraction)`` (>= 1 if the class has >= 2)."""
    if fraction <= 0:
        return list(range(len(labels))), []
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    rng = random.Random(seed)
    train, val = [], []
    for y in sorted(by_class):
        idx = by_class[y][:]
        rng.shuffle(idx)
        k = round(len(idx) * fraction)
        if k == 0 and len(idx) >= 2:
            k = 1
        k = min(k, len(idx) - 1)
        val += idx[:k]
        train += idx[k:]
    return sorted(train), sorted(val)


@dataclass
class Splits:
    index: DatasetIndex
    train_source: Source
    test_source: Source
    train: list[int]
    val: list[int]
    test: list[int]
    choice: "LoaderChoice"  # the loader (data.loader, or what "auto" chose) and why: decided once
    _digests: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def loader(self) -> str:
        return self.choice.kind

    @property
    def class_names(self) -> list[str]:
        return self.index.class_names

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    def image_counts(self) -> dict[str, int]:
        """How many images each split has (every checkpoint records them; a resume compares)."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def image_digests(self) -> dict[str, str]:
        """A digest of the image files (names relative to the dataset, and labels) the training
        and validation splits are drawn from, and of the test split's: a file renamed, or one
        swapped for another, keeps the counts but not these (every checkpoint records them; a
        resume compares). Array datasets (CIFAR) have no file list: their digests are of nothing.
        Worked out once per run (the list does not change while it trains): hashing 100,000
        names took 0.3 s, which every checkpoint paid when it was worked out each time."""
        if self._digests is None:
            prefix = self.index.root.rstrip(os.sep) + os.sep if self.index.root else ""

            def digest(items: Sequence[tuple[str, int]]) -> str:
                h = hashlib.sha256()
                for path, label in items:
                    name = path[len(prefix):] if prefix and path.startswith(prefix) else path
                    h.update(f"{label}\t{name}\n".encode("utf-8", "surrogateescape"))
                return h.hexdigest()

            self._digests = {"train": digest(self.index.train), "test": digest(self.index.test)}
        return dict(self._digests)


AIRCRAFT_BANNER_PX = 20


# ----------------------------------------------------------------------------- decoding rule


def decode_need(transform, data: "DataConfig | None" = None):
    """What ``transform``'s first step needs of the decoded image (``fgbench.data.fast.DecodeNeed``),
    read from the transform object itself, so it follows whatever scale, ratio and size the recipe
    gave it; None means full-size decoding.

    * RandomResizedCrop (anything with ``size``, ``scale`` and ``ratio``): its smallest crop, at
      ``scale[0]`` of the area and the extreme aspect ratios, must keep at least the output size
      (plus one pixel for rounding) in source pixels on both axes, and so must the whole image.
    * Resize(int) (the shorter side), Resize((h, w)) (each side): the resize target.
    * Anything else first (RandomCrop, CenterCrop, a policy before the resize, none): full size,
      because every reduction would remove pixels that reach the model.

    Only ``data.decode = "reduced"`` asks for this; ``"full"`` (the default, and ``data`` None)
    always decodes at full size."""
    if data is None or data.decode != "reduced":
        return None
    fast = _fast()
    if fast is None or not hasattr(fast, "DecodeNeed"):
        return None
    steps = list(getattr(transform, "transforms", [transform]))
    if not steps:
        return None
    first = steps[0]
    size = getattr(first, "size", None)
    if size is None:
        return None
    size = [int(v) for v in size] if isinstance(size, (list, tuple)) else [int(size)]
    if hasattr(first, "scale") and hasattr(first, "ratio"):  # RandomResizedCrop
        out_h, out_w = (size[0], size[0]) if len(size) == 1 else (size[0], size[1])
        smin = float(first.scale[0])
        rmin, rmax = float(first.ratio[0]), float(first.ratio[1])
        # crop width sqrt(A s r) is smallest at (scale[0], ratio[0]); its height sqrt(A s / r) at ratio[1]
        area = max((out_w + 1) ** 2 / (smin * rmin), (out_h + 1) ** 2 * rmax / smin)
        return fast.DecodeNeed(short=max(out_h, out_w), area=area)
    from torchvision.transforms import v2

    if isinstance(first, v2.Resize):
        if getattr(first, "max_size", None) is not None:
            return None
        if len(size) == 1:
            return fast.DecodeNeed(short=size[0])
        return fast.DecodeNeed(height=size[0], width=size[1])
    return None


def union_need(needs):
    """One need that satisfies all of ``needs`` (None, full size, if any of them is None)."""
    out = None
    for i, need in enumerate(needs):
        if need is None:
            return None
        out = need if i == 0 else out.union(need)
    return out


def cache_need(data, augment=None, train_sizes: Sequence[int] = (), test_sizes: Sequence[int] = ()):
    """What the ``cached`` loader must store: the union of what every transform of the run needs
    (train and test transforms at every stage and final test size; a stage may train with the
    test transform): None (full size) unless ``data.decode = "reduced"``; then the least
    reduced decode any of them needs, so a transform that needs less gets other pixels from the
    cache than from the standard loader."""
    from fgbench.recipe import AugmentConfig

    augment = augment or AugmentConfig()
    needs = []
    for size in {data.train_size, *train_sizes}:
        needs.append(decode_need(transforms.train_transform(data, augment, size), data))
        needs.append(decode_need(transforms.test_transform(data, size), data))
    for size in {data.test_size, *test_sizes}:
        needs.append(decode_need(transforms.test_transform(data, size), data))
    return union_need(needs)


# ------------------------------------------------------------------------------- loader choice


def memory_budget(device: torch.device | None = None) -> int:
    """Bytes the ``device`` loader may hold for ``loader = "auto"``: a quarter of the memory
    available now (the GPU's total on CUDA), at most 4 GiB on the CPU."""
    if device is not None and device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory * 0.25)
    import psutil

    try:
        avail = psutil.virtual_memory().available  # MemAvailable on Linux; portable to macOS and Windows
    except (OSError, RuntimeError):
        avail = 2**31
    return int(min(avail * 0.25, 4 * 2**30))


def _image_sizes(source: "FileSource | ArraySource", limit: int | None = None) -> list[tuple[int, int]]:
    """(width, height) of a split's images, from the file headers (no decoding)."""
    if isinstance(source, ArraySource):
        h, w = source.images.shape[1:3]
        return [(int(w), int(h))] * len(source)
    from PIL import Image

    out = []
    paths = source.paths if limit is None else source.paths[:limit]
    for path in paths:
        try:
            with Image.open(path) as im:
                out.append(im.size)
        except DECODE_ERRORS + (Image.DecompressionBombError,):
            out.append((0, 0))
    return out


def _formats(source: "FileSource", limit: int = 64) -> set[str]:
    from PIL import Image

    fmts = set()
    step = max(1, len(source.paths) // limit)
    for path in source.paths[::step]:
        try:
            with Image.open(path) as im:
                fmts.add(im.format or "?")
        except DECODE_ERRORS + (Image.DecompressionBombError,):
            fmts.add("?")
    return fmts


@dataclass(frozen=True)
class LoaderChoice:
    """The loader a run uses and, for ``loader = "auto"``, why (the log and ``run_started`` say it)."""

    kind: str
    reason: str

    def as_event(self) -> dict[str, str]:
        return {"kind": self.kind, "reason": self.reason}


def choose_loader(index: DatasetIndex, data, augment=None, *, epochs: int = 1, device=None,
                  train_sizes: Sequence[int] = (), test_sizes: Sequence[int] = (),
                  cache_root: Path | None = None) -> LoaderChoice:
    """Resolve ``data.loader = "auto"``. In order:

    1. ``device`` when the recipe's augmentation is one the device loader does exactly as the
       standard one (pad-and-crop or resize, flips, mixing), the training images all have one size
       (pad-and-crop works on the images as they are), and every split, decoded, fits
       :func:`memory_budget`;
    2. ``cached`` when the images are JPEGs decoded again every epoch (more than one epoch) and the
       cache fits in half of the free disk space where it is kept;
    3. ``standard`` otherwise.

    Every choice hands the model the same images: the device loader stacks what the standard
    transform's deterministic steps produce, the cache stores the full decode (with
    ``data.decode = "reduced"``: the least reduced one, see :func:`cache_need`)."""
    from fgbench.recipe import AugmentConfig

    if data.loader != "auto":
        if data.loader == "device":
            check_device_loader(data, augment or AugmentConfig())  # the one check of an explicit choice
        return LoaderChoice(data.loader, "set in the recipe")
    augment = augment or AugmentConfig()
    train_src: FileSource | ArraySource
    test_src: FileSource | ArraySource
    if index.kind == "cifar":
        train_src, test_src = cifar_sources(index)
        n_train, n_test = len(train_src), len(test_src)
    else:
        train_src, test_src = FileSource(index.train), FileSource(index.test)
        n_train, n_test = len(train_src), len(test_src)
    budget = memory_budget(device)
    why_not_device = None
    try:
        check_device_loader(data, augment)
    except UserError as err:
        why_not_device = str(err).split(":")[0] + " needs the standard transforms"
    sizes = set(train_sizes) | {data.train_size}
    if why_not_device is None and len(sizes) > 1:
        why_not_device = "stages train at different sizes"
    if why_not_device is None:
        tr_sizes = _image_sizes(train_src)
        if data.train_crop == "pad_crop":
            if len(set(tr_sizes)) != 1 or (0, 0) in tr_sizes:
                why_not_device = "the training images differ in size (pad-and-crop needs them as they are)"
            else:
                w, h = tr_sizes[0]
                train_bytes = 3 * w * h * n_train
        else:
            train_bytes = 3 * data.train_size ** 2 * n_train
        if why_not_device is None:
            test_px = max({data.test_size, *test_sizes}) ** 2
            if data.test_crop == "none":
                te = _image_sizes(test_src, limit=64)
                test_px = max(w * h for w, h in te) if te else test_px
            total = train_bytes + 3 * test_px * n_test * 2  # validation and test splits, with headroom
            if total > budget:
                why_not_device = (f"the decoded splits ({total / 2**20:.0f} MiB) exceed the memory budget "
                                  f"({budget / 2**20:.0f} MiB)")
            else:
                return LoaderChoice("device", f"the decoded splits ({total / 2**20:.0f} MiB) fit the memory budget "
                                              f"({budget / 2**20:.0f} MiB)")
    if not (isinstance(train_src, FileSource) and isinstance(test_src, FileSource)):  # CIFAR's arrays
        return LoaderChoice("standard", f"not device: {why_not_device}; the images are already in memory")
    if epochs < 2:
        return LoaderChoice("standard", f"not device: {why_not_device}; one epoch decodes each image once anyway")
    if bool(augment.randaugment_ops and augment.randaugment_before_resize):
        return LoaderChoice("standard", f"not device: {why_not_device}; augment.randaugment_before_resize "
                                        "needs the images as loaded")
    if "JPEG" not in _formats(train_src):
        return LoaderChoice("standard", f"not device: {why_not_device}; the images are not JPEGs")
    fast = _fast()
    if fast is None or not hasattr(fast, "CachedImageDataset"):
        return LoaderChoice("standard", f"not device: {why_not_device}; no cache support here")
    need = cache_need(data, augment, train_sizes, test_sizes)
    est = 0
    for src in (train_src, test_src):
        sample = src.paths[::max(1, len(src.paths) // 64)]
        fs = _image_sizes(FileSource([(q, 0) for q in sample]))
        per = 0.0
        for w, h in fs:
            f = min(1.0, need.fraction(w, h)) if need is not None else 1.0
            k = next((k for k in (8, 4, 2) if 1 / k >= f), 1)
            per += 3 * math.ceil(w / k) * math.ceil(h / k)
        est += int(per / max(1, len(fs)) * len(src))
    if cache_root is None:
        from fgbench.data import catalog

        cache_root = catalog.cache_dir(index.name, index.root if index.name == "folder" else None)
    probe = Path(cache_root)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    import shutil

    free = shutil.disk_usage(probe).free
    if est > free * 0.5:
        return LoaderChoice("standard", f"not device: {why_not_device}; a decoded cache ({est / 2**30:.1f} GiB) "
                                        f"would take more than half the free disk ({free / 2**30:.1f} GiB)")
    return LoaderChoice("cached", f"not device: {why_not_device}; JPEGs decoded every epoch, cached once "
                                  f"(about {est / 2**20:.0f} MiB of {free / 2**30:.1f} GiB free)")


def load_splits(index: DatasetIndex, data, *, train_sizes: Sequence[int] = (), test_sizes: Sequence[int] = (),
                augment=None, epochs: int = 1, device=None) -> Splits:
    """Sources for the recipe's dataset, with the validation split held out from train.
    ``train_sizes``/``test_sizes``: every size the run will use (stages, final evaluation), so the
    ``cached`` loader stores images large enough for all of them. ``augment``, ``epochs`` and
    ``device`` let ``data.loader = "auto"`` choose (:func:`choose_loader`); ``splits.loader``
    says what was chosen and why."""
    choice = choose_loader(index, data, augment, epochs=epochs, device=device, train_sizes=train_sizes,
                           test_sizes=test_sizes)
    banner = AIRCRAFT_BANNER_PX if data.crop_banner else 0
    train_src: Source
    test_src: Source
    if index.kind == "cifar":
        train_src, test_src = cifar_sources(index)
    elif choice.kind == "cached":
        from fgbench.data import catalog

        # `fgbench data remove NAME` deletes it with the dataset (a folder's: `... folder --root DIR`)
        cache = catalog.cache_dir(index.name, index.root if index.name == "folder" else None)
        need = cache_need(data, augment, train_sizes, test_sizes)
        # an image the cache could not decode keeps its place: the splits below are the other loaders'
        train_src = CachedSource(index.train, need, cache / "train", data.skip_corrupt, banner)
        test_src = CachedSource(index.test, need, cache / "test", data.skip_corrupt, banner)
    else:
        train_src, test_src = FileSource(index.train, banner), FileSource(index.test, banner)
    if len(train_src) == 0 or len(test_src) == 0:
        raise UserError(f"data.dataset: {index.name} has an empty train or test split")
    train, val = stratified_split(train_src.labels, data.val_fraction, data.val_seed)
    return Splits(index, train_src, test_src, train, val, list(range(len(test_src))), choice)


# ------------------------------------------------------------------------------ cheaper tail


class ToNormalizedTensor:
    """``ToImage``, ``ToDtype(float32, scale=True)`` and ``Normalize`` in one call, with the same
    operations in the same order (so the same bits), without v2's per-transform dispatch: about
    15 us instead of 70 us for a 32 px image. ``mean``/``std`` None: no Normalize."""

    def __init__(self, mean=None, std=None):
        self.mean = None if mean is None else torch.as_tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        self.std = None if std is None else torch.as_tensor(list(std), dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, img):
        if isinstance(img, torch.Tensor):
            t = img.as_subclass(torch.Tensor)
        else:
            import numpy as np

            a = np.array(img, copy=True)
            if a.ndim == 2:
                a = a[:, :, None]
            t = torch.as_tensor(a).permute((2, 0, 1))
        if t.dtype != torch.uint8:
            raise TypeError(f"ToNormalizedTensor expects uint8 images, not {t.dtype}")
        x = t.to(torch.float32).mul_(1.0 / 255)
        if self.mean is not None:
            x = x.sub(self.mean).div_(self.std)
        return x

    def __repr__(self) -> str:
        return f"ToNormalizedTensor(mean={None if self.mean is None else self.mean.flatten().tolist()}, " \
               f"std={None if self.std is None else self.std.flatten().tolist()})"


def fast_transform(transform):
    """``transform`` (a v2.Compose) with its ``ToImage, ToDtype(float32, scale=True)[, Normalize]``
    run replaced by :class:`ToNormalizedTensor`; the same output, cheaper. Anything else is kept."""
    from torchvision.transforms import v2

    steps = list(getattr(transform, "transforms", []))
    for i, step in enumerate(steps):
        if not isinstance(step, v2.ToImage):
            continue
        nxt = steps[i + 1] if i + 1 < len(steps) else None
        if not (isinstance(nxt, v2.ToDtype) and nxt.scale and nxt.dtype == torch.float32):
            return transform
        j = i + 2
        mean = std = None
        if j < len(steps) and isinstance(steps[j], v2.Normalize) and not steps[j].inplace:
            mean, std = steps[j].mean, steps[j].std
            j += 1
        return v2.Compose(steps[:i] + [ToNormalizedTensor(mean, std)] + steps[j:])
    return transform


# ------------------------------------------------------------------------------------- datasets


class TrainDataset(Dataset):
    """Indexed by ``(epoch, position)``; the augmentation is seeded by (seed, epoch, sample)."""

    def __init__(self, source: Source, indices: list[int], transform: Callable, seed: int, draft: int | None):
        self.source, self.indices, self.transform = source, indices, transform
        self.seed, self.draft = seed, draft

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]):
        epoch, pos = key
        i = self.indices[pos]
        try:
            img = self.source.load(i, self.draft)
        except decode_errors():
            return Corrupt(self.source.describe(i))
        s = mix_seed(self.seed, epoch, i)
        # Seeding the CPU generator alone is what the transforms draw from, and costs about 1 us;
        # torch.manual_seed also walks every accelerator backend (60-90 us per sample).
        if torch.utils.data.get_worker_info() is None:
            state = torch.default_generator.get_state()
            torch.default_generator.manual_seed(s)
            try:
                x = self.transform(img)
            finally:
                torch.default_generator.set_state(state)
        else:
            torch.default_generator.manual_seed(s)
            x = self.transform(img)
        return x, self.source.labels[i]


class EvalDataset(Dataset):
    def __init__(self, source: Source, indices: list[int], transform: Callable, draft: int | None):
        self.source, self.indices, self.transform, self.draft = source, indices, transform, draft

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, pos: int):
        i = self.indices[pos]
        try:
            img = self.source.load(i, self.draft)
        except decode_errors():
            return Corrupt(self.source.describe(i))
        return self.transform(img), self.source.labels[i]


def collate(batch: list) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Stack the good samples; report the corrupt ones by path."""
    bad = tuple(b.path for b in batch if isinstance(b, Corrupt))
    good = [b for b in batch if not isinstance(b, Corrupt)]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), bad
    return torch.stack([g[0] for g in good]), torch.tensor([g[1] for g in good], dtype=torch.long), bad


class EpochBatchSampler:
    """Batches of ``(epoch, position)`` from a (seed, epoch)-seeded permutation, from ``start_batch`` on."""

    def __init__(self, n: int, batch_size: int, seed: int, drop_last: bool, shard: tuple[int, int] | None = None):
        self.n, self.batch_size, self.seed, self.drop_last = n, batch_size, seed, drop_last
        self.shard = shard  # (rank, world): keep positions rank::world of each (global) batch
        self.epoch, self.start_batch = 0, 0

    def batches_per_epoch(self) -> int:
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = torch.Generator()
        g.manual_seed(mix_seed(self.seed, self.epoch, 0x5EED))
        perm = torch.randperm(self.n, generator=g).tolist()
        for b in range(self.start_batch, self.batches_per_epoch()):
            chunk = perm[b * self.batch_size:(b + 1) * self.batch_size]
            if self.shard is not None:
                chunk = chunk[self.shard[0]::self.shard[1]]
            yield [(self.epoch, p) for p in chunk]


def _worker_init(_worker_id: int) -> None:
    # Only the trainer reacts to Ctrl-C / SIGTERM (it finishes the step and checkpoints).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)


#: iterators that may own worker processes; shut down at exit (see the module docstring)
_LIVE_ITERATORS: "weakref.WeakSet[Any]" = weakref.WeakSet()
_EXIT_HOOK = False


#: the iterators opened inside each open :func:`workers_end_with` block
_SCOPES: "list[weakref.WeakSet[Any]]" = []


def _track(it):
    """Remember a DataLoader iterator so that :func:`_shutdown_workers` can stop its workers."""
    global _EXIT_HOOK
    if hasattr(it, "_shutdown_workers"):
        if not _EXIT_HOOK:
            # registered after torch imported multiprocessing, so it runs before its exit handler
            atexit.register(_shutdown_workers)
            _EXIT_HOOK = True
        _LIVE_ITERATORS.add(it)
        for scope in _SCOPES:
            scope.add(it)
    return it


def _shutdown_workers(iterators: "weakref.WeakSet[Any] | None" = None) -> None:
    for it in list(_LIVE_ITERATORS if iterators is None else iterators):
        try:
            it._shutdown_workers()
        except Exception:  # noqa: BLE001 - at exit, one pool must not keep the others alive
            pass


@contextlib.contextmanager
def workers_end_with() -> Iterator[None]:
    """Every worker pool opened inside the block is shut down when the block ends, whether it
    returns, raises or is interrupted. A run's pools (the stage's persistent workers, the final
    evaluation's) must not outlive the run: an abandoned iterator stops its workers only when the
    garbage collector gets to it (the trainer sits in reference cycles), and one collected while
    Python exits does nothing (PyTorch's own exit flag), which left the workers, which ignore
    SIGTERM, for multiprocessing's exit handler to wait on forever."""
    scope: "weakref.WeakSet[Any]" = weakref.WeakSet()
    _SCOPES.append(scope)
    try:
        yield
    finally:
        _SCOPES.remove(scope)
        _shutdown_workers(scope)


# -------------------------------------------------------------------------------------- loaders


class TrainLoader:
    """``batches(epoch, start_batch)`` yields ``(x, y, corrupt_paths)``; ``steps_per_epoch``."""

    steps_per_epoch: int
    images: int

    def batches(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, tuple]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class EvalLoader:
    images: int

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, tuple]]:
        raise NotImplementedError


class StageDataset(Dataset):
    """A stage's training split and its evaluation splits behind one index, so that one pool of
    persistent workers serves them all: ``(epoch, position)`` is a training sample,
    ``(split, position)`` a sample of evaluation split ``split``."""

    def __init__(self, train: "TrainDataset", evals: dict[str, "EvalDataset"] | None = None):
        self.train, self.evals = train, dict(evals or {})

    def __len__(self) -> int:
        return len(self.train)

    def __getitem__(self, key: tuple):
        head, pos = key
        if isinstance(head, str):
            return self.evals[head][pos]
        return self.train[key]


class StageBatchSampler:
    """Training batches from the :class:`EpochBatchSampler`, or the batches of one evaluation
    split, whichever the main process chose last (the sampler runs in the main process; workers
    only receive the keys)."""

    def __init__(self, train: EpochBatchSampler, eval_sizes: dict[str, int], eval_batch_size: int):
        self.train, self.eval_sizes, self.eval_batch_size = train, eval_sizes, eval_batch_size
        self.split: str | None = None

    def __len__(self) -> int:
        if self.split is None:
            return len(self.train)
        return math.ceil(self.eval_sizes[self.split] / self.eval_batch_size)

    def __iter__(self):
        if self.split is None:
            yield from self.train
            return
        n, bs = self.eval_sizes[self.split], self.eval_batch_size
        for b in range(0, n, bs):
            yield [(self.split, p) for p in range(b, min(n, b + bs))]


MAX_AUTO_WORKERS = 8


def resolve_workers(data, *, cpus: int | None = None, local_world: int | None = None) -> tuple[int, str]:
    """``data.workers`` as a number, and why: a number is used as it is; ``auto`` is one worker per
    CPU this process may use (``os.sched_getaffinity``; divided among the node's DDP processes,
    ``LOCAL_WORLD_SIZE``), less one for the training process itself, at most MAX_AUTO_WORKERS."""
    if data.workers != "auto":
        return int(data.workers), "set in the recipe"
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if local_world is None:
        local_world = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    per_process = max(1, cpus // local_world)
    n = max(0, min(MAX_AUTO_WORKERS, per_process - 1))
    share = f"{cpus} CPU{'' if cpus == 1 else 's'}" + (f" shared by {local_world} processes" if local_world > 1 else "")
    return n, f"auto: {share}, one left for training, at most {MAX_AUTO_WORKERS}"


class WorkerTrainLoader(TrainLoader):
    """The training split through a DataLoader whose workers live as long as the stage: every
    epoch, and every evaluation of the stage's splits (``evals``, see :class:`PooledEvalLoader`),
    reuses them, so worker start-up is paid once per stage instead of once or more per epoch."""

    def __init__(self, dataset: TrainDataset, batch_size: int, seed: int, data, device: torch.device,
                 shard: tuple[int, int] | None = None, evals: dict[str, "EvalDataset"] | None = None,
                 eval_batch_size: int | None = None):
        self.sampler = EpochBatchSampler(len(dataset), batch_size, seed, data.drop_last, shard)
        self.steps_per_epoch = self.sampler.batches_per_epoch()
        self.images = len(dataset)
        evals = dict(evals or {})
        self.batch_sampler = StageBatchSampler(self.sampler, {k: len(v) for k, v in evals.items()},
                                               eval_batch_size or batch_size)
        self.loader: DataLoader | None = DataLoader(
            StageDataset(dataset, evals), batch_sampler=self.batch_sampler, num_workers=(n := resolve_workers(data)[0]),
            collate_fn=collate, pin_memory=device.type == "cuda", persistent_workers=n > 0,
            worker_init_fn=_worker_init if n > 0 else None,
            # Its own generator: every iter() draws a base seed, which must not come from (and
            # shift) the global stream that the checkpoint restores in the middle of an epoch.
            generator=torch.Generator().manual_seed(seed),
        )

    def _open(self) -> DataLoader:
        if self.loader is None:
            raise RuntimeError("the stage's loader was closed")
        return self.loader

    def batches(self, epoch: int, start_batch: int = 0):
        self.batch_sampler.split = None
        self.sampler.set_epoch(epoch, start_batch)
        return _track(iter(self._open()))

    def eval_batches(self, split: str):
        self.batch_sampler.split = split
        return _track(iter(self._open()))

    def close(self) -> None:
        # Persistent workers live with the loader's iterator: stop them now, then drop it.
        it = getattr(self.loader, "_iterator", None) if self.loader is not None else None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self.loader = None


class PooledEvalLoader(EvalLoader):
    """An evaluation split served by the training loader's workers."""

    def __init__(self, train: WorkerTrainLoader, split: str, images: int):
        self.train, self.split, self.images = train, split, images

    def batches(self):
        return self.train.eval_batches(self.split)


class WorkerEvalLoader(EvalLoader):
    """A split on its own DataLoader (final evaluation at other test sizes, ``fgbench evaluate``)."""

    def __init__(self, dataset: EvalDataset, batch_size: int, data, device: torch.device):
        self.images = len(dataset)
        self.loader = DataLoader(
            dataset, batch_size=batch_size, shuffle=False, num_workers=(n := resolve_workers(data)[0]),
            collate_fn=collate, pin_memory=device.type == "cuda", persistent_workers=False,
            worker_init_fn=_worker_init if n > 0 else None,
            generator=torch.Generator().manual_seed(0),
        )

    def batches(self):
        return _track(iter(self.loader))


# ---------------------------------------------------------------------------------- device loader


DEVICE_LOADER_UNSUPPORTED = (
    ("augment.rotation", lambda a: a.rotation),
    ("augment.randaugment_ops", lambda a: a.randaugment_ops),
    ("augment.trivialaugment", lambda a: a.trivialaugment),
    ("augment.random_erasing", lambda a: a.random_erasing),
)


def check_device_loader(data, augment) -> None:
    if data.train_crop not in ("pad_crop", "resize"):
        raise UserError(f"data.train_crop: {data.train_crop!r} is not available with data.loader = \"device\" "
                        "(it does pad_crop or resize, flips, mixup and cutmix); use data.loader = \"standard\"")
    if data.interpolation == "random":
        # the device loader resizes each training image once, before stacking: one draw for all epochs
        raise UserError("data.interpolation: \"random\" (a draw per crop) is not available with data.loader = "
                        "\"device\", which resizes each image once; use data.loader = \"standard\"")
    for name, get in DEVICE_LOADER_UNSUPPORTED:
        if get(augment):
            raise UserError(f"{name}: not available with data.loader = \"device\"; use data.loader = \"standard\"")


def _stack_split(source: Source, indices: list[int], geometry: list, what: str,
                 skip_corrupt: bool = False, need=None) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """uint8 N x 3 x H x W of the split after the deterministic geometry steps, the labels, and
    the images left out as undecodable (``skip_corrupt``; otherwise the first one is an error).
    Each image is decoded as the standard loader decodes it for the same steps (``need``)."""
    from torchvision.transforms import v2

    if not indices:  # an empty shard of a small split (DDP)
        return torch.empty((0, 3, 1, 1), dtype=torch.uint8), torch.empty(0, dtype=torch.long), ()
    if isinstance(source, ArraySource) and not geometry:
        import numpy as np

        arr = np.ascontiguousarray(source.images[indices])
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
        return x, torch.tensor([source.labels[i] for i in indices], dtype=torch.long), ()
    prep = v2.Compose(geometry + [v2.ToImage()])
    xs, ys = [], []
    skipped: list[str] = []
    shape = None
    for i in indices:
        try:
            img = source.load(i, need)
        except decode_errors() as err:
            if skip_corrupt:
                skipped.append(source.describe(i))
                continue
            raise BadImage(f"{source.describe(i)}: cannot decode image ({getattr(err, 'reason', None) or err}); "
                           "fix or remove it, or set data.skip_corrupt = true", source.describe(i),
                           missing=is_missing(source.describe(i))) from None
        t = prep(img).as_subclass(torch.Tensor)
        if shape is None:
            shape = t.shape
        elif t.shape != shape:
            raise UserError(f"{source.describe(i)}: size {tuple(t.shape[1:])} differs from {tuple(shape[1:])}; "
                            f"data.loader = \"device\" needs one image size for the {what} split "
                            "(set data.test_crop to resize or crop them)")
        xs.append(t)
        ys.append(source.labels[i])
    if not xs:
        raise UserError(f"the {what} split: no image could be decoded (data.skip_corrupt skipped all {len(skipped)})")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long), tuple(skipped)


def _normalizer(data, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 batch -> float, the arithmetic of ``ToDtype(float32, scale=True)`` and ``Normalize``
    in their order, so the device loader's tensors equal the standard loader's bit for bit."""
    stats = transforms.normalization(data)
    if stats is None:
        return lambda x: x.to(torch.float32).mul_(1.0 / 255)
    mean = torch.tensor(stats[0], dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(stats[1], dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return lambda x: x.to(torch.float32).mul_(1.0 / 255).sub_(mean).div_(std)


class DeviceTrainLoader(TrainLoader):
    """The whole training split on the device; crop and flip per batch there."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, data, augment,
                 size: int, device: torch.device, shard: tuple[int, int] | None = None, skipped: tuple[str, ...] = ()):
        self.x, self.y = x.to(device), y.to(device)
        self.skipped = skipped  # undecodable images left out, reported with the first batch
        self.shard = shard
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.drop_last = data.drop_last
        self.pad = data.crop_padding if data.train_crop == "pad_crop" else 0
        self.size = size
        self.hflip = augment.hflip
        self.norm = _normalizer(data, device)
        self.images = len(self.x)
        n = len(self.x)
        self.steps_per_epoch = n // batch_size if self.drop_last else math.ceil(n / batch_size)
        if data.train_crop == "pad_crop" and min(self.x.shape[-2:]) + 2 * self.pad < size:
            raise UserError(f"data.train_size: {size} is larger than the images ({tuple(self.x.shape[-2:])}) "
                            f"plus padding {self.pad}")

    def _augment(self, xb: torch.Tensor, g: torch.Generator, draw: int | None = None,
                 keep: slice | None = None) -> torch.Tensor:
        """Crop and flip ``xb``. Under DDP the random numbers are drawn for the ``draw`` images of
        the global batch and this process ``keep``s its share, so each image gets what it would
        get in a single process."""
        n, c, h, w = xb.shape
        m = n if draw is None else draw
        s = self.size
        if self.pad or (h, w) != (s, s):
            p = self.pad
            xb = torch.nn.functional.pad(xb, (p, p, p, p))
            hh, ww = h + 2 * p, w + 2 * p
            dy = torch.randint(0, hh - s + 1, (m,), generator=g, device=self.device)
            dx = torch.randint(0, ww - s + 1, (m,), generator=g, device=self.device)
            if keep is not None:
                dy, dx = dy[keep], dx[keep]
            ar = torch.arange(s, device=self.device)
            rows = (dy[:, None] + ar)[:, None, :, None].expand(n, c, s, ww)
            xb = xb.gather(2, rows)
            cols = (dx[:, None] + ar)[:, None, None, :].expand(n, c, s, s)
            xb = xb.gather(3, cols)
        if self.hflip:
            flip = torch.rand(m, generator=g, device=self.device) < 0.5
            if keep is not None:
                flip = flip[keep]
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        return xb

    def batches(self, epoch: int, start_batch: int = 0):
        g = torch.Generator()
        g.manual_seed(mix_seed(self.seed, epoch, 0x5EED))
        perm = torch.randperm(len(self.x), generator=g).to(self.device)
        gd = torch.Generator(device=self.device)
        for b in range(start_batch, self.steps_per_epoch):
            idx = perm[b * self.batch_size:(b + 1) * self.batch_size]
            gd.manual_seed(mix_seed(self.seed, epoch, b, 0xC409))
            bad = self.skipped if b == start_batch else ()
            if self.shard is None:
                xb = self._augment(self.x.index_select(0, idx), gd)
                yield self.norm(xb), self.y.index_select(0, idx), bad
            else:
                keep = slice(self.shard[0], None, self.shard[1])
                mine = idx[keep]
                xb = self._augment(self.x.index_select(0, mine), gd, draw=len(idx), keep=keep)
                yield self.norm(xb), self.y.index_select(0, mine), bad


class DeviceEvalLoader(EvalLoader):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, data, device: torch.device,
                 skipped: tuple[str, ...] = ()):
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size = batch_size
        self.norm = _normalizer(data, device)
        self.images = len(self.x)
        self.skipped = skipped

    def batches(self):
        for b in range(0, len(self.x), self.batch_size):
            yield self.norm(self.x[b:b + self.batch_size]), self.y[b:b + self.batch_size], (self.skipped if b == 0 else ())


# ---------------------------------------------------------------------------------------- build


@dataclass
class StageLoaders:
    train: TrainLoader
    val: EvalLoader | None
    test: EvalLoader
    extra: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Stop the stage's workers (the evaluation splits share the training loader's)."""
        self.train.close()


def _shard(indices: list[int], shard: tuple[int, int] | None) -> list[int]:
    return indices if shard is None else indices[shard[0]::shard[1]]


def _device_train_geometry(splits: Splits, data, train_size: int) -> list:
    """The deterministic steps the device loader applies before stacking the training split:
    ``resize`` is Resize(train_size x train_size) as in the standard transform; ``pad_crop`` uses
    the images as they are when they share one size (so the crops are the standard loader's),
    and otherwise (an explicit ``loader = "device"`` only) the test geometry at the training size."""
    from torchvision.transforms import v2

    if data.train_crop != "pad_crop":
        # the standard transform's Resize, with the recipe's interpolation ("random" is refused)
        return [v2.Resize((train_size, train_size), interpolation=transforms.INTERPOLATION[data.interpolation],
                                antialias=True)]
    src = splits.train_source
    if not isinstance(src, FileSource):  # arrays (CIFAR) are all one size
        return []
    sizes = set(_image_sizes(src))
    return [] if len(sizes) == 1 and (0, 0) not in sizes else transforms.test_geometry(data, train_size)


def eval_batch_size(data, batch_size: int, shard: tuple[int, int] | None) -> int:
    """``data.eval_batch_size``, else twice the (per-process) training batch: evaluation keeps no
    activations for a backward pass, and larger batches cost less per image."""
    if data.eval_batch_size:
        return data.eval_batch_size
    return 2 * (batch_size // shard[1] if shard else batch_size)


def build_loaders(splits: Splits, data, augment, *, train_size: int, test_size: int, batch_size: int,
                  seed: int, device: torch.device, shard: tuple[int, int] | None = None) -> StageLoaders:
    """Loaders for one stage (sizes and batch size may differ between stages). ``batch_size`` is
    the global training batch; with ``shard = (rank, world)`` this process gets its part of each
    batch and of each evaluation split (evaluated ``data.eval_batch_size`` or twice
    ``batch_size / world`` images at a time). The loader is ``splits.loader`` (``data.loader``, or
    what ``auto`` chose)."""
    eval_bs = eval_batch_size(data, batch_size, shard)
    kind = splits.loader
    if len(splits.train) < batch_size and data.drop_last:
        raise UserError(f"data.batch_size: {batch_size} is larger than the training split "
                        f"({len(splits.train)} images) and data.drop_last is set")
    if kind == "device":  # load_splits checked that the recipe allows it (choose_loader)
        from torchvision.transforms import v2

        train_geo = _device_train_geometry(splits, data, train_size)
        skip = data.skip_corrupt
        x, y, bad = _stack_split(splits.train_source, splits.train, train_geo, "train", skip,
                                 decode_need(v2.Compose(train_geo), data) if train_geo else None)
        train = DeviceTrainLoader(x, y, batch_size, seed, data, augment, train_size, device, shard, bad)
        test_geo = transforms.test_geometry(data, test_size)
        test_need = decode_need(v2.Compose(test_geo), data) if test_geo else None
        val = None
        if splits.val:
            vx, vy, vbad = _stack_split(splits.train_source, _shard(splits.val, shard), test_geo, "val", skip,
                                        test_need)
            val = DeviceEvalLoader(vx, vy, eval_bs, data, device, vbad)
        tx, ty, tbad = _stack_split(splits.test_source, _shard(splits.test, shard), test_geo, "test", skip, test_need)
        return StageLoaders(train, val, DeviceEvalLoader(tx, ty, eval_bs, data, device, tbad))
    raw_first = bool(augment.randaugment_ops and augment.randaugment_before_resize)
    if raw_first and kind == "cached":
        raise UserError("augment.randaugment_before_resize: the cached loader keeps decoded copies, not the images "
                        "as loaded; use data.loader = \"standard\"")
    ttf = fast_transform(transforms.train_transform(data, augment, train_size))
    etf = fast_transform(transforms.test_transform(data, test_size))
    # What each transform needs of the decoded image; a policy before the resize needs it all.
    tneed, eneed = decode_need(ttf, data), decode_need(etf, data)
    evals: dict[str, EvalDataset] = {}
    if splits.val:
        evals["val"] = EvalDataset(splits.train_source, _shard(splits.val, shard), etf, eneed)
    evals["test"] = EvalDataset(splits.test_source, _shard(splits.test, shard), etf, eneed)
    pool = WorkerTrainLoader(TrainDataset(splits.train_source, splits.train, ttf, seed, tneed), batch_size, seed,
                             data, device, shard, evals=evals, eval_batch_size=eval_bs)
    pooled_val = PooledEvalLoader(pool, "val", len(evals["val"])) if "val" in evals else None
    return StageLoaders(pool, pooled_val, PooledEvalLoader(pool, "test", len(evals["test"])))


def eval_loader(splits: Splits, data, *, test_size: int, batch_size: int, device: torch.device,
                split: str = "test", shard: tuple[int, int] | None = None) -> EvalLoader:
    """A test (or val) loader at another test size (final evaluation at ``eval.final_test_sizes``);
    with ``shard``, this process's part of the split."""
    src = splits.test_source if split == "test" else splits.train_source
    idx = _shard(splits.test if split == "test" else splits.val, shard)
    if splits.loader == "device":
        from torchvision.transforms import v2

        geo = transforms.test_geometry(data, test_size)
        x, y, bad = _stack_split(src, idx, geo, split, data.skip_corrupt,
                                 decode_need(v2.Compose(geo), data) if geo else None)
        return DeviceEvalLoader(x, y, batch_size, data, device, bad)
    etf = fast_transform(transforms.test_transform(data, test_size))
    return WorkerEvalLoader(EvalDataset(src, idx, etf, decode_need(etf, data)), batch_size, data, device)
