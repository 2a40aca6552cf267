"""The carrier-of-tricks seed's 16-op RandAugment: op list, value mapping, quirks, drawing, validation."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest
import torch
from PIL import Image

from fgbench.data import randaugment16 as ra16
from fgbench.data.randaugment16 import OPS, RandAugment16, apply_op

W, H = 48, 40  # not square, so a swapped width/height shows
FILL = np.array([125, 123, 114], dtype=np.uint8)


def noise(seed: int = 0) -> np.ndarray:
    """A random H x W x 3 uint8 array with no pixel equal to the cutout colour."""
    a = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    assert not np.all(a == FILL, axis=-1).any()
    return a


def pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a, "RGB")


def test_ops_are_the_sixteen_of_the_seed_in_order():
    assert OPS == (
        "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
        "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "CutoutAbs",
        "TranslateXabs", "TranslateYabs",
    )
    assert len(set(OPS)) == 16


@pytest.mark.parametrize("magnitude", [0, 15, 30])
@pytest.mark.parametrize("sign", [1, -1])
def test_every_op_keeps_size_and_rgb(magnitude, sign):
    img = pil(noise())
    for name in OPS:
        out = apply_op(img, name, magnitude, sign=sign)
        assert (out.size, out.mode) == ((W, H), "RGB"), name


def test_enhance_ops_are_a_no_op_at_m15():
    # The seed's quirk: 15/30 * (1.9 - 0.1) + 0.1 is 0.9999999999999999, which PIL blends as 1.0.
    a = noise()
    for name in ("Color", "Contrast", "Brightness", "Sharpness"):
        assert np.array_equal(np.asarray(apply_op(pil(a), name, 15)), a), name
        assert not np.array_equal(np.asarray(apply_op(pil(a), name, 30)), a), name  # not a no-op in general


def test_posterize_keeps_two_bits_at_m15_and_at_least_one_bit():
    a = noise()
    out = np.asarray(apply_op(pil(a), "Posterize", 15))
    assert np.all(out & 0b00111111 == 0)
    assert np.array_equal(out, a & 0b11000000)
    assert np.array_equal(np.asarray(apply_op(pil(a), "Posterize", 0)), a & 0b10000000)  # v=0 -> 1 bit


def test_solarize_at_m15_inverts_exactly_the_values_from_128():
    a = noise()
    out = np.asarray(apply_op(pil(a), "Solarize", 15))
    assert np.array_equal(out, np.where(a >= 128, 255 - a, a))
    assert np.array_equal(np.asarray(apply_op(pil(a), "Solarize", 30)), a)  # threshold 256: nothing


def test_solarize_add_matches_a_numpy_reference():
    a = noise()
    added = np.clip(a.astype(np.int32) + 110, 0, 255)
    expected = np.where(added >= 128, 255 - added, added).astype(np.uint8)
    assert np.array_equal(np.asarray(apply_op(pil(a), "SolarizeAdd", 30)), expected)
    # M=0 adds nothing: plain solarize at 128.
    assert np.array_equal(np.asarray(apply_op(pil(a), "SolarizeAdd", 0)), np.where(a >= 128, 255 - a, a))


def test_invert_twice_is_identity_and_value_free_ops_ignore_m():
    a = noise()
    once = apply_op(pil(a), "Invert", 30)
    assert np.array_equal(np.asarray(once), 255 - a)
    assert np.array_equal(np.asarray(apply_op(once, "Invert", 0)), a)
    for name in ("AutoContrast", "Equalize"):
        assert np.array_equal(np.asarray(apply_op(pil(a), name, 0)), np.asarray(apply_op(pil(a), name, 30)))


def test_translate_sign_convention():
    # PIL's affine maps output x to input x + v: v = +10 moves the content 10 px LEFT (up for Y).
    a = np.full((H, W, 3), 60, dtype=np.uint8)
    a[:, 20] = 255  # a white column at x=20
    a[15, :] = 200  # a light row at y=15
    m = 3  # 3/30 * 100 = 10 px
    left = np.asarray(apply_op(pil(a), "TranslateXabs", m, sign=1))
    assert np.array_equal(left[:, 10], a[:, 20]) and np.array_equal(left[:, : W - 10], a[:, 10:])
    assert np.all(left[:, W - 10:] == 0)  # black fill where nothing came from
    right = np.asarray(apply_op(pil(a), "TranslateXabs", m, sign=-1))
    assert np.array_equal(right[:, 30], a[:, 20]) and np.array_equal(right[:, 10:], a[:, : W - 10])
    assert np.all(right[:, :10] == 0)
    up = np.asarray(apply_op(pil(a), "TranslateYabs", m, sign=1))
    assert np.array_equal(up[: H - 10], a[10:]) and np.all(up[H - 10:] == 0)
    down = np.asarray(apply_op(pil(a), "TranslateYabs", m, sign=-1))
    assert np.array_equal(down[10:], a[: H - 10]) and np.all(down[:10] == 0)


def test_geometric_ops_use_the_full_range_at_m30_with_the_given_sign():
    img = pil(noise())
    affine = Image.Transform.AFFINE
    for sign in (1, -1):
        expected = {
            "Rotate": img.rotate(30 * sign),
            "ShearX": img.transform(img.size, affine, (1, 0.3 * sign, 0, 0, 1, 0)),
            "ShearY": img.transform(img.size, affine, (1, 0, 0, 0.3 * sign, 1, 0)),
            "TranslateXabs": img.transform(img.size, affine, (1, 0, 100 * sign, 0, 1, 0)),
            "TranslateYabs": img.transform(img.size, affine, (1, 0, 0, 0, 1, 100 * sign)),
        }
        for name, want in expected.items():
            assert np.array_equal(np.asarray(apply_op(img, name, 30, sign=sign)), np.asarray(want)), (name, sign)
    # ...and do nothing at M=0; the sign only matters for geometric ops.
    for name in ("Rotate", "ShearX", "ShearY", "TranslateXabs", "TranslateYabs"):
        assert np.array_equal(np.asarray(apply_op(img, name, 0, sign=-1)), np.asarray(img)), name
    assert np.array_equal(np.asarray(apply_op(img, "Solarize", 15, sign=-1)), np.asarray(apply_op(img, "Solarize", 15)))


def _painted_box(out: np.ndarray, before: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the painted pixels, inclusive, after checking they form one solid rectangle."""
    painted = np.all(out == FILL, axis=-1)
    assert np.array_equal(painted, np.any(out != before, axis=-1))  # only the painted pixels changed
    rows, cols = np.flatnonzero(painted.any(axis=1)), np.flatnonzero(painted.any(axis=0))
    x0, y0, x1, y1 = int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])
    assert painted[y0:y1 + 1, x0:x1 + 1].all() and painted.sum() == (y1 - y0 + 1) * (x1 - x0 + 1)
    return x0, y0, x1, y1


