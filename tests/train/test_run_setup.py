"""Setting a run up: bad input leaves nothing behind, final test sizes with test_crop = "none",
the FGVC-Aircraft banner crop under draft decoding, and the cached loader's cache directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from fgbench.cli import main

from .conftest import write_recipe


def run_cli(*argv: str) -> int:
    return main(["run", *argv, "--progress", "none"])


# ------------------------------------------------------------ 1. bad input leaves nothing behind


def test_unknown_dataset_constants_fail_before_the_run_directory_exists(tmp_path, tiny_folder, capsys):
    recipe = write_recipe(tmp_path, tiny_folder, data={"normalize": "dataset"})
    runs_root = tmp_path / "runs"
    assert run_cli(str(recipe), "--runs-root", str(runs_root)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.normalize" in err
    assert not runs_root.exists()
    new = tmp_path / "new-dir"
    assert run_cli(str(recipe), "--run-dir", str(new)) == 2
    assert not new.exists()
    given = tmp_path / "given"
    given.mkdir()
    assert run_cli(str(recipe), "--run-dir", str(given)) == 2
    assert given.is_dir() and not any(given.iterdir())


def test_bad_input_found_while_setting_up_the_first_stage_is_undone(tmp_path, tiny_folder, capsys):
    # Only the device loader, once it holds the images, can see that 24 px crops do not fit 16 px
    # images without padding: that happens after the run directory was written.
    recipe = write_recipe(tmp_path, tiny_folder, data={"loader": "device", "crop_padding": 0, "train_size": 24})
    runs_root = tmp_path / "runs"
    assert run_cli(str(recipe), "--runs-root", str(runs_root)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.train_size" in err
    assert not runs_root.exists() or not any(runs_root.iterdir())
    given = tmp_path / "given"
    given.mkdir()
    assert run_cli(str(recipe), "--run-dir", str(given)) == 2
    assert given.is_dir() and not any(given.iterdir())  # given empty, left empty
    capsys.readouterr()


def test_bad_data_found_while_training_leaves_no_run_directory(tmp_path, tiny_folder, capsys):
    """Exit 2 is bad input wherever it is found: an undecodable image met in the first epoch leaves no run
    directory (a given empty one is left empty), like every other exit 2."""
    import shutil

    from fgbench.data.synthetic import CLASS_NAMES

    data = tmp_path / "data"
    shutil.copytree(tiny_folder, data)
    (data / "train" / CLASS_NAMES[3] / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 1}, data={"val_fraction": 0.0},
                          eval={"select_on": "last"})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 2
    assert not run.exists()
    runs_root = tmp_path / "runs"
    assert run_cli(str(recipe), "--runs-root", str(runs_root)) == 2
    assert not runs_root.exists() or not any(runs_root.iterdir())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("zz_broken.png" in line for line in err)


# ------------------------------------------------- 2. final test sizes with test_crop = "none"


def test_final_test_sizes_resize_when_the_recipe_uses_images_as_they_are(tmp_path, tiny_folder):
    from fgbench.rundir import events as metrics
    from fgbench.train.predict import evaluate_run

    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 2},
                          eval={"final_test_sizes": [16, 8]})  # the images are 16 px; test_crop = "none"
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    finals = {ev["test_size"]: ev for ev in metrics.read_events(run / "metrics.jsonl")
              if ev["event"] == "final_eval" and ev["model"] == "raw"}
    at8, at16 = evaluate_run(run, test_sizes=[8, 16], device="cpu")
    assert at8["test_crop"] == "resize" and at16["test_crop"] == "none"
    assert (at8["top1"], at8["loss"]) != (at16["top1"], at16["loss"])  # resizing changes what the model sees
    for size, ev in ((8, at8), (16, at16)):
        assert finals[size]["top1"] == pytest.approx(ev["top1"]) and finals[size]["topk"] == pytest.approx(ev["topk"])


# ------------------------------------------------------ 3. the FGVC-Aircraft banner and drafts


def _banner_jpeg(path: Path, w: int = 200, h: int = 160, banner: int = 20) -> None:
    img = Image.new("RGB", (w, h), (20, 40, 220))
    img.paste((230, 20, 20), (0, h - banner, w, h))
    img.save(path, quality=95)


def _reddest_row(img) -> float:
    import numpy as np

    a = np.asarray(img).astype(float)
    return float((a[..., 0] - a[..., 2]).mean(axis=1).max())


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "fallback"])
def test_banner_crop_counts_original_rows_under_draft_decoding(tmp_path, monkeypatch, fast):
    from fgbench.data import loaders as L

    if not fast:
        monkeypatch.setattr(L, "_fast", lambda: None)
    p = tmp_path / "plane.jpg"
    _banner_jpeg(p)
    src = L.FileSource([(str(p), 0)], crop_bottom=L.AIRCRAFT_BANNER_PX)
    full = src.load(0)
    half = src.load(0, draft=70)  # libjpeg decodes at 1/2: 100 x 80
    assert full.size == (200, 140)
    assert half.size == (100, 70)  # 20 original rows are 10 rows at half scale
    assert _reddest_row(full) < 0 and _reddest_row(half) < 0  # no banner row left


def test_cached_loader_crops_the_banner_and_lives_in_the_catalog_cache_dir(tmp_path, monkeypatch):
    from fgbench.data import catalog
    from fgbench.data import loaders as L
    from fgbench.data.index import folder_index
    from fgbench.recipe import validate_recipe

    root = tmp_path / "planes"
    for split, n in (("train", 2), ("test", 1)):
        for cls in ("a320", "b737"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                _banner_jpeg(d / f"{i}.jpg")
    recipe = validate_recipe({"data": {"dataset": "folder", "root": str(root), "loader": "cached", "crop_banner": True,
                                       "train_size": 64, "test_size": 64, "val_fraction": 0.0},
                               "eval": {"select_on": "last"}}, "test")
    cache = tmp_path / "elsewhere"
    seen = []

    def cache_dir(name, root=None):
        seen.append((name, root))
        return cache / name

    monkeypatch.setattr(catalog, "cache_dir", cache_dir)
    splits = L.load_splits(folder_index(root), recipe.data)
    # a user folder's caches are its own (`fgbench data remove folder --root DIR` deletes them)
    assert seen == [("folder", str(root))] and list((cache / "folder" / "train").glob("*.json"))
    img = splits.train_source.load(0)
    # the banner's 20 original rows are cut, and the cache keeps every other pixel: RandomResizedCrop's
    # smallest crop (8 % of the area at ratio 3/4) of a 200 x 140 image is far below 64 px, so no
    # libjpeg scale is lossless for this recipe
    assert img.size == (200, 140)
    assert _reddest_row(img) < 0


def test_the_default_cache_dir_is_the_catalog_one(tmp_path, tiny_folder):
    from fgbench.data import catalog
    from fgbench.data import loaders as L
    from fgbench.data.index import folder_index
    from fgbench.recipe import validate_recipe

    recipe = validate_recipe({"data": {"dataset": "folder", "root": str(tiny_folder), "loader": "cached",
                                       "train_size": 16, "test_size": 16, "test_crop": "none",
                                       "train_crop": "pad_crop"}}, "test")
    L.load_splits(folder_index(tiny_folder), recipe.data)
    assert list((catalog.cache_dir("folder", tiny_folder) / "test").glob("*.json"))
