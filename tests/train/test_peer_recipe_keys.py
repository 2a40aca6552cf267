"""Keys that other tools' recipes use (timm, torchvision references): RandomResizedCrop's aspect-ratio
range, bilinear / bicubic / per-crop random interpolation, colour jitter, and timm's cosine in which
the warm-up is part of the period. Each is checked against pixels or a formula computed here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from fgbench.data import transforms as T
from fgbench.errors import RecipeError
from fgbench.recipe import validate_recipe
from fgbench.train.schedule import plan_for_stage


def _recipe(data=None, augment=None, schedule=None):
    return validate_recipe({"data": {"normalize": "none", **(data or {})}, "augment": {"hflip": False, **(augment or {})},
                            **({"schedule": schedule} if schedule else {})})


def _coords_image(n=96) -> Image.Image:
    """R = 2x, G = 2y: a crop's extent can be read back from the pixel values it contains."""
    y, x = np.mgrid[0:n, 0:n]
    arr = np.stack([2 * x, 2 * y, np.zeros_like(x)], axis=-1).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


@pytest.mark.parametrize(("ratio", "expected"), [((2.0, 2.0), 2.0), ((0.5, 0.5), 0.5), ((1.0, 1.0), 1.0)])
def test_crop_ratio_sets_the_width_to_height_ratio_of_the_crop(ratio, expected):
    r = _recipe({"train_size": 24, "crop_scale": [0.25, 0.25], "crop_ratio": list(ratio)})
    tf = T.train_transform(r.data, r.augment)
    img = _coords_image()
    for seed in range(5):
        torch.manual_seed(seed)
        out = tf(img) * 255
        width = (out[0].max() - out[0].min()) / 2 + 1  # pixels spanned horizontally in the source
        height = (out[1].max() - out[1].min()) / 2 + 1
        # area 0.25 * 96^2 at ratio w/h: w = sqrt(area * ratio), h = sqrt(area / ratio)
        assert float(width / height) == pytest.approx(expected, rel=0.12)
        assert float(width * height) == pytest.approx(0.25 * 96 * 96, rel=0.15)