def test_cutout_paints_the_seeds_inclusive_box_shifted_in_at_the_top_left():
    # 150 x 150 like the Intel images, M = 15: v = 15/30 * 40 = 20. The seed: cx = uniform(w) lies in
    # (1, w], x0 = int(max(0, cx - 10)), x1 = min(w, x0 + 20), and PIL paints x0..x1 inclusive.
    a = np.random.default_rng(1).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    assert not np.all(a == FILL, axis=-1).any()
    cases = {  # centre -> painted columns (inclusive), worked out by hand from the lines above
        75.5: (65, 85),  # inside: 21 wide
        3.0: (0, 20),  # left border: x0 = 0, still 21 wide (shifted inward, not cut)
        145.25: (135, 149),  # right border: x1 = 150 is off the image, 15 wide
    }
    for cx, (x0, x1) in cases.items():
        for cy, (y0, y1) in cases.items():
            u = lambda c: (150 - c) / (150 - 1)  # noqa: E731 - uniform(w) = w + (1 - w) u
            out = np.asarray(ra16.paint_cutout(pil(a), 20.0, u(cx), u(cy)))
            assert _painted_box(out, a) == (x0, y0, x1, y1), (cx, cy)
    # through apply_op with random draws: 21 x 21 wherever the box does not reach the right/bottom edge
    sizes = collections.Counter()
    for seed in range(60):
        out = np.asarray(apply_op(pil(a), "CutoutAbs", 15, rng=torch.Generator().manual_seed(seed)))
        x0, y0, x1, y1 = _painted_box(out, a)
        assert 0 <= x0 <= 140 and 0 <= y0 <= 140  # int(max(0, cx - 10)) for cx in (1, 150]
        assert x1 == min(x0 + 20, 149) and y1 == min(y0 + 20, 149)
        sizes[(x1 - x0 + 1, y1 - y0 + 1)] += 1
    assert sizes.most_common(1)[0][0] == (21, 21)
    # The same generator seed gives the same box; rng=None follows torch's global seed.
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert apply_op(pil(a), "CutoutAbs", 15, rng=g()).tobytes() == apply_op(pil(a), "CutoutAbs", 15, rng=g()).tobytes()
    torch.manual_seed(5)
    first = apply_op(pil(a), "CutoutAbs", 15).tobytes()
    torch.manual_seed(5)
    assert apply_op(pil(a), "CutoutAbs", 15).tobytes() == first


