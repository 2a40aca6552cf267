"""The built-in offline dataset ``synthetic``: small, deterministic, fine-grained in spirit.

Every image shows the same scene: a textured background, a few distractor blobs, and one
"bird" (an ellipse body with a head patch) at a jittered position, size and facing. The body's
colour is drawn from the same distribution for every class, so it says nothing about the class.
What does is small: the markings on the body (one, two or three dots, or a horizontal or
vertical stripe: five patterns; dark on a light body, light on a dark one) crossed with the colour
of the head patch (warm or cool, itself jittered): ten classes that differ only in a few pixels,
the way bird species differ in a wing bar or a crown patch. Gaussian pixel noise and the jitter
keep it from being trivial; a small CNN needs a few epochs to pass 90 %.

Decisions:

* Generated with PIL, ``random.Random`` and numpy's seeded generator (no torch) from a fixed seed
  and the image's own index, so the same files come out on every machine.
  Images are PNG (lossless), so decoding gives back exactly the generated pixels.
* Written into a temporary sibling directory that is renamed into place only when complete, with a
  ``READY`` marker written last: an interrupted generation never looks ready and is redone.
* The layout is the class-folder tree every folder dataset uses (``train/<class>/*.png``,
  ``test/<class>/*.png``), so it goes through the same ``folder_index`` as the user's own data.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

#: Bump when the generator changes, so an old tree is regenerated instead of reused.
VERSION = 2
IMAGE_SIZE = 32
TRAIN_PER_CLASS = 250
TEST_PER_CLASS = 100
SEED = 20240611

PATTERNS = ("one_dot", "two_dots", "three_dots", "h_stripe", "v_stripe")
HEADS = ("warm", "cool")
CLASS_NAMES = [f"{head}_{pattern}" for head in HEADS for pattern in PATTERNS]

_MARKER = "READY"


def _render(seed: int, cls: int, size: int = IMAGE_SIZE):
    import numpy as np
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    head_kind, pattern = divmod(cls, len(PATTERNS))
    # Background: a vertical gradient between two random dull colours.
    top = np.array([rng.randint(40, 200) for _ in range(3)], dtype=np.float32)
    bottom = np.array([rng.randint(40, 200) for _ in range(3)], dtype=np.float32)
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    grad = np.broadcast_to(top * (1 - t) + bottom * t, (size, size, 3))
    img = Image.fromarray(np.ascontiguousarray(grad).round().astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    # Distractors: small blobs of random colour anywhere.
    for _ in range(rng.randint(1, 3)):
        cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(1.0, 2.5)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    # The bird: body colour is class-independent.
    w, h = rng.uniform(15, 19), rng.uniform(10, 13)
    cx, cy = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3)
    facing = rng.choice((-1, 1))
    body = tuple(rng.randint(60, 230) for _ in range(3))
    draw.ellipse((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), fill=body)
    # Head patch at the front of the body: warm (red/orange/yellow) or cool (blue/cyan/teal).
    if head_kind == 0:
        head = (rng.randint(200, 255), rng.randint(40, 170), rng.randint(0, 50))
    else:
        head = (rng.randint(0, 50), rng.randint(90, 200), rng.randint(200, 255))
    hx, hy, hr = cx + facing * (w / 2 - 1.5), cy - h / 2 + 1.5, rng.uniform(2.2, 3.0)
    draw.ellipse((hx - hr, hy - hr, hx + hr, hy + hr), fill=head)
    # Markings: dark on a light body, light on a dark one, so they are always visible.
    luma = 0.299 * body[0] + 0.587 * body[1] + 0.114 * body[2]
    lo, hi = (10, 70) if luma > 128 else (190, 250)
    mark = tuple(rng.randint(lo, hi) for _ in range(3))
    name = PATTERNS[pattern]
    if name in ("one_dot", "two_dots", "three_dots"):
        n = {"one_dot": 1, "two_dots": 2, "three_dots": 3}[name]
        r = rng.uniform(1.3, 1.6)
        spacing = rng.uniform(4.6, 5.2)
        x0 = cx - facing * 2 - spacing * (n - 1) / 2
        yd = cy + rng.uniform(-0.8, 0.8)
        for i in range(n):
            xd = x0 + i * spacing
            draw.ellipse((xd - r, yd - r, xd + r, yd + r), fill=mark)
    elif name == "h_stripe":
        half = rng.uniform(4.5, 6.0)
        yd = cy + rng.uniform(-0.8, 0.8)
        draw.rectangle((cx - half, yd - 1, cx + half, yd + 1), fill=mark)
    else:
        half = rng.uniform(3.0, 4.0)
        xd = cx - facing * 2 + rng.uniform(-0.8, 0.8)
        draw.rectangle((xd - 1, cy - half, xd + 1, cy + half), fill=mark)
    # Per-pixel Gaussian noise, from a generator seeded by the same image seed.
    sigma = rng.uniform(6, 14)
    noise = np.random.default_rng(seed).normal(0.0, sigma, (size, size, 3))
    out = np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).round().astype(np.uint8)
    return Image.fromarray(out, "RGB")


def _seed_for(split: str, cls: int, i: int) -> int:
    # A string seed hashes with SHA-512 inside random.Random: stable across runs and platforms.
    return random.Random(f"{SEED}:{VERSION}:{split}:{cls}:{i}").getrandbits(64)


def generate(target: Path, *, train_per_class: int = TRAIN_PER_CLASS, test_per_class: int = TEST_PER_CLASS,
             size: int = IMAGE_SIZE) -> None:
    """Write the whole tree into ``target`` (which must not exist yet)."""
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for cls, cname in enumerate(CLASS_NAMES):
            d = target / split / cname
            d.mkdir(parents=True)
            for i in range(per_class):
                img = _render(_seed_for(split, cls, i), cls, size)
                img.save(d / f"{cname}_{i:04d}.png", optimize=False)


def is_ready(root: str | os.PathLike[str]) -> bool:
    marker = Path(root) / _MARKER
    try:
        return marker.read_text(encoding="utf-8").strip() == str(VERSION)
    except OSError:
        return False


def ensure_synthetic(root: str | os.PathLike[str]) -> Path:
    """The ready dataset under ``root``, generating it first if needed (a few seconds, once)."""
    root = Path(root).expanduser()
    if is_ready(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        generate(tmp / "data")
        (tmp / "data" / _MARKER).write_text(f"{VERSION}\n", encoding="utf-8")
        if root.exists():
            # An older version or a half-finished tree from a crash: replace it whole.
            stale = root.with_name(f".{root.name}.stale-{os.getpid()}")
            os.replace(root, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp / "data", root)
        except OSError:
            # Another process finished first: use its copy.
            if not is_ready(root):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def describe() -> str:
    return (f"{len(CLASS_NAMES)} classes, {TRAIN_PER_CLASS * len(CLASS_NAMES)} train / "
            f"{TEST_PER_CLASS * len(CLASS_NAMES)} test images, {IMAGE_SIZE}x{IMAGE_SIZE} PNG, generated offline")