def _noise(w=37, h=29) -> Image.Image:
    g = np.random.default_rng(0)
    return Image.fromarray(g.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def test_interpolation_bilinear_bicubic_and_random_per_crop():
    img = _noise()
    pil = {m: np.asarray(img.resize((16, 16), getattr(Image.Resampling, m.upper()))) for m in ("bilinear", "bicubic")}
    assert not np.array_equal(pil["bilinear"], pil["bicubic"])

    def out(r):
        return (r * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()

    for mode in ("bilinear", "bicubic"):
        r = _recipe({"train_size": 16, "train_crop": "resize", "interpolation": mode,
                     "test_size": 16, "test_crop": "resize", "test_interpolation": mode})
        assert np.array_equal(out(T.train_transform(r.data, r.augment)(img)), pil[mode])
        assert np.array_equal(out(T.test_transform(r.data)(img)), pil[mode])
    r = _recipe({"train_size": 16, "train_crop": "resize", "interpolation": "random"})
    tf = T.train_transform(r.data, r.augment)
    seen = []
    for seed in range(24):
        torch.manual_seed(seed)
        o = out(tf(img))
        seen.append(next(m for m in pil if np.array_equal(o, pil[m])))  # always exactly one of the two
    assert 4 <= seen.count("bicubic") <= 20  # both occur, about half each
    # reproducible: the draw comes from the (per-sample seeded) torch generator
    torch.manual_seed(5)
    a = out(tf(img))
    torch.manual_seed(5)
    assert np.array_equal(a, out(tf(img)))


def test_color_jitter_scales_brightness_within_the_range():
    gray = Image.new("RGB", (8, 8), (100, 100, 100))  # contrast and saturation leave a gray image alone
    r = _recipe({"train_size": 8, "train_crop": "resize"}, {"color_jitter": 0.4})
    tf = T.train_transform(r.data, r.augment)
    values = []
    for seed in range(40):
        torch.manual_seed(seed)
        o = tf(gray) * 255
        assert torch.allclose(o, o.flatten()[0])  # one factor for the whole image
        values.append(float(o.flatten()[0]))
    assert 59 <= min(values) < 72 and 128 < max(values) <= 141  # 100 * [0.6, 1.4]
    r0 = _recipe({"train_size": 8, "train_crop": "resize"})
    assert torch.allclose(T.train_transform(r0.data, r0.augment)(gray) * 255, torch.tensor(100.0), atol=0.01)
    # hue: a pure red pixel turns towards other hues only when color_jitter_hue is set
    red = Image.new("RGB", (8, 8), (200, 0, 0))
    rh = _recipe({"train_size": 8, "train_crop": "resize"}, {"color_jitter_hue": 0.3})
    outs = []
    for seed in range(10):
        torch.manual_seed(seed)
        outs.append(T.train_transform(rh.data, rh.augment)(red)[:, 0, 0] * 255)
    assert any(float(o[1]) > 20 or float(o[2]) > 20 for o in outs)


def _timm_cosine(t, *, base, t_initial, warmup_t, warmup_lr_init, lr_min):
    """timm.scheduler.CosineLRScheduler._get_lr with warmup_prefix=False, cycle_limit=1 (written out)."""
    if t < warmup_t:
        return warmup_lr_init + t * (base - warmup_lr_init) / warmup_t
    if t >= t_initial:
        return lr_min
    return lr_min + 0.5 * (base - lr_min) * (1 + math.cos(math.pi * t / t_initial))


@pytest.mark.parametrize("stepping", ["epoch", "iteration"])
def test_timm_cosine_counts_the_warmup_in_its_period(stepping):
    spe = 7
    r = _recipe(schedule={"name": "cosine", "epochs": 30, "warmup_epochs": 3, "warmup": "linear",
                          "warmup_start_lr": 1e-4, "min_lr": 1e-5, "stepping": stepping, "warmup_in_period": True})
    plan = plan_for_stage(r.schedule, lr=0.1, epochs=30, steps_per_epoch=spe, warmup_epochs=3, warmup_steps=None,
                          min_lr=None, warmup_in_period=r.schedule.warmup_in_period)
    for step in range(30 * spe):
        # timm steps per epoch (t = epoch, t_initial = 30) or per update (t = step, t_initial = 210)
        t, t_init, w = (step // spe, 30, 3) if stepping == "epoch" else (step, 30 * spe, 3 * spe)
        expected = _timm_cosine(t, base=0.1, t_initial=t_init, warmup_t=w, warmup_lr_init=1e-4, lr_min=1e-5)
        assert plan.lr(step) == pytest.approx(expected, rel=1e-9), step
    # the default (fgbench's own) restarts the cosine at the peak after the warm-up: a different value
    r2 = _recipe(schedule={"name": "cosine", "epochs": 30, "warmup_epochs": 3, "min_lr": 1e-5, "stepping": stepping})
    plan2 = plan_for_stage(r2.schedule, lr=0.1, epochs=30, steps_per_epoch=spe, warmup_epochs=3, warmup_steps=None,
                           min_lr=None)
    assert plan2.lr(3 * spe) == pytest.approx(0.1) and plan.lr(3 * spe) < 0.099


def test_bad_values_are_one_line_errors():
    for data, msg in (({"crop_ratio": [2.0, 1.0]}, "crop_ratio must satisfy"),
                      ({"loader": "device", "train_crop": "pad_crop", "test_crop": "none", "interpolation": "random"},
                       "interpolation: the device loader")):
        with pytest.raises(RecipeError) as err:
            validate_recipe({"data": data}, "r.toml")
        assert len(err.value.lines) == 1 and err.value.lines[0].startswith("r.toml: data"), err.value.lines
        assert msg in err.value.lines[0]
    with pytest.raises(RecipeError) as err:
        validate_recipe({"schedule": {"name": "cosine", "warmup_in_period": True, "hold_epochs": 1}}, "r.toml")
    assert "warmup_in_period" in err.value.lines[0]
