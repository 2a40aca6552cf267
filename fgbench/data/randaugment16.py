"""The hoya/carrier-of-tricks seed's RandAugment: 16 PIL ops, drawn with replacement.

This is fgbench's own implementation, written from a spec, of the RandAugment variant that the
"carrier-of-tricks" seed project used (its port of ildoonet's pytorch-randaugment). It is kept to
reproduce that seed; fgbench's default RandAugment is torchvision's ``v2.RandAugment`` (see
``fgbench.data.transforms``), a different policy: 14 ops (with Identity; without Invert,
SolarizeAdd and Cutout), other value ranges, and magnitude bins instead of M out of 30.

What it does, per call on a PIL RGB image (the output is a PIL RGB image of the same size):

* ``num_ops`` ops are drawn uniformly **with replacement** from the 16 in ``OPS`` (so one op may
  run twice in a call) and applied in sequence.
* The magnitude M (out of ``max_magnitude``, 30 as in the seed) is scaled into each op's range:
  ``v = M / max_magnitude * (hi - lo) + lo``. The ops without a value ignore it.
* The geometric ops (Rotate, ShearX, ShearY, TranslateXabs, TranslateYabs) flip the sign of v with
  probability 0.5. The other ops always use +v.

Known quirks of the scheme, as measured in ``tests/data/test_randaugment16.py``:

* At M=15 the four enhance ops (Color, Contrast, Brightness, Sharpness, range 0.1..1.9) get a
  factor of 1.0 and return the image unchanged (pixel for pixel). In float64 the formula gives
  0.9999999999999999, which PIL's single-precision blend treats as exactly 1.0. So at the seed's
  usual M=15, four of the 16 draws do nothing.
* Posterize (range 0..4 bits) keeps only 2 bits at M=15; it keeps at least 1 bit (at M=0 the
  formula gives 0 bits, which PIL cannot do, so ``max(1, int(v))`` is used).
* Solarize at M=15 has threshold 128 and inverts exactly the values >= 128.

Interpretations of the spec, documented here once:

* Translate, shear and rotate use PIL's ``Image.transform`` / ``Image.rotate`` with PIL's default
  resampling (nearest) and black fill. PIL's affine data maps each *output* pixel (x, y) to the
  *input* pixel (a*x + b*y + c, d*x + e*y + f), so TranslateXabs with v = +10 moves the content
  10 px to the LEFT (and TranslateYabs with +10 moves it up); -10 moves it right (down). The sign
  is random anyway, so both directions occur equally often.
* CutoutAbs does the seed's arithmetic exactly: ``cx = numpy.random.uniform(w)`` (numpy's ``low``
  is then w and ``high`` 1.0, so cx is uniform on (1, w]), ``x0 = int(max(0, cx - v / 2))``,
  ``x1 = min(w, x0 + v)`` (the same for y), and PIL's ``ImageDraw.rectangle((x0, y0, x1, y1))``
  paints RGB (125, 123, 114) with **both corners included**: a (v + 1) x (v + 1) box, 21 x 21 at
  the seed's M = 15 (v = 20). At the top and left border the box is shifted inward (x0 = 0, still
  v + 1 wide); at the bottom and right it is cut by the image edge. At M = 0 (v = 0) it paints one
  pixel, as the seed does (its ``v < 0`` guard lets v = 0 through).
* SolarizeAdd adds ``int(v)`` to every channel value (clipped to 255), then inverts the values
  >= 128, all in numpy on the uint8 array.
* Randomness comes from torch's global generator (``torch.randint``, ``torch.rand``), the one
  fgbench seeds in the main process and that PyTorch reseeds per DataLoader worker, as
  torchvision's transforms do. ``apply_op`` takes an optional ``torch.Generator`` for the cutout
  centre, so a single op can be made deterministic without touching the global state.
* ``num_ops == 0`` returns the input image object itself; every op returns a new image.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

OPS: tuple[str, ...] = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "CutoutAbs",
    "TranslateXabs",
    "TranslateYabs",
)

# (lo, hi) of each op's value; None for the ops that take no value.
_RANGES: dict[str, tuple[float, float] | None] = {
    "AutoContrast": None,
    "Equalize": None,
    "Invert": None,
    "Rotate": (0.0, 30.0),
    "Posterize": (0.0, 4.0),
    "Solarize": (0.0, 256.0),
    "SolarizeAdd": (0.0, 110.0),
    "Color": (0.1, 1.9),
    "Contrast": (0.1, 1.9),
    "Brightness": (0.1, 1.9),
    "Sharpness": (0.1, 1.9),
    "ShearX": (0.0, 0.3),
    "ShearY": (0.0, 0.3),
    "CutoutAbs": (0.0, 40.0),
    "TranslateXabs": (0.0, 100.0),
    "TranslateYabs": (0.0, 100.0),
}

GEOMETRIC: frozenset[str] = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXabs", "TranslateYabs"})
"""The ops whose value gets a random sign."""

CUTOUT_FILL: tuple[int, int, int] = (125, 123, 114)

_ENHANCERS = {
    "Color": ImageEnhance.Color,
    "Contrast": ImageEnhance.Contrast,
    "Brightness": ImageEnhance.Brightness,
    "Sharpness": ImageEnhance.Sharpness,
}


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_magnitude(magnitude: float, max_magnitude: float) -> None:
    if not _is_number(max_magnitude) or not max_magnitude > 0:
        raise ValueError(f"max_magnitude must be a number > 0, got {max_magnitude!r}")
    if not _is_number(magnitude) or not 0 <= magnitude <= max_magnitude:
        raise ValueError(f"magnitude must be a number in [0, max_magnitude={max_magnitude!r}], got {magnitude!r}")


def _check_image(img: object) -> None:
    if not isinstance(img, Image.Image):
        raise TypeError(f"RandAugment16 works on PIL images, got {type(img).__name__}")
    if img.mode != "RGB":
        raise ValueError(f"RandAugment16 expects an RGB image, got mode {img.mode!r}")


def op_value(name: str, magnitude: float, max_magnitude: float = 30.0) -> float | None:
    """The op's value for magnitude M before any sign flip: ``M / max_magnitude * (hi - lo) + lo``."""
    if name not in _RANGES:
        raise ValueError(f"unknown op {name!r}; known: {', '.join(OPS)}")
    rng = _RANGES[name]
    if rng is None:
        return None
    lo, hi = rng
    return magnitude / max_magnitude * (hi - lo) + lo


