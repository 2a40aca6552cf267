"""The reduced-decoding rule (issue 10.2; opt-in since issue 18): with ``data.decode = "reduced"`` a
JPEG is decoded at a reduced libjpeg scale only when every crop the transform can take still has at
least the output size in source pixels. Every seed recipe decodes at full size (the default).

A 1000 x 700 photo (a Stanford Cars size) is decoded as the loaders decode it, under the train and
test transforms of every distinct data setting of the seed recipes, and the pixels each crop
receives are checked against the output size on the decoded image itself."""

from __future__ import annotations

import glob
import math
from pathlib import Path

import pytest
import torch
from fgdata_builders import jpeg_bytes
from torchvision import transforms as v1
from torchvision.transforms import v2

from fgbench.data import loaders as L
from fgbench.data import transforms as T
from fgbench.data.fast import load_rgb
from fgbench.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
FULL = (1000, 700)


def _seed_settings():
    """One recipe per distinct (data, stage sizes, policy position) setting of the seed recipes."""
    seen, out = set(), []
    for f in sorted(glob.glob(str(RECIPES / "*.toml"))):
        if Path(f).name.startswith(("sweep", "quickstart")):
            continue
        r = load_recipe(f)
        d = r.data
        key = (d.model_dump_json(exclude={"dataset", "root", "batch_size", "workers", "normalize", "mean", "std"}),
               tuple((s.train_size, s.test_size) for s in r.stages), r.augment.randaugment_before_resize)
        if key not in seen:
            seen.add(key)
            out.append(pytest.param(f, id=Path(f).stem))
    return out


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    p = tmp_path_factory.mktemp("cars") / "car.jpg"
    p.write_bytes(jpeg_bytes(*FULL, seed=7, quality=90))
    return p


def _decode(photo, transform, data):
    return load_rgb(photo, L.decode_need(transform, data))


def _check_train(img, transform) -> None:
    first = transform.transforms[0]
    w, h = img.size
    if isinstance(first, v2.RandomResizedCrop):
        out_h, out_w = first.size
        # the extreme crops: smallest area at the narrowest and at the widest aspect ratio
        s0, (r0, r1) = first.scale[0], first.ratio
        narrow_w = math.sqrt(w * h * s0 * r0)
        wide_h = math.sqrt(w * h * s0 / r1)
        small = min(narrow_w / out_w, wide_h / out_h)
        # and the crops RandomResizedCrop really draws on this image
        torch.manual_seed(0)
        drawn = [v1.RandomResizedCrop.get_params(img, list(first.scale), list(first.ratio)) for _ in range(500)]
        worst = min(min(ch / out_h, cw / out_w) for _, _, ch, cw in drawn)
        if img.size != FULL:
            assert small >= 1 and worst >= 1, f"decoded at {img.size}: a crop gets {worst:.2f}x the output pixels"
        else:
            assert small < 1.25  # full size because a draft (at most half the side) would upsample crops
    elif isinstance(first, v2.Resize):
        size = list(first.size)
        if len(size) == 1:
            assert min(w, h) >= size[0] or img.size == FULL
        else:
            assert (h >= size[0] and w >= size[1]) or img.size == FULL
    else:  # a crop straight from the image (pad_crop) or a policy before the resize: every pixel counts
        assert img.size == FULL


def _check_test(img, transform) -> None:
    steps = transform.transforms
    w, h = img.size
    if isinstance(steps[0], v2.Resize):
        size = list(steps[0].size)
        if len(size) == 1:  # Resize(short side R) then CenterCrop(c): the crop gets c * short / R pixels a side
            crop = steps[1].size[0]
            assert crop * min(w, h) / size[0] >= crop or img.size == FULL
        else:
            assert (h >= size[0] and w >= size[1]) or img.size == FULL
    else:
        assert img.size == FULL


@pytest.mark.parametrize("recipe_path", _seed_settings())
def test_seed_transforms_never_receive_fewer_pixels_than_they_output(photo, recipe_path):
    r = load_recipe(recipe_path)
    assert r.data.decode == "full"  # as the seeds, timm and torchvision decode
    assert _decode(photo, T.test_transform(r.data, r.data.test_size), r.data).size == FULL
    d = r.data.model_copy(update={"decode": "reduced"})  # the opt-in rule, on the seed's transforms
    for size in {d.train_size, *(s.train_size for s in r.stages if s.train_size)}:
        ttf = T.train_transform(d, r.augment, size)
        _check_train(_decode(photo, ttf, d), ttf)
    for size in {d.test_size, *(s.test_size for s in r.stages if s.test_size), *r.eval.final_test_sizes}:
        etf = T.test_transform(d, size)
        _check_test(_decode(photo, etf, d), etf)


def test_reduced_drafts_are_used_only_where_no_crop_gets_fewer_pixels(photo):
    r = load_recipe(RECIPES / "sc_cars_r18.toml")
    d = r.data.model_copy(update={"decode": "reduced"})
    # evaluation at 224: Resize(255) then CenterCrop(224) needs a shorter side of 255; half of 700 is 350
    assert _decode(photo, T.test_transform(d, 224), d).size == (500, 350)
    # training at 224 with scale 0.08: the smallest crop of the full photo is already below 224 px
    assert _decode(photo, T.train_transform(d, r.augment, 224), d).size == FULL
    # a 64 px RandomResizedCrop: 1/2 keeps the smallest crop at >= 64 px, 1/4 would not
    small = T.train_transform(d, r.augment, 64)
    img = _decode(photo, small, d)
    assert img.size == (500, 350)
    _check_train(img, small)
    # decode = "full" (the default) always decodes at full size
    full = d.model_copy(update={"decode": "full"})
    assert _decode(photo, T.test_transform(full, 224), full).size == FULL


def test_the_cached_and_device_loaders_decode_as_the_standard_one(photo, tmp_path):
    """Under decode = "reduced" the cache stores the decode the run's most demanding transform
    needs, and the device loader's stacked test images equal the standard loader's test tensors."""
    from fgbench.data.fast import CachedImageDataset

    r = load_recipe(RECIPES / "sc_cars_r18.toml")
    d = r.data.model_copy(update={"decode": "reduced"})
    need = L.cache_need(d, r.augment, (), (64,))
    cached = CachedImageDataset([(str(photo), 0)], need, tmp_path / "cache")
    assert cached[0][0].size == FULL  # the 224 training crop needs every pixel
    assert cached[0][0].tobytes() == load_rgb(photo).tobytes()
    only_test = CachedImageDataset([(str(photo), 0)], L.union_need([L.decode_need(T.test_transform(d, 224), d)]),
                                   tmp_path / "cache")
    assert only_test[0][0].size == (500, 350)
    src = L.FileSource([(str(photo), 0)])
    etf = L.fast_transform(T.test_transform(d, 224))
    standard = etf(src.load(0, L.decode_need(etf, d)))
    geo = T.test_geometry(d, 224)
    x, _, _ = L._stack_split(src, [0], geo, "test", False, L.decode_need(v2.Compose(geo), d))
    device = L._normalizer(d, torch.device("cpu"))(x)[0]
    assert torch.equal(standard, device)
