"""Image transforms from a recipe's ``data`` and ``augment`` sections (torchvision.transforms.v2).

Decisions:

* The order is torchvision's reference order: geometry (crop, flip, rotation), colour jitter (as
  timm, after the flip), then the policy
  (RandAugment or TrivialAugmentWide) on the cropped PIL image, then to a float tensor, Normalize,
  and RandomErasing last (it erases in normalized space, so the erased area is the mean, as in the
  references). ``augment.randaugment_before_resize`` moves RandAugment in front of the geometry,
  onto the image as loaded, as the hoya seed did with its 16-op port
  (``randaugment_policy = "ildoonet16"``, :mod:`fgbench.data.randaugment16`).
* ``random_resized``, ``pad_crop``, ``resize_crop`` and ``resize`` are the seeds' four training
  geometries; ``ratio``, ``fixed``, ``resize`` and ``none`` their test geometries. Each has one
  branch in a ``match``. A stage may train on ``test`` (``stages[].train_crop``): the test
  transform itself at the stage's train size, with no augmentation (FixRes fine-tuning).
* ``data.interpolation = "random"`` is timm's: each crop draws bilinear or bicubic (from torch's
  generator, which the loaders seed per sample, so it is reproducible like every other draw).
* Normalization constants live here once. ``dataset`` means the CIFAR constants the seeds used
  (including the "kuangliu" CIFAR-10 std, on purpose: it reproduces them) or the catalog entry's
  own mean/std; ``learned`` does no Normalize because the model carries a learned normalizer.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2

from fgbench.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DATASET_STATS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # SimpleClassification's constants (the CIFAR-10 std is kuangliu's, not the true ~0.247/0.243/0.261).
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    # Measured over the generated synthetic train split (fgbench.data.synthetic, VERSION 2).
    "synthetic": ((0.4823, 0.4827, 0.4855), (0.1897, 0.1795, 0.1893)),
}


def normalization(data) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) for the recipe's ``data.normalize``, or None when the transform must not normalize."""
    match data.normalize:
        case "imagenet":
            return IMAGENET_MEAN, IMAGENET_STD
        case "explicit":
            return tuple(data.mean), tuple(data.std)
        case "none" | "learned":
            return None
        case "dataset":
            if data.dataset in DATASET_STATS:
                return DATASET_STATS[data.dataset]
            entry = _catalog_entry(data.dataset)
            mean, std = getattr(entry, "mean", None), getattr(entry, "std", None)
            if mean is None or std is None:
                raise UserError(
                    f"data.normalize: no dataset constants are known for {data.dataset!r}; "
                    "use \"imagenet\" or \"explicit\" with data.mean and data.std")
            return tuple(mean), tuple(std)
    raise AssertionError(data.normalize)


def _catalog_entry(name: str) -> Any:
    try:
        from fgbench.data import catalog
    except ImportError:
        return None
    try:
        return catalog.get(name)
    except Exception:  # an unknown name is the catalog's to report; here it just has no constants
        return None


def _to_tensor(data) -> list:
    steps: list = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    stats = normalization(data)
    if stats is not None:
        steps.append(v2.Normalize(mean=list(stats[0]), std=list(stats[1])))
    return steps


def train_transform(data, augment, size: int | None = None) -> v2.Compose:
    """PIL image -> normalized float tensor, with the recipe's training augmentations.
    ``size`` overrides ``data.train_size`` (a later stage's size)."""
    size = size or data.train_size
    if data.train_crop == "test":  # a stage that trains on the test preprocessing (FixRes fine-tuning)
        return test_transform(data, size)
    steps: list = []
    policy = _randaugment(augment)
    if policy is not None and augment.randaugment_before_resize:
        steps.append(policy)
    resize = _interpolated(data.interpolation)
    match data.train_crop:
        case "random_resized":
            steps.append(resize(lambda i: v2.RandomResizedCrop(size, scale=tuple(data.crop_scale),
                                                               ratio=tuple(data.crop_ratio), interpolation=i,
                                                               antialias=True)))
        case "pad_crop":
            steps.append(v2.RandomCrop(size, padding=data.crop_padding or None, pad_if_needed=True))
        case "resize_crop":
            steps.append(resize(lambda i: v2.Resize(tuple(data.train_resize), interpolation=i, antialias=True)))
            steps.append(v2.RandomCrop(size, padding=data.crop_padding or None, pad_if_needed=True))
        case "resize":
            steps.append(resize(lambda i: v2.Resize((size, size), interpolation=i, antialias=True)))
    if augment.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if augment.rotation:
        steps.append(v2.RandomRotation(augment.rotation))
    if augment.color_jitter or augment.color_jitter_hue:
        v = augment.color_jitter
        steps.append(v2.ColorJitter(brightness=v, contrast=v, saturation=v, hue=augment.color_jitter_hue))
    if policy is not None:
        if not augment.randaugment_before_resize:
            steps.append(policy)
    elif augment.trivialaugment:
        steps.append(v2.TrivialAugmentWide())
    steps += _to_tensor(data)
    if augment.random_erasing:
        steps.append(v2.RandomErasing(p=augment.random_erasing, value=0))
    return v2.Compose(steps)


INTERPOLATION = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}


class RandomChoicePerImage(torch.nn.Module):
    """One of ``options`` per call, drawn from torch's generator (seeded per sample by the loaders):
    timm's random interpolation, one draw per crop."""

    def __init__(self, options: list):
        super().__init__()
        self.options = torch.nn.ModuleList(options)

    def forward(self, *inputs):
        i = int(torch.randint(len(self.options), (1,)).item())
        return self.options[i](*inputs)


def _interpolated(mode: str):
    """``make(interpolation) -> transform`` wrapped for the recipe's interpolation choice."""
    def build(make):
        if mode == "random":
            return RandomChoicePerImage([make(INTERPOLATION["bilinear"]), make(INTERPOLATION["bicubic"])])
        return make(INTERPOLATION[mode])
    return build


def _randaugment(augment):
    if not augment.randaugment_ops:
        return None
    if augment.randaugment_policy == "ildoonet16":
        from fgbench.data.randaugment16 import RandAugment16

        return RandAugment16(augment.randaugment_ops, augment.randaugment_magnitude,
                             max_magnitude=augment.randaugment_bins - 1)
    return v2.RandAugment(num_ops=augment.randaugment_ops, magnitude=augment.randaugment_magnitude,
                          num_magnitude_bins=augment.randaugment_bins)


def test_geometry(data, size: int | None = None) -> list:
    """The resize/crop steps of the test transform (shared with the device loader's preparation)."""
    size = size or data.test_size
    i = INTERPOLATION[data.test_interpolation]
    match data.test_crop:
        case "ratio":
            return [v2.Resize(int(size * data.test_resize_ratio), interpolation=i, antialias=True), v2.CenterCrop(size)]
        case "fixed":
            return [v2.Resize(tuple(data.test_resize), interpolation=i, antialias=True), v2.CenterCrop(size)]
        case "resize":
            return [v2.Resize((size, size), interpolation=i, antialias=True)]
        case "none":
            return []
    raise AssertionError(data.test_crop)


def test_transform(data, size: int | None = None) -> v2.Compose:
    """PIL image -> normalized float tensor, deterministic (also used for the validation split)."""
    return v2.Compose(test_geometry(data, size) + _to_tensor(data))
