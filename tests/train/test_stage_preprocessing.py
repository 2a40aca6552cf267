"""A stage chooses its training preprocessing: the FixRes paper's BN + classifier fine-tune trains on
the test preprocessing, SimpleClassification's own second stage keeps RandomResizedCrop, and the
448-px test resize of the FixRes recipes is the seed's 510."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import fgbench.train.trainer as tr
from fgbench.cli import main
from fgbench.data import transforms as T
from fgbench.recipe import load_recipe, validate_recipe
from fgbench.train.stages import resolve_stages

from .conftest import write_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _image(w=40, h=30) -> Image.Image:
    g = torch.Generator().manual_seed(3)
    return Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy(), "RGB")


def _outputs(transform, img, seeds=(0, 1, 2)) -> list[torch.Tensor]:
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(transform(img))
    return out


@pytest.mark.parametrize(("stage", "expect_test"), [
    ({"trainable": "bn_fc"}, True),  # the paper's fine-tune: test preprocessing unless told
    ({"trainable": "bn_fc", "train_crop": "random_resized"}, False),
    ({"trainable": "all", "train_crop": "test"}, True),
    ({"trainable": "all"}, False),  # as the stage before (SimpleClassification's second stage)
])
def test_a_stage_trains_on_the_preprocessing_it_chooses(tmp_path, tiny_folder, monkeypatch, stage, expect_test):
    seen: dict[int, tuple] = {}
    orig = tr.Trainer._build_loaders

    def build(self, st):
        orig(self, st)
        dataset = self.loaders.train.loader.dataset
        dataset = getattr(dataset, "train", dataset)  # the stage's one worker pool serves training and evaluation
        seen[st.index] = (st, dataset.transform, self.engine.mixer)

    monkeypatch.setattr(tr.Trainer, "_build_loaders", build)
    recipe = write_recipe(
        tmp_path, tiny_folder, schedule={"name": "constant", "epochs": 1},
        data={"train_crop": "random_resized", "crop_scale": [0.3, 1.0], "test_crop": "ratio", "test_resize_ratio": 1.25},
        augment={"hflip": True, "random_erasing": 0.5, "mixup_alpha": 0.2},
        stages=[{"name": "fine", "epochs": 1, "train_size": 16, "test_size": 16, **stage}])
    run = tmp_path / "run"
    assert main(["run", str(recipe), "--run-dir", str(run), "--progress", "none"]) == 0
    r = load_recipe(recipe)
    img = _image()
    st0, tf0, mixer0 = seen[0]
    first = _outputs(tf0, img)
    assert not torch.equal(first[0], first[1])  # random crops, flips, erasing
    assert mixer0 is not None
    st1, tf1, mixer1 = seen[1]
    got = _outputs(tf1, img)
    if expect_test:
        # exactly the test transform: Resize(int(16 * 1.25) = 20) on the shorter side, CenterCrop(16)
        ref = T.test_transform(r.data, 16)(img)
        by_hand = T.test_transform(r.data.model_copy(update={"test_crop": "fixed", "test_resize": (20, 26)}), 16)(img)
        assert all(torch.equal(g, ref) for g in got) and torch.equal(ref, by_hand)
        assert mixer1 is None and st1.train_crop == "test"
    else:
        assert not torch.equal(got[0], got[1]) and got[0].shape == (3, 16, 16)
        assert mixer1 is not None


def test_sc_two_stage_keeps_the_seeds_random_resized_crop_and_the_510_resize():
    for ds in ("cub", "cars"):
        r = load_recipe(RECIPES / f"sc_{ds}_r50_fixres_two_stage.toml")
        stages = resolve_stages(r, 6000)
        assert [s.train_crop for s in stages] == [None, None]  # data.train_crop in both: the seed's
        assert r.data.train_crop == "random_resized" and r.stages[0].trainable == "all"
        assert (stages[1].train_size, stages[1].test_size) == (448, 448)
    for name in ("sc_cub_r50_fixres_two_stage", "sc_cars_r50_fixres_train224", "sc_cub_r50_fixres_train448"):
        r = load_recipe(RECIPES / f"{name}.toml")
        assert 448 in r.eval.final_test_sizes or r.stages
        # the seed's test.py: Resize(int(448 * 1.14)) = Resize(510) on the shorter side, CenterCrop(448)
        resize, crop = T.test_geometry(r.data, 448)
        assert resize.size == [510] and list(crop.size) == [448, 448]
        out = T.test_transform(r.data, 448)(_image(700, 600))
        assert out.shape == (3, 448, 448)
        resize, crop = T.test_geometry(r.data, 224)
        assert resize.size == [255] and list(crop.size) == [224, 224]


def test_the_device_loader_refuses_a_stage_it_cannot_preprocess():
    base = {"data": {"dataset": "synthetic", "loader": "device", "train_crop": "pad_crop", "test_crop": "none",
                     "train_size": 32, "test_size": 32},
            "stages": [{"epochs": 1, "trainable": "bn_fc"}]}
    with pytest.raises(Exception) as err:
        validate_recipe(base, "r.toml")
    assert "stages[0].train_crop" in str(err.value) and "bn_fc" in str(err.value)
    ok = {**base, "stages": [{"epochs": 1, "trainable": "bn_fc", "train_crop": "pad_crop"}]}
    validate_recipe(ok, "r.toml")
