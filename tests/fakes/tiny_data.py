"""A tiny real image folder and the recipe head that trains on it, for tests that run the real trainer
in a subprocess (sweeps, SLURM, searches, trackers)."""

from __future__ import annotations

import random
from pathlib import Path

# Three colour classes, close to each other and noisy, so that a few epochs do not reach 100%.
COLORS = {"blue": (115, 115, 140), "green": (115, 140, 115), "red": (140, 115, 115)}


def make_images(root: Path, per_class: dict[str, int], seed: int = 0) -> None:
    """16x16 PNGs (the test size, so predict and the trainer see the same pixels)."""
    from PIL import Image

    rng = random.Random(seed)
    for split, n in per_class.items():
        for name, rgb in COLORS.items():
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                tint = [c + rng.randint(-40, 40) for c in rgb]  # per image and channel: classes overlap
                px = [tuple(max(0, min(255, c + rng.randint(-60, 60))) for c in tint) for _ in range(16 * 16)]
                im = Image.new("RGB", (16, 16))
                im.putdata(px)
                im.save(d / f"{i}.png")


def folder_recipe_head(data: Path, name: str, *, workers: int | None = None) -> str:
    """``name``, ``[data]`` (the folder at 16 px, a quarter held out for validation) and ``[model]``
    (a CIFAR ResNet-8): the part every such test recipe shares. Append the rest."""
    extra = f"workers = {workers}\n" if workers is not None else ""
    return (f'name = "{name}"\n[data]\ndataset = "folder"\nroot = "{data}"\ntrain_size = 16\ntest_size = 16\n'
            f'test_crop = "resize"\nbatch_size = 8\nnormalize = "imagenet"\nval_fraction = 0.25\n{extra}'
            '[model]\narch = "resnet8_cifar"\n')
