"""Datasets and loaders for the trainer: splits, per-epoch order, augmentation seeding, device loading.

Decisions:

* **Everything random is a function of its position**, so that a resumed run sees exactly what an
  uninterrupted one would have seen, whatever the number of workers. The training order of an
  epoch is ``randperm`` from a generator seeded by (seed, epoch); the augmentation of one sample is
  drawn after seeding torch's RNG with (seed, epoch, sample). The batch sampler therefore yields
  ``(epoch, position)`` pairs instead of bare indices, which also works with persistent workers
  (the dataset copy inside a worker never needs to be told the epoch). In the main process
  (``workers = 0``) the seeding happens inside ``fork_rng`` so it never disturbs the global stream
  that MixUp/CutMix and dropout draw from (and that the checkpoint saves).
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
import math
import random
import signal
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from fgbench.data import transforms as T
from fgbench.data.index import DatasetIndex
from fgbench.errors import UserError

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


def decode_image(path: str, draft: int | None = None, crop_bottom: int = 0):
    """PIL RGB image, JPEGs decoded at a reduced scale when ``draft`` allows (``fgbench.data.fast``);
    ``crop_bottom`` rows of the original image are cut off (the FGVC Aircraft banner). Raises one
    of ``decode_errors()`` when the file cannot be decoded."""
    fast = _fast()
    if fast is not None and hasattr(fast, "load_rgb"):
        return fast.load_rgb(path, draft, crop_bottom=crop_bottom)
    from PIL import Image

    with Image.open(path) as im:
        orig_h = im.size[1]
        if draft and im.format == "JPEG":
            im.draft("RGB", (draft, draft))
        img = im.convert("RGB")
    if crop_bottom:
        # crop_bottom counts rows of the original image; a draft decode is smaller by its scale
        w, h = img.size
        img = img.crop((0, 0, w, max(1, h - round(crop_bottom * h / orig_h))))
    return img


def decode_errors() -> tuple[type[BaseException], ...]:
    fast = _fast()
    extra = (fast.CorruptImageError,) if fast is not None and hasattr(fast, "CorruptImageError") else ()
    return DECODE_ERRORS + extra


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

    def load(self, i: int, draft: int | None = None):
        raise NotImplementedError

    def describe(self, i: int) -> str:
        return f"image {i}"


class FileSource(Source):
    def __init__(self, items: Sequence[tuple[str, int]], crop_bottom: int = 0):
        self.paths = [p for p, _ in items]
        self.labels = [int(y) for _, y in items]
        self.crop_bottom = crop_bottom

    def load(self, i: int, draft: int | None = None):
        return decode_image(self.paths[i], draft, self.crop_bottom)

    def describe(self, i: int) -> str:
        return self.paths[i]


class ArraySource(Source):
    """uint8 HxWx3 arrays in memory (torchvision's CIFAR pickles)."""

    def __init__(self, images: Any, labels: Sequence[int], name: str = "array"):
        self.images = images
        self.labels = [int(y) for y in labels]
        self.name = name

    def load(self, i: int, draft: int | None = None):
        from PIL import Image

        return Image.fromarray(self.images[i])

    def describe(self, i: int) -> str:
        return f"{self.name}[{i}]"


class CachedSource(Source):
    """Images from the data helper's uint8 memmap cache (``data.loader = "cached"``)."""

    def __init__(self, items: Sequence[tuple[str, int]], short_side: int, cache_dir: Path, skip_corrupt: bool,
                 crop_bottom: int = 0):
        fast = _fast()
        if fast is None or not hasattr(fast, "CachedImageDataset"):
            raise UserError("data.loader: \"cached\" needs fgbench.data.fast, which is not available here; "
                            "use \"standard\"")
        try:
            self.ds = fast.CachedImageDataset(list(items), short_side, cache_dir, skip_corrupt=skip_corrupt,
                                              crop_bottom=crop_bottom)
        except decode_errors() as err:
            path = getattr(err, "path", None)
            raise UserError(f"{path or err}: cannot decode image ({err}); set data.skip_corrupt = true "
                            "to skip such files") from None
        labels = getattr(self.ds, "labels", None)
        if labels is None:
            labels = [int(self.ds[i][1]) for i in range(len(self.ds))]
        self.labels = [int(y) for y in labels]
        self.skipped = int(getattr(self.ds, "skipped", 0))
        self.skipped_paths = list(getattr(self.ds, "skipped_paths", []))

    def load(self, i: int, draft: int | None = None):
        return self.ds[i][0]


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
    skipped: int = 0  # images the cache left out as undecodable

    @property
    def class_names(self) -> list[str]:
        return self.index.class_names

    @property
    def num_classes(self) -> int:
        return self.index.num_classes


AIRCRAFT_BANNER_PX = 20


def cache_short_side(data, train_sizes: Sequence[int] = (), test_sizes: Sequence[int] = ()) -> int:
    """Shorter side of the images in the ``cached`` loader's cache: the largest side any transform
    of the run resizes to, over every stage and final test size (the test resize, e.g. 255 for
    224; for random-resized crops the training size times ``test_resize_ratio``, so that crops are
    not upsampled from a too-small copy)."""
    sides = []
    for size in {data.train_size, *train_sizes}:
        sides.append(int(size * data.test_resize_ratio) if data.train_crop == "random_resized"
                     else T.draft_side(data, train=True, size=size) or size)
    for size in {data.test_size, *test_sizes}:
        sides.append(T.draft_side(data, train=False, size=size) or size)
    return max(sides)


def load_splits(index: DatasetIndex, data, *, train_sizes: Sequence[int] = (), test_sizes: Sequence[int] = ()) -> Splits:
    """Sources for the recipe's dataset, with the validation split held out from train.
    ``train_sizes``/``test_sizes``: every size the run will use (stages, final evaluation), so the
    ``cached`` loader stores images large enough for all of them."""
    skipped = 0
    banner = AIRCRAFT_BANNER_PX if data.crop_banner else 0
    if index.kind == "cifar":
        train_src, test_src = cifar_sources(index)
    elif data.loader == "cached":
        from fgbench.data import catalog

        # `fgbench data remove NAME` deletes it with the dataset (a folder's: `... folder --root DIR`)
        cache = catalog.cache_dir(index.name, index.root if index.name == "folder" else None)
        side = cache_short_side(data, train_sizes, test_sizes)
        train_src = CachedSource(index.train, side, cache / "train", data.skip_corrupt, banner)
        test_src = CachedSource(index.test, side, cache / "test", data.skip_corrupt, banner)
        skipped = train_src.skipped + test_src.skipped
    else:
        train_src, test_src = FileSource(index.train, banner), FileSource(index.test, banner)
    if len(train_src) == 0 or len(test_src) == 0:
        raise UserError(f"data.dataset: {index.name} has an empty train or test split")
    train, val = stratified_split(train_src.labels, data.val_fraction, data.val_seed)
    return Splits(index, train_src, test_src, train, val, list(range(len(test_src))), skipped)


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
        if torch.utils.data.get_worker_info() is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                x = self.transform(img)
        else:
            torch.manual_seed(s)
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


def _track(it):
    """Remember a DataLoader iterator so that :func:`_shutdown_workers` can stop its workers."""
    global _EXIT_HOOK
    if hasattr(it, "_shutdown_workers"):
        if not _EXIT_HOOK:
            # registered after torch imported multiprocessing, so it runs before its exit handler
            atexit.register(_shutdown_workers)
            _EXIT_HOOK = True
        _LIVE_ITERATORS.add(it)
    return it


def _shutdown_workers() -> None:
    for it in list(_LIVE_ITERATORS):
        try:
            it._shutdown_workers()
        except Exception:  # noqa: BLE001 - at exit, one pool must not keep the others alive
            pass


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


class WorkerTrainLoader(TrainLoader):
    def __init__(self, dataset: TrainDataset, batch_size: int, seed: int, data, device: torch.device,
                 shard: tuple[int, int] | None = None):
        self.sampler = EpochBatchSampler(len(dataset), batch_size, seed, data.drop_last, shard)
        self.steps_per_epoch = self.sampler.batches_per_epoch()
        self.images = len(dataset)
        self.loader = DataLoader(
            dataset, batch_sampler=self.sampler, num_workers=data.workers, collate_fn=collate,
            pin_memory=device.type == "cuda", persistent_workers=data.workers > 0,
            worker_init_fn=_worker_init if data.workers > 0 else None,
            # Its own generator: every iter() draws a base seed, which must not come from (and
            # shift) the global stream that the checkpoint restores in the middle of an epoch.
            generator=torch.Generator().manual_seed(seed),
        )

    def batches(self, epoch: int, start_batch: int = 0):
        self.sampler.set_epoch(epoch, start_batch)
        return _track(iter(self.loader))

    def close(self) -> None:
        # Persistent workers live with the loader's iterator: stop them now, then drop it.
        it = getattr(self.loader, "_iterator", None) if self.loader is not None else None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self.loader = None  # type: ignore[assignment]


class WorkerEvalLoader(EvalLoader):
    def __init__(self, dataset: EvalDataset, batch_size: int, data, device: torch.device):
        self.images = len(dataset)
        self.loader = DataLoader(
            # Not persistent: evaluation runs once per epoch, and keeping a second and third pool of
            # workers alive beside the training pool costs more memory than restarting them costs time.
            dataset, batch_size=batch_size, shuffle=False, num_workers=data.workers, collate_fn=collate,
            pin_memory=device.type == "cuda", persistent_workers=False,
            worker_init_fn=_worker_init if data.workers > 0 else None,
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
    for name, get in DEVICE_LOADER_UNSUPPORTED:
        if get(augment):
            raise UserError(f"{name}: not available with data.loader = \"device\"; use data.loader = \"standard\"")


def _stack_split(source: Source, indices: list[int], geometry: list, what: str,
                 skip_corrupt: bool = False) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """uint8 N x 3 x H x W of the split after the deterministic geometry steps, the labels, and
    the images left out as undecodable (``skip_corrupt``; otherwise the first one is an error)."""
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
            img = source.load(i)
        except decode_errors() as err:
            if skip_corrupt:
                skipped.append(source.describe(i))
                continue
            raise UserError(f"{source.describe(i)}: cannot decode image ({err}); fix or remove it, "
                            "or set data.skip_corrupt = true") from None
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
    stats = T.normalization(data)
    if stats is None:
        return lambda x: x.float().div_(255)
    mean = torch.tensor(stats[0], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(stats[1], device=device).view(1, 3, 1, 1) * 255
    return lambda x: (x.float() - mean) / std


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


def _shard(indices: list[int], shard: tuple[int, int] | None) -> list[int]:
    return indices if shard is None else indices[shard[0]::shard[1]]


def build_loaders(splits: Splits, data, augment, *, train_size: int, test_size: int, batch_size: int,
                  seed: int, device: torch.device, shard: tuple[int, int] | None = None) -> StageLoaders:
    """Loaders for one stage (sizes and batch size may differ between stages). ``batch_size`` is
    the global training batch; with ``shard = (rank, world)`` this process gets its part of each
    batch and of each evaluation split (evaluated ``data.eval_batch_size`` or ``batch_size / world``
    images at a time)."""
    eval_bs = data.eval_batch_size or (batch_size // shard[1] if shard else batch_size)
    if len(splits.train) < batch_size and data.drop_last:
        raise UserError(f"data.batch_size: {batch_size} is larger than the training split "
                        f"({len(splits.train)} images) and data.drop_last is set")
    if data.loader == "device":
        check_device_loader(data, augment)
        from torchvision.transforms import v2

        train_geo = (T.test_geometry(data, train_size) if data.train_crop == "pad_crop"
                     else [v2.Resize((train_size, train_size), antialias=True)])
        skip = data.skip_corrupt
        x, y, bad = _stack_split(splits.train_source, splits.train, train_geo, "train", skip)
        train = DeviceTrainLoader(x, y, batch_size, seed, data, augment, train_size, device, shard, bad)
        val = None
        if splits.val:
            vx, vy, vbad = _stack_split(splits.train_source, _shard(splits.val, shard),
                                        T.test_geometry(data, test_size), "val", skip)
            val = DeviceEvalLoader(vx, vy, eval_bs, data, device, vbad)
        tx, ty, tbad = _stack_split(splits.test_source, _shard(splits.test, shard), T.test_geometry(data, test_size),
                                    "test", skip)
        return StageLoaders(train, val, DeviceEvalLoader(tx, ty, eval_bs, data, device, tbad))
    raw_first = bool(augment.randaugment_ops and augment.randaugment_before_resize)
    if raw_first and data.loader == "cached":
        raise UserError("augment.randaugment_before_resize: the cached loader keeps resized copies, not the images "
                        "as loaded; use data.loader = \"standard\"")
    ttf = T.train_transform(data, augment, train_size)
    etf = T.test_transform(data, test_size)
    # RandAugment before the resize sees the image as loaded: no reduced JPEG decoding for training
    tdraft = None if raw_first else T.draft_side(data, train=True, size=train_size)
    edraft = T.draft_side(data, train=False, size=test_size)
    train = WorkerTrainLoader(TrainDataset(splits.train_source, splits.train, ttf, seed, tdraft), batch_size, seed,
                              data, device, shard)
    val = (WorkerEvalLoader(EvalDataset(splits.train_source, _shard(splits.val, shard), etf, edraft), eval_bs, data,
                            device) if splits.val else None)
    test = WorkerEvalLoader(EvalDataset(splits.test_source, _shard(splits.test, shard), etf, edraft), eval_bs, data,
                            device)
    return StageLoaders(train, val, test)


def eval_loader(splits: Splits, data, *, test_size: int, batch_size: int, device: torch.device,
                split: str = "test", shard: tuple[int, int] | None = None) -> EvalLoader:
    """A test (or val) loader at another test size (final evaluation at ``eval.final_test_sizes``);
    with ``shard``, this process's part of the split."""
    src = splits.test_source if split == "test" else splits.train_source
    idx = _shard(splits.test if split == "test" else splits.val, shard)
    if data.loader == "device":
        x, y, bad = _stack_split(src, idx, T.test_geometry(data, test_size), split, data.skip_corrupt)
        return DeviceEvalLoader(x, y, batch_size, data, device, bad)
    etf = T.test_transform(data, test_size)
    return WorkerEvalLoader(EvalDataset(src, idx, etf, T.draft_side(data, train=False, size=test_size)),
                            batch_size, data, device)
