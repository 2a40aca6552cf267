"""Every loader hands the model the same tensors where the README says so (issue 18).

Photo-sized JPEGs (1000 x 700, smooth shading with texture and grain, as a camera gives) are loaded
through every ``data.loader`` choice for the training, validation and test splits, and compared
with each other and with an independent reference: PIL's full-size decode through torchvision
transforms written out here. With ``data.decode = "full"`` (the default) every tensor must be
identical; with the opt-in ``"reduced"`` the test tensors are not (the README says it is not
lossless). The device loader must honour ``data.interpolation`` (it always resized bilinearly), and
``loader = "auto"`` must not choose it for a per-crop random interpolation.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from fgbench.data import loaders as L
from fgbench.data.index import folder_index
from fgbench.errors import UserError
from fgbench.recipe import validate_recipe

W, H = 1000, 700
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as data.normalize = "imagenet"


def _photo(seed: int) -> bytes:
    """A 1000 x 700 JPEG with what reduced decoding can lose: gradients, fine stripes and grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.empty((H, W, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.02, 0.4), rng.uniform(0.02, 0.4), rng.uniform(0, 6.28)
        img[..., c] = (90 + 60 * (xx / W) + 50 * (yy / H) * (c - 1)
                       + 40 * np.sin(fx * xx + fy * yy + ph) + rng.normal(0, 12, (H, W)))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    seed = 0
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("ant", "bee"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                seed += 1
                (d / f"{i}.jpg").write_bytes(_photo(seed))
    return root


def _recipe(root: Path, **data):
    base = {"dataset": "folder", "root": str(root), "train_size": 64, "test_size": 64, "train_crop": "resize",
            "test_crop": "ratio", "normalize": "imagenet", "val_fraction": 0.34, "batch_size": 2,
            "eval_batch_size": 3, "workers": 0, "drop_last": False}
    return validate_recipe({"data": {**base, **data}, "augment": {"hflip": False},
                            "runtime": {"device": "cpu"}}, "r.toml")


def _tensors(root: Path, recipe, loader: str) -> dict[str, list[tuple[torch.Tensor, int]]]:
    """Each split's (image tensor, label), as the ``loader`` hands them to the model."""
    data = recipe.data.model_copy(update={"loader": loader})
    splits = L.load_splits(folder_index(root), data, augment=recipe.augment, epochs=2)
    assert splits.loader == loader
    st = L.build_loaders(splits, data, recipe.augment, train_size=64, test_size=64, batch_size=2, seed=0,
                         device=torch.device("cpu"))
    try:
        out = {"train": [(x, int(y)) for xb, yb, _ in st.train.batches(1, 0) for x, y in zip(xb, yb)]}
        for name, ev in (("val", st.val), ("test", st.test)):
            out[name] = [(x, int(y)) for xb, yb, _ in ev.batches() for x, y in zip(xb, yb)]
    finally:
        st.close()
    return out


def _reference(root: Path, split: str, interpolation: v2.InterpolationMode, train: bool) -> list[torch.Tensor]:
    """Full-size decode, then the recipe's transform written out: training Resize(64 x 64); test
    Resize(int(64 * 1.14) = 72, shorter side) then CenterCrop(64); ToImage, float, ImageNet normalisation."""
    geo = [v2.Resize((64, 64), interpolation=interpolation, antialias=True)] if train else \
        [v2.Resize(72, interpolation=interpolation, antialias=True), v2.CenterCrop(64)]
    tf = v2.Compose(geo + [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    out = []
    for p in sorted((root / split).glob("*/*.jpg")):
        with Image.open(p) as im:
            out.append(tf(im.convert("RGB")).as_subclass(torch.Tensor))
    return out


def _as_multiset(pairs):
    return sorted(((x.numpy().tobytes(), y) for x, y in pairs))


@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
def test_every_loader_hands_the_model_the_full_decode_tensors(photos, interp):
    r = _recipe(photos, interpolation=interp, test_interpolation=interp)
    assert r.data.decode == "full"  # the default
    got = {kind: _tensors(photos, r, kind) for kind in ("standard", "cached", "device")}
    mode = v2.InterpolationMode.BILINEAR if interp == "bilinear" else v2.InterpolationMode.BICUBIC
    ref_test = _reference(photos, "test", mode, train=False)
    ref_train_all = _reference(photos, "train", mode, train=True)
    ref_evalish_train = _reference(photos, "train", mode, train=False)
    for kind, t in got.items():
        # the test split, in order, is the reference's (a few float ulps apart at most from our own arithmetic)
        assert len(t["test"]) == len(ref_test) == 4
        for (x, _), ref in zip(t["test"], ref_test):
            assert torch.allclose(x, ref, atol=1e-5, rtol=0), kind
        # validation images are training-folder images under the test transform; training ones the train transform
        assert len(t["val"]) == 2 and len(t["train"]) == 4
        for x, _ in t["val"]:
            assert any(torch.allclose(x, ref, atol=1e-5, rtol=0) for ref in ref_evalish_train), kind
        for x, _ in t["train"]:
            assert any(torch.allclose(x, ref, atol=1e-5, rtol=0) for ref in ref_train_all), (kind, interp)
    # and the loaders agree bit for bit with each other
    for kind in ("cached", "device"):
        for split in ("val", "test"):
            a, b = got["standard"][split], got[kind][split]
            assert [y for _, y in a] == [y for _, y in b]
            assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b)), (kind, split)
        assert _as_multiset(got["standard"]["train"]) == _as_multiset(got[kind]["train"]), (kind, interp)


def test_reduced_decoding_is_opt_in_and_changes_the_pixels(photos):
    r = _recipe(photos, decode="reduced")
    full = _tensors(photos, _recipe(photos), "standard")["test"]
    reduced = _tensors(photos, r, "standard")["test"]
    # Resize(72) of a 700 px side allows a 1/8 decode (88 px): other pixels, as the README says
    diff = [(a - b).abs().max().item() for (a, _), (b, _) in zip(full, reduced)]
    assert all(d > 0.01 for d in diff), diff
    # the spellings of recipes saved before the rename keep their meaning
    assert _recipe(photos, decode="auto").data.decode == "reduced"
    assert _recipe(photos, decode="off").data.decode == "full"


def test_auto_never_picks_the_device_loader_for_a_per_crop_random_interpolation(photos):
    index = folder_index(photos)
    ok = _recipe(photos, interpolation="bicubic")
    assert L.choose_loader(index, ok.data, ok.augment, epochs=2).kind == "device"
    rnd = _recipe(photos, interpolation="random")
    choice = L.choose_loader(index, rnd.data, rnd.augment, epochs=2)
    assert choice.kind != "device" and "data.interpolation" in choice.reason
    # an explicit choice is one line naming the field (the recipe check, and the loaders' own)
    with pytest.raises(UserError, match=r'^data\.interpolation: "random"'):
        L.check_device_loader(rnd.data, rnd.augment)