def test_cutout_at_m30_on_a_non_square_image_and_one_pixel_at_m0():
    a = noise()  # 48 wide, 40 high: v = 40 at M = 30
    for seed in range(20):
        out = np.asarray(apply_op(pil(a), "CutoutAbs", 30, rng=torch.Generator().manual_seed(seed)))
        x0, y0, x1, y1 = _painted_box(out, a)
        assert x1 == min(x0 + 40, W - 1) and y1 == min(y0 + 40, H - 1)
        assert x0 <= W - 20 and y0 <= H - 20
    # the seed's guard is v < 0: at v = 0 it still draws the rectangle (x0, y0, x0, y0), one pixel
    out = np.asarray(apply_op(pil(a), "CutoutAbs", 0, rng=torch.Generator().manual_seed(0)))
    x0, y0, x1, y1 = _painted_box(out, a)
    assert (x1 - x0, y1 - y0) == (0, 0)


def test_same_torch_seed_same_output_whatever_python_and_numpy_do():
    img = pil(noise())
    aug = RandAugment16(3, 15)
    outs = []
    for other in (1, 2):
        random.seed(other)
        np.random.seed(other)
        torch.manual_seed(1234)
        outs.append(np.asarray(aug(img)))
    assert np.array_equal(outs[0], outs[1])
    assert (outs[0].shape, aug(img).mode) == ((H, W, 3), "RGB")


def test_draws_with_replacement_uniformly_and_signs_only_geometric_ops(monkeypatch):
    calls: list[list[tuple[str, int]]] = []

    def spy(img, name, magnitude, max_magnitude=30.0, sign=1, rng=None):
        assert (magnitude, max_magnitude) == (15, 30.0)
        calls[-1].append((name, sign))
        return img

    monkeypatch.setattr(ra16, "apply_op", spy)
    aug = RandAugment16(3, 15)
    img = pil(noise())
    torch.manual_seed(0)
    for _ in range(400):
        calls.append([])
        assert aug(img) is img
    assert all(len(c) == 3 for c in calls)
    counts = collections.Counter(name for c in calls for name, _ in c)
    assert set(counts) == set(OPS)
    assert all(40 <= n <= 115 for n in counts.values()), counts  # 75 expected each
    assert any(len({name for name, _ in c}) < 3 for c in calls)  # repeats within a call: with replacement
    signs = collections.defaultdict(set)
    for c in calls:
        for name, sign in c:
            signs[name].add(sign)
    for name in OPS:
        assert signs[name] == ({1, -1} if name in ra16.GEOMETRIC else {1}), name


def test_zero_ops_returns_the_image_unchanged():
    img = pil(noise())
    assert RandAugment16(0, 30)(img) is img


@pytest.mark.parametrize(("args", "match"), [
    ((-1, 10), "num_ops must be an int >= 0"),
    ((1.5, 10), "num_ops must be an int >= 0"),
    ((True, 10), "num_ops must be an int >= 0"),
    ((2, -1), r"magnitude must be a number in \[0, max_magnitude=30.0\]"),
    ((2, 31), r"magnitude must be a number in \[0, max_magnitude=30.0\]"),
    ((2, float("nan")), "magnitude must be a number"),
    ((2, 5, 0), "max_magnitude must be a number > 0"),
    ((2, 5, -10), "max_magnitude must be a number > 0"),
    ((2, 11, 10), r"magnitude must be a number in \[0, max_magnitude=10\]"),
])
def test_constructor_validation(args, match):
    with pytest.raises(ValueError, match=match):
        RandAugment16(*args)


def test_repr_and_apply_op_errors():
    assert repr(RandAugment16(3, 15)) == "RandAugment16(num_ops=3, magnitude=15, max_magnitude=30)"
    assert repr(RandAugment16(2, 7.5, 10)) == "RandAugment16(num_ops=2, magnitude=7.5, max_magnitude=10)"
    img = pil(noise())
    with pytest.raises(ValueError, match="unknown op 'Identity'"):
        apply_op(img, "Identity", 5)
    with pytest.raises(ValueError, match="sign must be 1 or -1"):
        apply_op(img, "Rotate", 5, sign=0)
    with pytest.raises(ValueError, match="expects an RGB image, got mode 'L'"):
        RandAugment16(1, 5)(img.convert("L"))