def _affine(img: Image.Image, data: tuple[float, ...]) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, data)


def _cutout(img: Image.Image, v: float, rng: torch.Generator | None) -> Image.Image:
    ux, uy = torch.rand(2, generator=rng).tolist()
    return paint_cutout(img, v, ux, uy)


def paint_cutout(img: Image.Image, v: float, ux: float, uy: float) -> Image.Image:
    """The seed's CutoutAbs with its two uniform draws given (``ux``, ``uy`` in [0, 1))."""
    w, h = img.size
    cx = w + (1.0 - w) * ux  # numpy.random.uniform(w): low = w, high = 1.0
    cy = h + (1.0 - h) * uy
    x0, y0 = int(max(0, cx - v / 2.0)), int(max(0, cy - v / 2.0))
    x1, y1 = min(w, x0 + v), min(h, y0 + v)
    out = img.copy()
    ImageDraw.Draw(out).rectangle((x0, y0, x1, y1), CUTOUT_FILL)  # both corners included
    return out


def _solarize_add(img: Image.Image, v: float) -> Image.Image:
    arr = np.asarray(img).astype(np.int16) + int(v)
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    arr = np.where(arr >= 128, 255 - arr, arr).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def apply_op(img: Image.Image, name: str, magnitude: float, max_magnitude: float = 30.0,
             sign: int = 1, rng: torch.Generator | None = None) -> Image.Image:
    """Apply one of ``OPS`` at magnitude M to an RGB image; a new image of the same size.

    ``sign`` (+1 or -1) multiplies the value of the geometric ops and is ignored by the others
    (``RandAugment16`` draws it). ``rng`` is the generator for the cutout centre; None means
    torch's global generator.
    """
    _check_image(img)
    _check_magnitude(magnitude, max_magnitude)
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1, got {sign!r}")
    value = op_value(name, magnitude, max_magnitude)  # None: an op without a range, which uses none
    v = 0.0 if value is None else sign * value if name in GEOMETRIC else value
    match name:
        case "AutoContrast":
            return ImageOps.autocontrast(img)
        case "Equalize":
            return ImageOps.equalize(img)
        case "Invert":
            return ImageOps.invert(img)
        case "Rotate":
            return img.rotate(v)
        case "Posterize":
            return ImageOps.posterize(img, max(1, int(v)))
        case "Solarize":
            # Pillow compares each pixel with the threshold: a float one works, as the seed passed it
            return ImageOps.solarize(img, threshold=cast(int, v))
        case "SolarizeAdd":
            return _solarize_add(img, v)
        case "Color" | "Contrast" | "Brightness" | "Sharpness":
            return _ENHANCERS[name](img).enhance(v)
        case "ShearX":
            return _affine(img, (1, v, 0, 0, 1, 0))
        case "ShearY":
            return _affine(img, (1, 0, 0, v, 1, 0))
        case "CutoutAbs":
            return _cutout(img, v, rng)
        case "TranslateXabs":
            return _affine(img, (1, 0, v, 0, 1, 0))
        case "TranslateYabs":
            return _affine(img, (1, 0, 0, 0, 1, v))
    raise AssertionError(name)


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


class RandAugment16:
    """The carrier-of-tricks seed's RandAugment: ``num_ops`` of the 16 ``OPS``, with replacement.

    ``magnitude`` is M out of ``max_magnitude`` (30 in the seed), scaled into each op's range;
    geometric ops get a random sign. Randomness comes from torch's global generator.
    """

    def __init__(self, num_ops: int, magnitude: float, max_magnitude: float = 30.0) -> None:
        if not isinstance(num_ops, int) or isinstance(num_ops, bool) or num_ops < 0:
            raise ValueError(f"num_ops must be an int >= 0, got {num_ops!r}")
        _check_magnitude(magnitude, max_magnitude)
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.max_magnitude = max_magnitude

    def __call__(self, img: Image.Image) -> Image.Image:
        _check_image(img)
        for _ in range(self.num_ops):
            name = OPS[int(torch.randint(len(OPS), (1,)).item())]
            sign = 1
            if name in GEOMETRIC and torch.rand(1).item() < 0.5:
                sign = -1
            img = apply_op(img, name, self.magnitude, self.max_magnitude, sign)
        return img

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_ops={self.num_ops}, magnitude={_num(self.magnitude)}, "
                f"max_magnitude={_num(self.max_magnitude)})")
